"""kopf handlers, thin: parse the body into the model, build, apply, write status.

Importing this package registers every handler with kopf's default registry.
"""

from ..builders.pod import LABEL_KIND
from . import devenvironment, inferenceservice, module, trainingjob

#: server-side label selectors of kopf's child watches, by kopf resource selector (group,
#: version, plural): the handlers' `labels=` filters only apply after an event has crossed the
#: network (the TrainingJob controller's own watches set theirs, trainingjob.py)
CHILD_SELECTORS: dict[tuple[str, str] | tuple[str, str, str], str] = {
    ("apps", "v1", "deployments"): f"{LABEL_KIND}={inferenceservice.CHILD_LABELS[LABEL_KIND]}",
    ("v1", "pods"): f"{LABEL_KIND}={inferenceservice.CHILD_LABELS[LABEL_KIND]}",
}

__all__ = ["CHILD_SELECTORS", "devenvironment", "inferenceservice", "module", "trainingjob"]
