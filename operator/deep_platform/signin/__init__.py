"""Web sign-in: OpenID Connect (authorization code with PKCE) to a signed session cookie, token
claims mapped to a Kubernetes user and groups as the API server maps them, and what that user may
see decided by the API server (SubjectAccessReview). docs/signin.md tells the whole story."""

from .claims import ClaimError, Identity, identity_from_claims
from .gate import Gate, Viewer, viewer_of
from .settings import NONE_UNSAFE, OIDC, SettingsError, SignInSettings

__all__ = ["NONE_UNSAFE", "OIDC", "ClaimError", "Gate", "Identity", "SettingsError", "SignInSettings",
           "Viewer", "identity_from_claims", "viewer_of"]
