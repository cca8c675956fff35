"""The chart's RBAC is exactly what the components use: every API call the operator, the
activator, the web app (catalogue and dashboard) and the GPU agent made in this session's tests
(the emulator records them with their User-Agent, see tests/harness/rbac_log.py) is allowed by
the chart's roles, and every grant of those roles was used by some call. These tests run after
all others (they need their calls): `pytest tests/integration tests/unit tests/chart`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chart import chart
from tests.harness.apiserver import ApiCall
from tests.harness.rbac_log import TESTS, session_calls

#: every component's calls are recorded (each builds its client with its name, as its CLI does)
CHECKED = ("operator", "activator", "web", "gpu-agent")
#: the options whose code paths need more grants, all on: storage mode `mount` (PVs and claims,
#: only with a CSI driver) and the GPU agent's pod mapping (it lists pods)
EVERY_PATH_VALUES = "storage:\n  csiDriver: csi-rclone\ngpuAgent:\n  podMapping: true\n"
OPERATOR_SOURCES = TESTS.parent / "operator" / "deep_platform"
#: cluster-scoped resources: Roles cannot grant them
CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces", "nodes", "modules", "persistentvolumes",
                  "subjectaccessreviews", "tokenreviews"}


@dataclass(frozen=True)
class Unexercised:
    """A call the code makes on a path no test reaches, granted all the same. `code` must still
    be in `source` (the test fails when the line is gone), and no test may make the call (the
    entry fails as superfluous then: exercised calls need no allowlist)."""

    component: str
    call: ApiCall
    source: str  # relative to operator/deep_platform
    code: str
    why: str


ALLOWLIST: tuple[Unexercised, ...] = (
    Unexercised(
        "web", ApiCall("create", "authorization.k8s.io", "subjectaccessreviews", "", ""),
        "signin/access.py", 'REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"',
        "the emulator has no authorizer: the dashboard's reviews run on the real server "
        "(tests/e2e/test_signin_e2e.py; tests/e2e/test_rbac_e2e.py as the chart's ServiceAccount)"),
)


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


def recorded_calls() -> dict[str, dict[ApiCall, str]]:
    """component -> call -> the first test that made it (or the allowlist entry's code line)."""
    log = session_calls()
    integration = sorted((TESTS / "integration").glob("test_*.py"))
    missing = [p.name for p in integration if p.resolve() not in log.files]
    if missing or not log.calls:
        pytest.fail(
            "the RBAC tests compare the chart's roles with the API calls of the other tests of the same "
            f"session; run them together: `pytest tests/integration tests/unit {__file__}` "
            f"(not collected now: {', '.join(missing) or 'none'}; calls recorded: {len(log.calls)})"
        )
    calls: dict[str, dict[ApiCall, str]] = {c: {} for c in CHECKED}
    for (who, call), test in log.calls.items():
        calls.setdefault(who, {})[call] = test
    return calls


def with_allowlist(calls: dict[str, dict[ApiCall, str]]) -> tuple[dict[str, dict[ApiCall, str]], list[str]]:
    problems = []
    merged = {who: dict(made) for who, made in calls.items()}
    for entry in ALLOWLIST:
        source = OPERATOR_SOURCES / entry.source
        if entry.code not in source.read_text():
            problems.append(f"allowlist: {entry.source} no longer contains {entry.code!r}: drop the entry "
                            "(and its grant, if nothing else needs it)")
        if entry.call in calls.get(entry.component, {}):
            problems.append(f"allowlist: {entry.component} {describe(entry.call)} is made by "
                            f"{calls[entry.component][entry.call]}: drop the entry")
        merged.setdefault(entry.component, {})[entry.call] = f"{entry.source}: {entry.code}"
    return merged, problems


@pytest.mark.rbac_after_all  # rbac_log.RUN_LAST: ordered last
def test_chart_rbac_is_exactly_what_the_components_use(tmp_path: Path) -> None:
    calls, problems = with_allowlist(recorded_calls())
    unknown = set(calls) - set(CHECKED)
    assert not unknown, f"calls of components the RBAC test does not know: {unknown}; add them to CHECKED"
    values = tmp_path / "every-path-values.yaml"
    values.write_text(EVERY_PATH_VALUES)
    objs = chart.objects(chart.render(4, values))
    for component in CHECKED:
        account = f"{chart.RELEASE}-{component}"
        grants = grants_of(objs, account, chart.NAMESPACE)
        made = calls[component]
        assert made, f"no API call of the {component} was recorded: are its clients named (User-Agent)?"
        for call, test in sorted(made.items()):
            if not any(g.allows(call) for g in grants):
                problems.append(f"{component}: {describe(call)} is forbidden by the chart (made in {test})")
        for grant in sorted(set(grants), key=str):
            users = [c for c in made if grant.allows(c)]
            if not users:
                where = grant.namespace or "the whole cluster"
                problems.append(f"{component}: {grant.source} grants {grant.verb} {grant.group or 'core'}/"
                                f"{grant.resource} in {where}, which no call used")
            elif grant.namespace == "" and all(c.namespace == chart.NAMESPACE for c in users):
                problems.append(f"{component}: {grant.source} grants {grant.verb} {grant.resource} "
                                f"cluster-wide, but it is used only in {chart.NAMESPACE}: make it a Role")
    assert not problems, "\n".join(problems)


#: with watchNamespaces, Events about cluster-scoped Modules still go to "default" (events.py)
MODULE_EVENTS = ApiCall("create", "", "events", "", "default")


@pytest.mark.rbac_after_all
def test_with_watched_namespaces_every_call_is_allowed_there(tmp_path: Path) -> None:
    """The tests run the components cluster-wide; with `watchNamespaces` the same calls happen in
    the watched namespaces instead: each must be allowed by the Roles there."""
    calls, _ = with_allowlist(recorded_calls())
    values = tmp_path / "watched-values.yaml"
    watched = ["team-a", "team-b"]
    values.write_text(EVERY_PATH_VALUES + f"watchNamespaces: [{', '.join(watched)}]\n")
    objs = chart.objects(chart.render(4, values))
    problems = []
    for component in CHECKED:
        grants = grants_of(objs, f"{chart.RELEASE}-{component}", chart.NAMESPACE)
        relocated: set[ApiCall] = {MODULE_EVENTS} if component == "operator" else set()
        for call in calls[component]:
            # the operator, activator and web app read DEEP_WATCH_NAMESPACES and stay there; the
            # GPU agent lists its node's pods in every namespace whatever is watched
            as_is = component == "gpu-agent" or call.resource in CLUSTER_SCOPED
            if as_is or call.namespace == chart.NAMESPACE:
                relocated.add(call)
            else:  # across all namespaces, or in a user's namespace: in each watched one
                relocated |= {call._replace(namespace=ns) for ns in watched}
        for call in sorted(relocated):
            if not any(g.allows(call) for g in grants):
                problems.append(f"{component}: {describe(call)} is forbidden with watchNamespaces")
            elif any(g.namespace == "" and g.allows(call) for g in grants) and call.namespace:
                problems.append(f"{component}: {describe(call)} is granted cluster-wide with watchNamespaces")
    assert not problems, "\n".join(problems)
