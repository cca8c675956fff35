"""Bearer tokens of the services the activator fronts: OpenID Connect and Secret tokens."""

from .keys import ALGORITHMS, IssuerKeys, KeysUnavailable
from .tokens import Caller, Oidc, Policy, Refusal, SiteAuth, TokenChecker, policy_for, www_authenticate

__all__ = [
    "ALGORITHMS",
    "Caller",
    "IssuerKeys",
    "KeysUnavailable",
    "Oidc",
    "Policy",
    "Refusal",
    "SiteAuth",
    "TokenChecker",
    "policy_for",
    "www_authenticate",
]
