"""The DEEP training dashboard: TrainingJobs and InferenceServices per namespace, one page per object."""

from .app import create_app

__all__ = ["create_app"]
