"""Shared fixtures: the API server emulator and the in-process operator."""

import os

# the web app signs people in by default (web.auth.mode oidc); tests that are not about sign-in
# build it open, as a site on a private network does (tests/*/test_signin* set their own mode)
os.environ.setdefault("DEEP_WEB_AUTH_MODE", "none-unsafe")

pytest_plugins = ["tests.harness.fixtures", "tests.harness.operator_fixtures", "tests.harness.rbac_log"]
