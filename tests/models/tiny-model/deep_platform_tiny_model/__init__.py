"""Tiny DEEPaaS V2 model for deep-platform tests.

The DEEPaaS entry point (group ``deepaas.v2.model``, name ``tinymodel``) is the
module :mod:`deep_platform_tiny_model.api`. Importing this package does not
import ``api`` (so ``TINYMODEL_LOAD_SECONDS`` only delays the model load).
"""

__version__ = "0.1.0"
