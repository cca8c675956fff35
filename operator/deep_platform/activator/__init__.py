"""The activator: scale-from-zero reverse proxy and the scaler of InferenceServices."""

from .cluster import Cluster, Failure
from .proxy import Activator, Settings, cluster_resolver
from .scaler import Scaler

__all__ = ["Activator", "Cluster", "Failure", "Scaler", "Settings", "cluster_resolver"]
