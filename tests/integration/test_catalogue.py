"""The catalogue in the emulator: entries, the sharded index, MetadataValid, deletion, continuous
delivery to InferenceServices, and the HTTP API served from the ConfigMaps."""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient, TestServer

from deep_platform import kube as k
from deep_platform.api import InferenceService, Module
from deep_platform.catalogue.index import read_index
from deep_platform.web import create_app
from tests.harness.operator_fixtures import kube_for, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODULES = k.kind_of(Module)
SERVICES = k.kind_of(InferenceService)
NS = "deep-platform"


def module_body(name: str = "phyto-plankton-classification", **meta: Any) -> dict[str, Any]:
    body = yaml.safe_load((EXAMPLES / "module.yaml").read_text())
    body["metadata"] = {"name": name}
    body["spec"]["metadata"].update(meta)
    return body


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def index_names(api: k.Kube) -> list[str]:
    return sorted(item["name"] for item in read_index(api, NS))


def container_image(api: k.Kube, name: str, ns: str = "default") -> str | None:
    dep = api.get(k.DEPLOYMENT, name, ns)
    return dep["spec"]["template"]["spec"]["containers"][0]["image"] if dep else None


def test_module_is_published_and_indexed(operator: Any) -> None:
    api = operator.kube
    api.create(module_body())
    module = operator.wait_for(MODULES, "phyto-plankton-classification",
                               until=lambda o: condition(o, "MetadataValid") is not None)
    assert condition(module, "MetadataValid")["status"] == "True"
    assert condition(module, "Ready")["status"] == "True"
    entry = api.get(k.CONFIGMAP, module["status"]["catalogueEntry"], NS)
    assert json.loads(entry["data"]["module.json"])["metadata"]["title"].startswith("Phytoplankton")
    wait_until(lambda: index_names(api) == ["phyto-plankton-classification"], what="the index")


def test_invalid_metadata_is_a_condition_naming_each_field(operator: Any) -> None:
    api = operator.kube
    api.create(module_body("bad-meta", summary=None, libraries=["Pytorch"]))
    module = operator.wait_for(MODULES, "bad-meta", until=lambda o: condition(o, "MetadataValid") is not None)
    valid = condition(module, "MetadataValid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidMetadata")
    assert "spec.metadata.summary" in valid["message"] and "spec.metadata.libraries[0]" in valid["message"]
    # published all the same, flagged, so that nothing the author wrote is lost
    item = wait_until(lambda: next((i for i in read_index(api, NS) if i["name"] == "bad-meta"), None))
    assert item["metadataValid"] is False
    events = api.list(k.EVENT, "default") + api.list(k.EVENT)
    assert any(e.get("reason") == "InvalidMetadata" for e in events)


def test_deleted_module_leaves_no_trace(operator: Any) -> None:
    api = operator.kube
    api.create(module_body("a-mod"))
    api.create(module_body("b-mod"))
    wait_until(lambda: index_names(api) == ["a-mod", "b-mod"], what="both indexed")
    api.delete(MODULES, "a-mod")
    wait_until(lambda: index_names(api) == ["b-mod"], what="a-mod gone from the index")
    wait_until(lambda: api.get(k.CONFIGMAP, "module-a-mod", NS) is None, what="entry collected")
    leftovers = [cm["metadata"]["name"] for cm in api.list(k.CONFIGMAP, NS) if "a-mod" in json.dumps(cm)]
    assert leftovers == []


def test_index_is_consistent_under_concurrent_create_change_delete(operator: Any) -> None:
    api = operator.kube
    names = [f"mod-{i:03d}" for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: api.create(module_body(n)), names))
        list(pool.map(lambda n: api.patch(MODULES, n, None, {"spec": {"metadata": {"title": f"T {n}"}}}),
                      names[:20]))
        list(pool.map(lambda n: api.delete(MODULES, n), names[40:]))
    expected = names[:40]

    def settled() -> bool:
        items = {i["name"]: i for i in read_index(api, NS)}
        return sorted(items) == expected and all(items[n]["title"] == f"T {n}" for n in names[:20])

    wait_until(settled, timeout=30, what="index == Modules")


def test_new_module_image_rolls_out_unless_pinned(operator: Any) -> None:
    api = operator.kube
    api.create(module_body())
    follow = yaml.safe_load((EXAMPLES / "inferenceservice.yaml").read_text())
    pinned = copy.deepcopy(follow)
    pinned["metadata"]["name"] = "pinned"
    pinned["spec"]["image"] = "example.org/own:1"
    api.create(follow)
    api.create(pinned)
    wait_until(lambda: container_image(api, "plankton") == "ai4oshub/phyto-plankton-classification:latest")
    wait_until(lambda: container_image(api, "pinned") == "example.org/own:1")
    operator.wait_for(
        MODULES, "phyto-plankton-classification",
        until=lambda o: o.get("status", {}).get("inferenceServices")
        == ["default/pinned", "default/plankton"],
    )
    api.patch(MODULES, "phyto-plankton-classification", None,
              {"spec": {"image": "ai4oshub/phyto-plankton-classification@sha256:" + "a" * 64}})
    wait_until(lambda: (container_image(api, "plankton") or "").endswith("a" * 64), what="rollout")
    assert container_image(api, "pinned") == "example.org/own:1"
    operator.wait_for(MODULES, "phyto-plankton-classification",
                      until=lambda o: o["status"].get("image", "").endswith("a" * 64))
    cm = api.get(k.CONFIGMAP, "module-phyto-plankton-classification", NS)
    entry = json.loads(cm["data"]["module.json"])
    assert entry["image"].endswith("a" * 64)
    assert any(e.endswith("/default/plankton/") for e in entry["endpoints"])


