"""Running steps and pipelines with caching, and the ``zcas`` command line."""
