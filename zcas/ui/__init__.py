"""``zcas ui``: a read-only web view of a repository (or of a remote's lineage and objects).

The queries (``queries.py``) are plain library code over the repository façade; the web
layer (``app.py``, ``api.py``) needs the ``ui`` extra (Starlette, Jinja2, uvicorn) and is
imported only by ``zcas ui`` itself, so ``zcas --help`` never pays for it.
"""
