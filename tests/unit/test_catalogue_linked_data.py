"""The catalogue as MLDCAT-AP JSON-LD, from the web app's catalogue routes, read back as RDF.

The documents name AI4OS's published MLDCAT-AP context (the `ai4-metadata` package's mapping),
which `@import`s SEMIC's MLDCAT-AP context; neither URL is reachable from the tests. The first is
the file the package ships, so it is served from there; the second (class names such as
MachineLearningModel) stands in as an empty context, so those names resolve against the document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ai4_metadata
import pytest
import rdflib
import yaml
from aiohttp.test_utils import TestClient, TestServer
from rdflib.namespace import DCAT, DCTERMS, RDF

from deep_platform.api import Module
from deep_platform.builders.module import build_index, entry_name, index_item
from deep_platform.catalogue import linked_data
from deep_platform.config import OperatorConfig
from deep_platform.web import create_app

NS = "deep-platform"
IT6 = rdflib.Namespace("http://data.europa.eu/it6/")
EXAMPLE = Path(__file__).parents[2] / "examples" / "module.yaml"
PACKAGE_CONTEXT = Path(ai4_metadata.__file__).parent / "assets" / "json-ld" / "mldcat-ap-context-2.0.0.jsonld"


class FakeKube:
    """The two reads the catalogue routes make: get and list ConfigMaps."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = {o["metadata"]["name"]: o for o in objects}

    def get(self, _kind: Any, name: str, _namespace: str | None = None) -> dict[str, Any] | None:
        return self.objects.get(name)

    def list(
        self, _kind: Any, _namespace: str | None = None, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        key, _, value = label_selector.partition("=")
        return [o for o in self.objects.values() if o["metadata"].get("labels", {}).get(key) == value]


def modules() -> list[Module]:
    example = yaml.safe_load(EXAMPLE.read_text())
    odd = {"apiVersion": example["apiVersion"], "kind": "Module", "metadata": {"name": "odd one"},
           "spec": {"image": "deephdc/odd:1", "metadata": {"title": "Odd", "tasks": "not a list",
                                                          "links": ["not", "a", "dict"], "license": 3}}}
    return [Module.from_body(example), Module.from_body(odd)]


def configmaps() -> list[dict[str, Any]]:
    found = build_index([index_item(m) for m in modules()], NS)
    for module in modules():
        entry = {"name": module.name, "image": module.spec.image, "capabilities": {"trainable": True},
                 "metadata": module.spec.metadata}
        found.append({"metadata": {"name": entry_name(module.name), "namespace": NS},
                      "data": {"module.json": json.dumps(entry)}})
    return found


@pytest.fixture
def offline_contexts(monkeypatch: pytest.MonkeyPatch) -> None:
    from rdflib.plugins.shared.jsonld import context

    package = json.loads(PACKAGE_CONTEXT.read_text())
    imported = package["@context"]["@import"]

    def source_to_json(url: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if url == linked_data.CONTEXT:
            return json.loads(PACKAGE_CONTEXT.read_text()), None
        if url == imported:
            return {"@context": {}}, None
        raise AssertionError(f"the test fetched {url}")

    monkeypatch.setattr(context, "source_to_json", source_to_json)


def graph_of(text: str, base: str) -> rdflib.Graph:
    graph = rdflib.Graph()
    graph.parse(data=text, format="json-ld", base=base)
    return graph


async def test_module_and_catalogue_as_mldcat_ap_rdf(offline_contexts: None) -> None:
    app = create_app(FakeKube(configmaps()), OperatorConfig())  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        root = str(client.make_url("/catalogue/"))
        page = root + "modules/phyto-plankton-classification"

        by_url = await client.get("/catalogue/modules/phyto-plankton-classification.jsonld")
        assert by_url.status == 200
        assert by_url.headers["Content-Type"].startswith("application/ld+json")
        by_accept = await client.get("/catalogue/modules/phyto-plankton-classification",
                                     headers={"Accept": "application/ld+json"})
        document = await by_url.json(content_type=None)
        assert document == await by_accept.json(content_type=None)
        assert document["@context"] == linked_data.CONTEXT  # the package's own mapping
        module = rdflib.URIRef(page)
        graph = graph_of(json.dumps(document), page)
        meta = yaml.safe_load(EXAMPLE.read_text())["spec"]["metadata"]
        assert str(graph.value(module, DCTERMS.title)) == meta["title"]
        assert str(graph.value(module, IT6.shortDescription)) == meta["summary"]
        assert {str(t) for t in graph.objects(module, DCAT.keyword)} == set(meta["tags"])
        tasks = {str(t) for t in graph.objects(module, IT6.hasTaskType)}
        vocabulary = "http://w3id.org/ai4os/vocabulary/tasktype/"
        assert tasks == {vocabulary + t.replace(" ", "_") for t in meta["tasks"]}
        assert graph.value(module, RDF.type) is not None
        if meta.get("license"):
            assert graph.value(module, DCTERMS.license) is not None

        catalogue = await client.get("/catalogue/modules.jsonld")
        assert catalogue.headers["Content-Type"].startswith("application/ld+json")
        same = await client.get("/catalogue/modules", headers={"Accept": "application/ld+json"})
        text = await catalogue.text()
        assert json.loads(text) == await same.json(content_type=None)
        graph = graph_of(text, root)
        [node] = graph.subjects(RDF.type, DCAT.Catalog)
        assert str(node) == root
        resources = {str(r) for r in graph.objects(node, rdflib.URIRef(linked_data.DCAT + "resource"))}
        assert resources == {page, root + "modules/odd%20one"}
        assert str(graph.value(module, DCTERMS.title)) == meta["title"]  # the same node as its page

        odd = await client.get("/catalogue/modules/odd%20one.jsonld")  # malformed fields left out
        assert odd.status == 200
        graph = graph_of(await odd.text(), root)
        assert str(graph.value(rdflib.URIRef(root + "modules/odd%20one"), DCTERMS.title)) == "Odd"

        filtered = await client.get("/catalogue/modules.jsonld?q=nothing-matches")
        assert (await filtered.json(content_type=None))["resource"] == []
        assert (await client.get("/catalogue/modules/nope.jsonld")).status == 404
        # the other formats are unchanged
        assert "modules" in await (await client.get("/catalogue/modules?format=json")).json()
