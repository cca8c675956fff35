"""Shared fixtures: the API server emulator and the in-process operator."""

pytest_plugins = ["tests.harness.fixtures", "tests.harness.operator_fixtures", "tests.harness.rbac_log"]
