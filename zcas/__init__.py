"""zcas: content-addressed caching and versioning for data and ML work.

The public Python API::

    import zcas

    @zcas.step
    def clean(raw: dict, min_rows: int = 10) -> dict: ...

    @zcas.pipeline
    def train(): ...

    run = train()                     # cached: only what changed runs
    repo = zcas.Repository()          # the repository of the current folder
    repo.runs(pipeline="mymod.train")[0].steps

Implementation lives in zcas.cas (objects), zcas.lineage (the metadata graph) and
zcas.runners (execution and the command line).
"""

import importlib
from typing import TYPE_CHECKING, Any

from zcas._version import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load on first use
    from zcas.cas.errors import ZcasError
    from zcas.repository import Repository
    from zcas.runners.materializers import NoMaterializerError, materializer
    from zcas.runners.metrics import Metrics, log_metric, log_metrics
    from zcas.runners.python import Artifact
    from zcas.steps import PipelineRun, StepFailedError, command, pipeline, step

__all__ = [
    "__version__", "step", "pipeline", "command", "StepFailedError", "materializer", "Repository", "Artifact", "PipelineRun",
    "ZcasError", "NoMaterializerError", "log_metric", "log_metrics", "Metrics",
]

_LAZY = {
    "step": ("zcas.steps", "step"),
    "pipeline": ("zcas.steps", "pipeline"),
    "command": ("zcas.steps", "command"),
    "StepFailedError": ("zcas.steps", "StepFailedError"),
    "Artifact": ("zcas.runners.python", "Artifact"),
    "PipelineRun": ("zcas.steps", "PipelineRun"),
    "materializer": ("zcas.runners.materializers", "materializer"),
    "NoMaterializerError": ("zcas.runners.materializers", "NoMaterializerError"),
    "Repository": ("zcas.repository", "Repository"),
    "ZcasError": ("zcas.cas.errors", "ZcasError"),
    "log_metric": ("zcas.runners.metrics", "log_metric"),
    "log_metrics": ("zcas.runners.metrics", "log_metrics"),
    "Metrics": ("zcas.runners.metrics", "Metrics"),
}


def __getattr__(name: str) -> Any:
    # Lazy, so `import zcas` (and the zcas command) stays cheap.
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'zcas' has no attribute {name!r}")
