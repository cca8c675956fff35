"""The Helm chart, with the real helm 4 and helm 3 binaries: lint, render, upstream schemas,
determinism, the values schema, Pod Security "restricted", and CRDs identical to crds/."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.chart import chart
from tests.chart.podsecurity import restricted_violations

#: oldest and newest Kubernetes the chart supports (Chart.yaml kubeVersion: >=1.30)
K8S_VERSIONS = ("1.30", "1.34")
#: kinds whose schemas are not upstream Kubernetes (prometheus-operator's CRDs): not validated here
NOT_UPSTREAM = {("monitoring.coreos.com/v1", "ServiceMonitor"),
                ("monitoring.coreos.com/v1", "PrometheusRule"),
                ("gateway.networking.k8s.io/v1", "HTTPRoute")}  # test_exposure.py: a pinned schema
VALUE_SETS = [pytest.param(p, id=p.name.removesuffix("-values.yaml")) for p in chart.CI_VALUES]


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def test_ci_value_sets_exist() -> None:
    names = {p.name for p in chart.CI_VALUES}
    assert {"defaults-values.yaml", "all-enabled-values.yaml", "restricted-namespaces-values.yaml"} <= names


@pytest.mark.parametrize("values", VALUE_SETS)
def test_lint_strict(helm_major: int, values: Path) -> None:
    result = chart.run_helm(helm_major, "lint", "--strict", str(chart.CHART), "--values", str(values),
                            "--namespace", chart.NAMESPACE)
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout


@pytest.mark.parametrize("values", VALUE_SETS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_upstream(helm_major: int, values: Path, version: str) -> None:
    objs = chart.objects(chart.render(helm_major, values, include_crds=True))
    assert objs, "the chart rendered nothing"
    checked = 0
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in NOT_UPSTREAM:
            continue
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("values", VALUE_SETS)
def test_rendering_is_byte_identical_twice_and_across_helm_versions(values: Path) -> None:
    """Argo CD compares renders: any random or time-dependent value means OutOfSync forever."""
    first = chart.run_helm(4, *chart.template_args(values, "--include-crds")).stdout
    second = chart.run_helm(4, *chart.template_args(values, "--include-crds")).stdout
    assert first == second
    # helm 3 renders the same objects (comments and document order may differ between majors)
    assert sorted(map(chart.canonical, chart.objects(first))) == sorted(
        map(chart.canonical, chart.objects(chart.render(3, values, include_crds=True))))


def test_templates_use_no_lookup_or_randomness() -> None:
    for template in (chart.CHART / "templates").iterdir():
        text = template.read_text(encoding="utf-8")
        for forbidden in ("lookup", "randAlphaNum", "randAlpha", "randNumeric", "uuidv4", "now ", "genCA",
                          "genSelfSigned", "genPrivateKey", "randBytes"):
            assert forbidden not in text, f"{template.name} uses {forbidden}: renders differ between runs"


def test_crds_are_the_generated_files() -> None:
    generated = sorted((chart.ROOT / "crds").glob("*.yaml"))
    copies = sorted((chart.CHART / "crds").glob("*.yaml"))
    assert [p.name for p in copies] == [p.name for p in generated], "run scripts/render-manifests.sh"
    for original, copy_ in zip(generated, copies, strict=True):
        assert copy_.read_bytes() == original.read_bytes(), (
            f"{copy_} differs from {original}: run scripts/render-manifests.sh")


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_pod_passes_pod_security_restricted(values: Path) -> None:
    pods = [(o, chart.pod_spec(o)) for o in chart.objects(chart.render(4, values))]
    pods = [(o, spec) for o, spec in pods if spec is not None]
    assert pods
    for obj, spec in pods:
        assert restricted_violations(spec) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_the_pod_security_check_catches_violations() -> None:
    """The checker is only worth something if it fails on the usual mistakes."""
    deployment = next(o for o in chart.objects(chart.render(4)) if o["kind"] == "Deployment")
    good = chart.pod_spec(deployment)
    assert good is not None and restricted_violations(good) == []
    sc = "securityContext"
    breakages = {
        "hostNetwork": lambda s: s.update(hostNetwork=True),
        "hostPath": lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "allowPrivilegeEscalation": lambda s: s["containers"][0][sc].pop("allowPrivilegeEscalation"),
        "runAsNonRoot": lambda s: s["securityContext"].pop("runAsNonRoot"),
        "seccompProfile": lambda s: s["securityContext"].pop("seccompProfile"),
        "drop ALL": lambda s: s["containers"][0][sc]["capabilities"].update(drop=[]),
        "adds capabilities": lambda s: s["containers"][0][sc]["capabilities"].update(add=["SYS_ADMIN"]),
        "privileged": lambda s: s["containers"][0][sc].update(privileged=True),
        "hostPort": lambda s: s["containers"][0]["ports"][0].update(hostPort=80),
    }
    for expected, breaking in breakages.items():
        spec = copy.deepcopy(good)
        breaking(spec)
        problems = restricted_violations(spec)
        assert any(expected in p for p in problems), (expected, problems)


def test_operator_deployment_matches_its_settings() -> None:
    objs = chart.objects(chart.render(4))
    operator = next(o for o in by_kind(objs, "Deployment") if o["metadata"]["name"].endswith("-operator"))
    spec = operator["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"  # kopf standalone: never two
    container = spec["template"]["spec"]["containers"][0]
    assert container["args"][-1] == "run"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DEEP_PLATFORM_NAMESPACE"] == chart.NAMESPACE
    assert env["DEEP_WATCH_NAMESPACES"] == ""  # the whole cluster
    # the operator's default (config.py) and the chart agree on where the activator is
    assert env["DEEP_ACTIVATOR_URL"] == "http://deep-platform-activator.deep-platform.svc"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": int(env["DEEP_METRICS_PORT"]), "health": int(env["DEEP_HEALTH_PORT"]),
                     "progress": int(env["DEEP_PROGRESS_PORT"])}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_restricted_namespaces_grant_roles_only_there() -> None:
    values = chart.CHART / "ci" / "restricted-namespaces-values.yaml"
    objs = chart.objects(chart.render(4, values))
    watched = yaml.safe_load(values.read_text())["watchNamespaces"]
    role_namespaces = {o["metadata"]["namespace"] for o in by_kind(objs, "Role")}
    # "default": Events about cluster-scoped Modules (events.py)
    assert set(watched) <= role_namespaces <= {*watched, chart.NAMESPACE, "default"}
    for role in by_kind(objs, "ClusterRole"):
        for rule in role["rules"]:
            for resource in rule["resources"]:
                # tokenreviews, subjectaccessreviews: not stored anywhere, cluster-wide by nature
                cluster_scoped = ("modules", "customresourcedefinitions", "namespaces", "nodes",
                                  "tokenreviews", "subjectaccessreviews")
                assert resource.split("/")[0] in cluster_scoped, (
                    f"{role['metadata']['name']} grants {resource} cluster-wide with watchNamespaces set")
    operator = next(o for o in by_kind(objs, "Deployment") if o["metadata"]["name"].endswith("-operator"))
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DEEP_WATCH_NAMESPACES"] == ",".join(watched)
    assert not by_kind(objs, "DaemonSet")  # gpuAgent.enabled: false


def test_no_rbac_wildcards() -> None:
    for values in chart.CI_VALUES:
        for obj in chart.objects(chart.render(4, values)):
            for rule in obj.get("rules") or []:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(field, []), f"{obj['kind']} {obj['metadata']['name']}: {rule}"


def test_all_enabled_renders_the_optional_parts() -> None:
    objs = chart.objects(chart.render(4, chart.CHART / "ci" / "all-enabled-values.yaml"))
    kinds = {o["kind"] for o in objs}
    assert {"NetworkPolicy", "ServiceMonitor", "PrometheusRule", "Ingress", "Namespace",
            "PodDisruptionBudget"} <= kinds
    dashboard = next(o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard"))
    import json

    panels = json.loads(dashboard["data"]["deep-platform.json"])["panels"]
    assert any("deep_operator_reconcile_total" in t["expr"] for p in panels for t in p.get("targets", []))
    namespace = by_kind(objs, "Namespace")[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespace["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"
    # every ServiceMonitor endpoint port exists on some Service it selects
    monitor = by_kind(objs, "ServiceMonitor")[0]
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [s for s in by_kind(objs, "Service")
                if selector.items() <= s["metadata"]["labels"].items()]
    assert all(any(p["name"] == "metrics" for p in s["spec"]["ports"]) for s in services
               if s["metadata"]["name"].endswith(("-operator-metrics", "-gpu-agent", "-activator")))


BAD_VALUES = [
    ({"operator": {"replicas": 2}}, "replicas"),
    ({"activator": {"port": 70000}}, "port"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"web": {"ingress": {"enabled": True, "host": "https://deep.example.org/"}}}, "host"),
    ({"web": {"ingress": {"enabled": True, "host": "", "tlsSecretName": "tls"}}}, "host"),
    ({"activator": {"ingress": {"enabled": True, "host": "m.example.org", "clusterIssuer": "le"}}},
     "tlsSecretName"),
    ({"web": {"httpRoute": {"enabled": True}}}, "parentRefs"),
    ({"web": {"auth": {"mode": "off"}}}, "mode"),
    ({"web": {"auth": {"oidc": {"issuer": "https://iam.example.org"}}}}, "clientId"),
    ({"web": {"auth": {"oidc": {"issuer": "https://iam.example.org", "clientId": "deep"}}}}, "cookieSecret"),
    ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
    ({"serviceMonitor": {"interval": "thirty seconds"}}, "interval"),
    ({"operatr": {"replicas": 1}}, "operatr"),  # a typo is an error, not silently ignored
]


@pytest.mark.parametrize(("values", "field"), BAD_VALUES, ids=[f for _, f in BAD_VALUES])
def test_schema_rejects_bad_values_naming_the_field(
    helm_major: int, tmp_path: Path, values: dict[str, Any], field: str
) -> None:
    path = tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(values))
    result = chart.run_helm(helm_major, *chart.template_args(path), check=False)
    assert result.returncode != 0, f"helm {helm_major} accepted {values}"
    assert "schema" in result.stderr and field in result.stderr, result.stderr


def test_notes_tell_the_admin_what_to_do_next(tmp_path: Path) -> None:
    # `helm install --dry-run` renders NOTES.txt without a cluster only via template --show-only
    # is impossible (NOTES are not templates of objects); render them through a tiny wrapper chart
    result = chart.run_helm(4, "install", chart.RELEASE, str(chart.CHART), "--namespace", chart.NAMESPACE,
                            "--dry-run=client", check=False)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl apply -f examples/module.yaml" in notes
    assert "http://deep-platform-activator.deep-platform.svc/NAMESPACE/NAME/" in notes
    assert "kubectl apply --server-side -f charts/deep-platform/crds/" in notes


def test_gpu_pod_mapping_is_the_only_documented_exception(tmp_path: Path) -> None:
    """gpuAgent.podMapping (opt-in) breaks "restricted" in exactly two ways: hostPID and /proc."""
    values = tmp_path / "pod-mapping.yaml"
    values.write_text("gpuAgent:\n  podMapping: true\n")
    objs = chart.objects(chart.render(4, values))
    agent = next(o for o in by_kind(objs, "DaemonSet"))
    spec = chart.pod_spec(agent)
    assert spec is not None
    problems = restricted_violations(spec)
    assert len(problems) == 2 and "spec.hostPID is true" in problems and "host-proc" in " ".join(problems)
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "host-proc", "mountPath": "/host/proc", "readOnly": True}]
    assert spec["containers"][0]["args"][-2:] == ["--proc-root", "/host/proc"]


def test_every_subcommand_the_chart_runs_exists() -> None:
    """Each container's first argument is a `deep-platform` subcommand, with flags it accepts."""
    import subprocess

    for values in chart.CI_VALUES:
        for obj in chart.objects(chart.render(4, values)):
            spec = chart.pod_spec(obj)
            for container in (spec or {}).get("containers", []):
                args = [a for a in container["args"] if a not in ("--verbose", "-v")]  # global flags
                help_text = subprocess.run(["deep-platform", args[0], "--help"], capture_output=True,
                                           text=True, check=True).stdout
                for flag in (a for a in args[1:] if a.startswith("--")):
                    name = obj["metadata"]["name"]
                    assert flag in help_text, f"`deep-platform {args[0]}` has no {flag} ({name})"


