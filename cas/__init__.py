"""The content-addressed object store: ids, codec, packs, backends, trees.

Nothing here knows about runs or execution; lineage and runners build on it.
"""
