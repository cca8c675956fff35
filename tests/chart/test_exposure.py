"""The chart's exposure and sign-in settings: Ingress and HTTPRoute for the activator and the
web app (TLS, cert-manager), the model pods' NetworkPolicy, and web.auth reaching the web app."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deep_platform.api import DevEnvironment, InferenceService
from deep_platform.builders import devenvironment, inferenceservice
from deep_platform.signin import SignInSettings
from tests.chart import chart

ALL = chart.CHART / "ci" / "all-enabled-values.yaml"
HTTPROUTE_SCHEMA = chart.ROOT / "tests" / "data" / "gateway-api" / "httproute-v1.schema.json"


def render(tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    text = yaml.safe_dump(values)
    path = tmp_path / f"values-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"  # chart.render caches
    path.write_text(text)
    return chart.objects(chart.render(4, path))


def named(objs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(suffix))


def test_ingresses_of_both_components_with_tls_and_cert_manager() -> None:
    objs = chart.objects(chart.render(4, ALL))
    for suffix, host in (("-activator", "models.deep.example.org"), ("-web", "deep.example.org")):
        ingress = named(objs, "Ingress", suffix)
        assert ingress["spec"]["tls"][0]["hosts"] == [host]
        assert ingress["spec"]["rules"][0]["host"] == host
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
        service = named(objs, "Service", suffix)
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_httproutes_match_the_gateway_api_schema_and_reach_the_services() -> None:
    schema = json.loads(HTTPROUTE_SCHEMA.read_text())
    objs = chart.objects(chart.render(4, ALL))
    routes = [o for o in objs if o["kind"] == "HTTPRoute"]
    assert len(routes) == 2
    for route in routes:
        jsonschema.validate(route, schema)
        backend = route["spec"]["rules"][0]["backendRefs"][0]
        service = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == backend["name"])
        assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}
    # the pinned schema does refuse what the CRD refuses
    broken = {**routes[0], "spec": {**routes[0]["spec"], "hostnames": ["https://deep.example.org/"]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_an_ingress_host_becomes_the_public_urls(tmp_path: Path) -> None:
    objs = render(tmp_path, {
        "activator": {"ingress": {"enabled": True, "host": "models.example.org", "tlsSecretName": "m-tls"}},
        "web": {"ingress": {"enabled": True, "host": "deep.example.org", "tlsSecretName": "d-tls"}}})
    operator = named(objs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "DEEP_ACTIVATOR_URL", "value": "https://models.example.org"} in operator["env"]
    web = named(objs, "Deployment", "-web")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "DEEP_WEB_PUBLIC_URL", "value": "https://deep.example.org"} in web["env"]


def test_model_pods_accept_only_the_activator(tmp_path: Path) -> None:
    """The policy selects the pods the operator builds for InferenceServices and DevEnvironments,
    and admits the pods of the chart's activator Deployment from the release namespace, only."""
    objs = render(tmp_path, {"networkPolicies": {"enabled": True}, "watchNamespaces": ["team-a", "team-b"]})
    policies = [o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-models")]
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["team-a", "team-b"]
    policy = policies[0]["spec"]
    def example(name: str) -> dict[str, Any]:
        body = yaml.safe_load((chart.ROOT / "examples" / name).read_text())
        return {**body, "metadata": {**body["metadata"], "uid": "u-1"},
                "spec": {**body["spec"], "image": "deephdc/phyto:1"}}

    isvc = InferenceService.from_body(example("inferenceservice.yaml"))
    dev = DevEnvironment.from_body(example("devenvironment.yaml"))
    (expression,) = policy["podSelector"]["matchExpressions"]
    assert expression["operator"] == "In"
    built = (inferenceservice.build_deployment(isvc, None), devenvironment.build_deployment(dev, None))
    for deployment in built:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels[expression["key"]] in expression["values"], labels
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    activator = named(objs, "Deployment", "-activator")["spec"]["template"]["metadata"]["labels"]
    assert peer["podSelector"]["matchLabels"].items() <= activator.items()
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": chart.NAMESPACE}
    web = named(objs, "Deployment", "-web")["spec"]["template"]["metadata"]["labels"]
    assert not peer["podSelector"]["matchLabels"].items() <= web.items()
    # no watched namespaces and none listed: no policy to place (docs/chart.md says so)
    assert not [o for o in render(tmp_path, {"networkPolicies": {"enabled": True}})
                if o["metadata"]["name"].endswith("-models")]


def test_web_auth_reaches_the_web_app_as_settings_it_accepts(tmp_path: Path) -> None:
    objs = chart.objects(chart.render(4, ALL))
    web = named(objs, "Deployment", "-web")["spec"]["template"]["spec"]
    container = web["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secret_env == {"DEEP_OIDC_CLIENT_SECRET": {"name": "deep-dashboard-oidc", "key": "client-secret"}}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "cookie-key")
    volume = next(v for v in web["volumes"] if v["name"] == "cookie-key")
    assert volume["secret"]["secretName"] == "deep-web-cookie"
    key_file = Path(env["DEEP_WEB_COOKIE_KEY_FILE"] or "")
    assert str(key_file.parent) == mount["mountPath"]
    assert key_file.name == volume["secret"]["items"][0]["path"]
    # every variable the settings read is set, and the app accepts them (a key file in place)
    source = (chart.ROOT / "operator" / "deep_platform" / "signin" / "settings.py").read_text()
    import re

    read = set(re.findall(r"\"(DEEP_[A-Z_]+)\"", source)) - {"DEEP_OIDC_USERNAME_PREFIX"}  # unset: default
    assert read <= env.keys() | secret_env.keys(), sorted(read - env.keys() - secret_env.keys())
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32).hex().encode())
    values = {k: v for k, v in env.items() if k.startswith(("DEEP_WEB", "DEEP_OIDC")) and v is not None}
    settings = SignInSettings.from_env({**values, "DEEP_WEB_COOKIE_KEY_FILE": str(key),
                                        "DEEP_OIDC_CLIENT_SECRET": "s"})
    assert (settings.issuer, settings.username_claim, settings.groups_prefix) == (
        "https://iam.deep-hybrid-datacloud.eu", "email", "oidc:")
    assert settings.effective_username_prefix == ""
    assert settings.public_url == "https://deep.example.org"


def test_subject_access_reviews_are_granted_only_with_sign_in(tmp_path: Path) -> None:
    def reviews(values: dict[str, Any]) -> list[str]:
        return [o["metadata"]["name"] for o in render(tmp_path, values) if o["kind"] == "ClusterRole"
                and any("subjectaccessreviews" in r["resources"] for r in o["rules"])]

    assert reviews({}) == [f"{chart.RELEASE}-web-access-review"]
    assert reviews({"watchNamespaces": ["team-a"]}) == [f"{chart.RELEASE}-web-access-review"]
    assert reviews({"web": {"auth": {"mode": "none-unsafe"}}}) == []
