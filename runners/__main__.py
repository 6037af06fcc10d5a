from zcas.runners.cli import main

main()