def test_operator_gets_every_setting_the_code_reads() -> None:
    """Each DEEP_* variable OperatorConfig reads is set by the chart (else a value cannot reach it)."""
    import re

    source = (chart.ROOT / "operator" / "deep_platform" / "config.py").read_text()
    read = set(re.findall(r"\"(DEEP_[A-Z_]+)\"", source))
    operator = next(o for o in by_kind(chart.objects(chart.render(4)), "Deployment")
                    if o["metadata"]["name"].endswith("-operator"))
    env = {e["name"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert read and read <= env, f"not set by the chart: {sorted(read - env)}"


def test_activator_and_web_probes_ask_healthz() -> None:
    for deployment in by_kind(chart.objects(chart.render(4)), "Deployment"):
        if deployment["metadata"]["name"].endswith(("-activator", "-web")):
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe


def operator_rules(values: str, tmp_path: Path) -> list[tuple[str, str]]:
    file = tmp_path / f"values-{abs(hash(values))}.yaml"  # chart.render caches by path
    file.write_text(values)
    return [(resource, verb) for obj in chart.objects(chart.render(4, file))
            if obj["kind"] in ("ClusterRole", "Role")
            and obj["metadata"]["name"].startswith(f"{chart.RELEASE}-operator")
            for rule in obj["rules"] for resource in rule["resources"] for verb in rule["verbs"]]


@pytest.mark.parametrize("watched", [False, True], ids=["cluster-wide", "watchNamespaces"])
def test_volumes_are_granted_only_with_a_csi_driver(tmp_path: Path, watched: bool) -> None:
    """Storage mode `mount` applies PVs and claims only through a CSI driver: no driver, no grant
    (but a DevEnvironment's home claim, applied: create and patch)."""
    base = "watchNamespaces: [team-a]\n" if watched else ""
    volumes = ("persistentvolumes", "persistentvolumeclaims")
    without = operator_rules(base + "storage:\n  csiDriver: ''\n", tmp_path)
    home_claims = {("persistentvolumeclaims", "create"), ("persistentvolumeclaims", "patch")}
    assert not [rule for rule in without if rule[0] in volumes and rule not in home_claims]
    with_driver = operator_rules(base + "storage:\n  csiDriver: csi-rclone\n", tmp_path)
    for resource in volumes:
        assert {"list", "patch", "delete"} <= {verb for r, verb in with_driver if r == resource}, resource


def test_gpu_workload_values_reach_the_operator_as_settings_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from deep_platform.config import OperatorConfig

    values = chart.CHART / "ci" / "all-enabled-values.yaml"
    wanted = yaml.safe_load(values.read_text())["gpuWorkloads"]
    objs = chart.objects(chart.render(4, values))
    operator = next(o for o in by_kind(objs, "Deployment") if o["metadata"]["name"].endswith("-operator"))
    for item in operator["spec"]["template"]["spec"]["containers"][0]["env"]:
        monkeypatch.setenv(item["name"], item.get("value", ""))
    config = OperatorConfig()
    assert config.gpu_node_selector == wanted["nodeSelector"]
    assert config.gpu_tolerations == wanted["tolerations"]
    assert config.gpu_runtime_class == wanted["runtimeClassName"]
