from zcas.cli import main

main()
