"""kopf handlers, thin: parse the body into the model, build, apply, write status.

Importing this package registers every handler with kopf's default registry.
"""

from . import inferenceservice, module, trainingjob

__all__ = ["inferenceservice", "module", "trainingjob"]
