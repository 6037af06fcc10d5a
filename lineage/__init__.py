"""The lineage graph: runs, artifacts and how they connect (built on zcas.cas)."""