def test_a_service_that_moves_to_another_module_leaves_the_old_ones_users(operator: Any) -> None:
    api = operator.kube
    api.create(module_body())
    api.create(module_body("other-module"))
    api.create(yaml.safe_load((EXAMPLES / "inferenceservice.yaml").read_text()))
    operator.wait_for(MODULES, "phyto-plankton-classification",
                      until=lambda o: o.get("status", {}).get("inferenceServices") == ["default/plankton"])
    api.patch(SERVICES, "plankton", "default", {"spec": {"module": "other-module"}})
    operator.wait_for(MODULES, "other-module",
                      until=lambda o: o.get("status", {}).get("inferenceServices") == ["default/plankton"])
    operator.wait_for(MODULES, "phyto-plankton-classification",
                      until=lambda o: not o.get("status", {}).get("inferenceServices"), timeout=5)


async def test_http_api_and_pages(operator: Any, apiserver: Any) -> None:
    api = operator.kube
    api.create(module_body())
    api.create(module_body("xss-mod", title="<script>alert(1)</script>", tasks=["Regression"],
                           summary="A regression demo", libraries=["Other"],
                           description="# Hello\n<img src=x onerror=alert(1)>\n[bad](javascript:alert(1))"))
    wait_until(lambda: len(read_index(api, NS)) == 2, what="two modules indexed")
    web = kube_for(apiserver.url, component="web")  # as `deep-platform web` builds it: its calls are its own
    client = TestClient(TestServer(create_app(web, operator.config)))
    await client.start_server()
    try:
        assert (await (await client.get("/healthz")).text()).strip() == "ok"
        home = await client.get("/", allow_redirects=False)
        assert home.status == 302 and home.headers["Location"] == "/catalogue/"
        listing = await (await client.get("/catalogue/modules?format=json")).json()
        assert sorted(m["name"] for m in listing["modules"]) == ["phyto-plankton-classification", "xss-mod"]
        text = await (await client.get("/catalogue/modules", headers={"Accept": "text/plain"})).text()
        assert text.startswith("phyto-plankton-classification\tPhytoplankton")
        only = await (await client.get("/catalogue/modules?format=json&task=regression")).json()
        assert [m["name"] for m in only["modules"]] == ["xss-mod"]
        found = await (await client.get("/catalogue/modules?format=json&library=Keras&q=plankton")).json()
        assert [m["name"] for m in found["modules"]] == ["phyto-plankton-classification"]
        html = await (await client.get("/catalogue/")).text()
        assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
        page = await (await client.get("/catalogue/modules/xss-mod")).text()
        assert "<h1>Hello</h1>" in page
        assert "<img src=x" not in page, [line for line in page.splitlines() if "<img src=x" in line]
        assert 'href="javascript' not in page
        good = await (await client.get("/catalogue/modules/phyto-plankton-classification")).text()
        tj = yaml.safe_load(good.split('<pre id="trainingjob">')[1].split("</pre>")[0])
        assert tj["kind"] == "TrainingJob" and tj["spec"]["module"] == "phyto-plankton-classification"
        dev = yaml.safe_load(good.split('<pre id="devenvironment">')[1].split("</pre>")[0])
        assert dev["kind"] == "DevEnvironment" and dev["spec"]["module"] == "phyto-plankton-classification"
        assert (await client.get("/catalogue/modules/nope")).status == 404
    finally:
        await client.close()
        web.close()


def test_new_module_gets_one_event_naming_both_transitions_and_no_kopf_bookkeeping(operator: Any) -> None:
    api = operator.kube
    api.create(module_body("evented"))
    module = operator.wait_for(MODULES, "evented", until=lambda o: condition(o, "Ready") is not None)
    mine = wait_until(lambda: [e for e in api.list(k.EVENT)  # every namespace
                               if e["involvedObject"]["name"] == "evented"] or None, what="the Event")
    assert len(mine) == 1, mine  # MetadataValid and Ready changed in one reconcile: one Event
    assert mine[0]["reason"] == "Published" and mine[0]["type"] == "Normal"
    assert "MetadataValid=True" in mine[0]["message"] and "Ready=True" in mine[0]["message"]
    # an event-driven controller: no finalizer to remove on delete, no kopf state annotations
    assert not module["metadata"].get("finalizers")
    assert not [a for a in module["metadata"].get("annotations") or {} if "deep-hybrid-datacloud.eu" in a]
