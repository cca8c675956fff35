"""The API of deep-platform: pydantic models of the four kinds, the single source of truth."""

from .base import CustomObject, Status
from .common import API_VERSION, GROUP, VERSION, Condition
from .devenvironment import DevEnvironment
from .inferenceservice import InferenceService
from .module import Module
from .trainingjob import TrainingJob

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "CustomObject",
    "DevEnvironment",
    "InferenceService",
    "Module",
    "Status",
    "TrainingJob",
]
