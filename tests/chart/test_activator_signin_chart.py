"""activator.auth.browserSignIn: the chart hands the activator its OIDC client and cookie key as
settings the activator accepts, and refuses a half-set configuration naming what to set."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from deep_platform.activator.signin import BrowserSignIn
from deep_platform.auth import SiteAuth
from tests.chart import chart

ALL = chart.CHART / "ci" / "all-enabled-values.yaml"


def activator_pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(o for o in objs
                      if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-activator"))
    return dict(deployment["spec"]["template"]["spec"])


def test_browser_sign_in_reaches_the_activator_as_settings_it_accepts(tmp_path: Path) -> None:
    pod = activator_pod(chart.objects(chart.render(4, ALL)))
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secret_env == {"DEEP_ACTIVATOR_OIDC_CLIENT_SECRET": {"name": "deep-activator-oidc",
                                                                "key": "client-secret"}}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "cookie-key")
    volume = next(v for v in pod["volumes"] if v["name"] == "cookie-key")
    assert volume["secret"]["secretName"] == "deep-activator-cookie"
    key_file = Path(env["DEEP_ACTIVATOR_COOKIE_KEY_FILE"] or "")
    assert str(key_file.parent) == mount["mountPath"]
    assert key_file.name == volume["secret"]["items"][0]["path"]
    # every variable the settings read is set, and the activator accepts them (a key file in place)
    source = (chart.ROOT / "operator" / "deep_platform" / "activator" / "signin.py").read_text()
    read = set(re.findall(r"\"(DEEP_ACTIVATOR_[A-Z_]+)\"", source))
    assert read <= env.keys() | secret_env.keys(), sorted(read - env.keys() - secret_env.keys())
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32).hex().encode())
    values = {k: v for k, v in env.items() if k.startswith("DEEP_ACTIVATOR_") and v is not None}
    site = SiteAuth(issuer=env["DEEP_OIDC_ISSUER"], audience=env["DEEP_OIDC_AUDIENCE"])
    settings = BrowserSignIn.from_env({**values, "DEEP_ACTIVATOR_COOKIE_KEY_FILE": str(key),
                                       "DEEP_ACTIVATOR_OIDC_CLIENT_SECRET": "s"}).check(site)
    assert settings.enabled and settings.client_id == "deep-activator"
    assert settings.public_url == "https://models.deep.example.org"  # redirect URI: URL/.auth/callback


def test_off_by_default_and_half_set_values_are_refused(tmp_path: Path) -> None:
    env = {e["name"] for e in activator_pod(chart.objects(chart.render(4)))["containers"][0]["env"]}
    assert not {n for n in env if n.startswith("DEEP_ACTIVATOR_OIDC")}
    for values, says in (
        ({"activator": {"auth": {"browserSignIn": {"clientId": "a"}}}}, "activator.auth.oidc.issuer"),
        ({"activator": {"auth": {"oidc": {"issuer": "https://iam.example.org"},
                                 "browserSignIn": {"clientId": "a"}}}}, "cookieSecret.name"),
        ({"activator": {"auth": {"browserSignIn": {"sessionSeconds": 5}}}}, "sessionSeconds"),
    ):
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        result = chart.run_helm(4, *chart.template_args(path), check=False)
        assert result.returncode != 0 and says in result.stderr, result.stderr
