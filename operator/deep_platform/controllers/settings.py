"""Settings read when handlers are registered (kopf decorators need them at import)."""

from ..config import OperatorConfig

RESYNC_SECONDS = OperatorConfig().resync_seconds
