"""The chart's RBAC is exactly what the components use: every API call the operator and the
activator made in this session's integration tests (the emulator records them with their
User-Agent, see tests/harness/rbac_log.py) is allowed by the chart's roles, and every grant of
those roles was used by some call. This test runs after all others (it needs their calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.chart import chart
from tests.harness.apiserver import ApiCall
from tests.harness.rbac_log import TESTS, session_calls

#: components whose calls the integration tests exercise, and so whose roles are checked both ways
CHECKED = ("operator", "activator")


@dataclass(frozen=True)
class Grant:
    verb: str
    group: str
    resource: str  # with "/subresource" when one
    namespace: str  # "" for a ClusterRole bound cluster-wide
    source: str  # the role it comes from

    def allows(self, call: ApiCall) -> bool:
        resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
        return (self.verb, self.group, self.resource) == (call.verb, call.group, resource) and (
            self.namespace in ("", call.namespace))


def grants_of(objs: list[dict[str, Any]], service_account: str, namespace: str) -> list[Grant]:
    """What a ServiceAccount may do, from the rendered Roles, ClusterRoles and their bindings."""
    roles = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs
             if o["kind"] in ("Role", "ClusterRole")}
    found: list[Grant] = []
    for binding in objs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subjects = binding.get("subjects") or []
        wanted = ("ServiceAccount", service_account, namespace)
        if not any((s["kind"], s["name"], s.get("namespace")) == wanted for s in subjects):
            continue
        scope = binding["metadata"].get("namespace", "") if binding["kind"] == "RoleBinding" else ""
        ref = binding["roleRef"]
        role = roles[(ref["kind"], scope if ref["kind"] == "Role" else "", ref["name"])]
        for rule in role.get("rules") or []:
            assert "resourceNames" not in rule, "resourceNames cannot be checked against the request log"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        found.append(Grant(verb, group, resource, scope, f"{ref['kind']} {ref['name']}"))
    return found


def describe(call: ApiCall) -> str:
    resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
    where = f"namespace {call.namespace}" if call.namespace else "cluster-wide"
    return f"{call.verb} {call.group or 'core'}/{resource} ({where})"


@pytest.mark.rbac_after_all  # rbac_log.RUN_LAST: ordered last
def test_chart_rbac_is_exactly_what_the_integration_tests_use() -> None:
    log = session_calls()
    integration = sorted((TESTS / "integration").glob("test_*.py"))
    missing = [p.name for p in integration if p.resolve() not in log.files]
    if missing or not log.calls:
        pytest.fail(
            "the RBAC test compares the chart's roles with the API calls of the integration tests of the "
            f"same session; run it together with them: `pytest tests/integration {__file__}` "
            f"(not collected now: {', '.join(missing) or 'none'}; calls recorded: {len(log.calls)})"
        )
    objs = chart.objects(chart.render(4))
    problems: list[str] = []
    for component in CHECKED:
        account = f"{chart.RELEASE}-{component}"
        grants = grants_of(objs, account, chart.NAMESPACE)
        calls = {call: test for (who, call), test in log.calls.items() if who == component}
        assert calls, f"no API call of the {component} was recorded: are its clients named (User-Agent)?"
        for call, test in sorted(calls.items()):
            if not any(g.allows(call) for g in grants):
                problems.append(f"{component}: {describe(call)} is forbidden by the chart (made in {test})")
        for grant in sorted(set(grants), key=str):
            users = [c for c in calls if grant.allows(c)]
            if not users:
                where = grant.namespace or "the whole cluster"
                problems.append(f"{component}: {grant.source} grants {grant.verb} {grant.group or 'core'}/"
                                f"{grant.resource} in {where}, which no call used")
            elif grant.namespace == "" and all(c.namespace == chart.NAMESPACE for c in users):
                problems.append(f"{component}: {grant.source} grants {grant.verb} {grant.resource} "
                                f"cluster-wide, but it is used only in {chart.NAMESPACE}: make it a Role")
    assert not problems, "\n".join(problems)
