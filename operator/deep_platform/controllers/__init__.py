"""kopf handlers, thin: parse the body into the model, build, apply, write status.

Importing this package registers every handler with kopf's default registry.
"""

from ..builders.pod import LABEL_KIND
from . import inferenceservice, module, trainingjob

#: server-side label selectors of the child watches, by kopf resource selector (group, version,
#: plural): the handlers' `labels=` filters only apply after an event has crossed the network
CHILD_SELECTORS: dict[tuple[str, str] | tuple[str, str, str], str] = {
    ("batch", "v1", "jobs"): f"{LABEL_KIND}={trainingjob.CHILD_LABELS[LABEL_KIND]}",
    ("apps", "v1", "deployments"): f"{LABEL_KIND}={inferenceservice.CHILD_LABELS[LABEL_KIND]}",
    ("v1", "pods"): (
        f"{LABEL_KIND} in ({trainingjob.CHILD_LABELS[LABEL_KIND]},"
        f"{inferenceservice.CHILD_LABELS[LABEL_KIND]})"
    ),
}

__all__ = ["CHILD_SELECTORS", "inferenceservice", "module", "trainingjob"]
