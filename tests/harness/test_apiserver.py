# The typed `kubernetes` 37 client declares model classes and Optional fields everywhere; these
# tests pass plain dicts (as operators do) and read fields they just wrote, so relax those checks.
# mypy: disable-error-code="arg-type,union-attr,assignment"
"""The emulator behaves like kube-apiserver: each fidelity point proven over real HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import kopf
import kubernetes.client
import kubernetes.dynamic
import pytest
from kubernetes.client import ApiException

from tests.harness.apiserver import ApiCall, ApiServer

GROUP = "example.com"
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "!has(self.minCount) || self.minCount <= self.maxCount",
                                        "message": "minCount must not exceed maxCount",
                                    },
                                    {"rule": "self.size == oldSelf.size", "message": "size is immutable"},
                                    {"rule": "self.tags.all(t, t != '')", "message": "no empty tags"},
                                ],
                                "properties": {
                                    "size": {"type": "string", "enum": ["small", "large"]},
                                    "minCount": {"type": "integer", "minimum": 0},
                                    "maxCount": {"type": "integer", "maximum": 10, "default": 5},
                                    "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                                    "title": {"type": "string", "minLength": 2},
                                    "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "until": {"type": "string", "format": "date-time"},
                                    "note": {"type": "string", "nullable": True},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "template": {
                                        "type": "object",
                                        "x-kubernetes-embedded-resource": True,
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                    "gpu": {
                                        "type": "object",
                                        "properties": {
                                            "count": {"type": "integer", "minimum": 0, "default": 0}
                                        },
                                    },
                                    "ports": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "items": {
                                            "type": "object",
                                            "required": ["name"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "port": {"type": "integer"},
                                            },
                                        },
                                    },
                                },
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str = "w1", /, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"size": "small", **spec},
    }


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer.running() as server:
        server.load_crds([WIDGET_CRD])
        yield server


@pytest.fixture
def client(api: ApiServer) -> Iterator[kubernetes.client.ApiClient]:
    config = kubernetes.client.Configuration()
    config.host = api.url
    with kubernetes.client.ApiClient(config) as c:
        yield c


@pytest.fixture
def core(client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(client)


@pytest.fixture
def custom(client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(client)


@pytest.fixture
def apps(client: kubernetes.client.ApiClient) -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(client)


def error(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.value.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == exc.value.status
    return body


def create_widget(custom: kubernetes.client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", body)
    return result


def deployment(name: str = "d1", replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "main", "image": "img:1", "env": [{"name": "A", "value": "1"}]}]
                },
            },
        },
    }


# --- 1. resourceVersion, uid, conflicts, error shapes ----------------------------------------


def test_create_sets_server_fields_and_rv_is_global_and_monotonic(core: kubernetes.client.CoreV1Api) -> None:
    a = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    b = core.create_namespaced_secret("default", {"metadata": {"generateName": "s-"}})
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    assert a.metadata.uid and a.metadata.creation_timestamp
    assert b.metadata.name.startswith("s-") and len(b.metadata.name) == 7
    listed = core.list_namespaced_config_map("default")
    assert int(listed.metadata.resource_version) >= int(b.metadata.resource_version)


def test_stale_resource_version_conflicts(core: kubernetes.client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "1"}})
    stale = cm.metadata.resource_version
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "2"}})
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map(
            "a", "default", {"metadata": {"name": "a", "resourceVersion": stale}, "data": {"k": "3"}}
        )
    body = error(exc)
    assert (body["code"], body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "a": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_config_map(
            "a", "default", {"metadata": {"resourceVersion": stale}, "data": {"k": "4"}}
        )
    assert error(exc)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("a", "default").data == {"k": "2"}


def test_already_exists_and_not_found(custom: kubernetes.client.CustomObjectsApi) -> None:
    create_widget(custom, widget())
    with pytest.raises(ApiException) as exc:
        create_widget(custom, widget())
    assert error(exc) | {"metadata": {}} == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": 409,
        "reason": "AlreadyExists",
        "message": 'widgets.example.com "w1" already exists',
        "details": {"name": "w1", "group": GROUP, "kind": "widgets"},
    }
    with pytest.raises(ApiException) as exc:
        custom.get_namespaced_custom_object(GROUP, "v1", "default", "widgets", "nope")
    body = error(exc)
    assert (body["reason"], body["message"]) == ("NotFound", 'widgets.example.com "nope" not found')
    assert body["details"] == {"name": "nope", "group": GROUP, "kind": "widgets"}


def test_builtin_name_and_namespace_checks(core: kubernetes.client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Bad_Name"}})
    body = error(exc)
    assert body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["message"].startswith(
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"'
    )
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("ghost", {"metadata": {"name": "a"}})
    body = error(exc)
    assert (body["code"], body["message"]) == (404, 'namespaces "ghost" not found')


def test_object_count_quota_refuses_one_object_too_many(core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespaced_resource_quota(
        "default", {"metadata": {"name": "few"}, "spec": {"hard": {"count/configmaps": "1"}}}
    )
    core.create_namespaced_config_map("default", {"metadata": {"name": "first"}})
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "second"}})
    body = error(exc)
    assert (body["code"], body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        'configmaps "second" is forbidden: exceeded quota: few, requested: count/configmaps=1, '
        "used: count/configmaps=1, limited: count/configmaps=1"
    )
    core.create_namespaced_config_map("kube-system", {"metadata": {"name": "second"}})  # per namespace
    core.delete_namespaced_config_map("first", "default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "second"}})


# --- 2, 3. generation and the status subresource ----------------------------------------------


def test_generation_and_status_subresource_on_custom_resources(
    custom: kubernetes.client.CustomObjectsApi,
) -> None:
    obj = create_widget(custom, {**widget(), "status": {"phase": "ignored"}})
    assert obj["metadata"]["generation"] == 1 and "status" not in obj
    args = (GROUP, "v1", "default", "widgets", "w1")
    obj = custom.patch_namespaced_custom_object(
        *args, {"metadata": {"labels": {"a": "b"}}, "status": {"x": 1}}
    )
    assert obj["metadata"]["generation"] == 1 and "status" not in obj
    obj = custom.patch_namespaced_custom_object(*args, {"spec": {"minCount": 1}})
    assert obj["metadata"]["generation"] == 2
    rv = obj["metadata"]["resourceVersion"]
    obj = custom.patch_namespaced_custom_object_status(
        *args, {"status": {"phase": "Ready"}, "spec": {"minCount": 3}}
    )
    assert obj["status"] == {"phase": "Ready"} and obj["spec"]["minCount"] == 1
    assert obj["metadata"]["generation"] == 2 and int(obj["metadata"]["resourceVersion"]) > int(rv)


def test_status_subresource_on_builtins(
    core: kubernetes.client.CoreV1Api, apps: kubernetes.client.AppsV1Api
) -> None:
    pod = core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        },
    )
    assert pod.status.phase == "Pending"
    pod = core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})
    assert pod.status.phase == "Running"
    dep = apps.create_namespaced_deployment("default", deployment())
    assert dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment_status("d1", "default", {"status": {"readyReplicas": 1}})
    assert dep.status.ready_replicas == 1 and dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment("d1", "default", {"status": {"readyReplicas": 5}})
    assert dep.status.ready_replicas == 1


# --- 4. patch types and server-side apply -----------------------------------------------------


def test_merge_json_and_strategic_patches(
    core: kubernetes.client.CoreV1Api, apps: kubernetes.client.AppsV1Api
) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}})
    cm = core.patch_namespaced_config_map(
        "a", "default", {"data": {"x": None, "z": "3"}}, _content_type="application/merge-patch+json"
    )
    assert cm.data == {"y": "2", "z": "3"}
    cm = core.patch_namespaced_config_map(
        "a",
        "default",
        [{"op": "replace", "path": "/data/y", "value": "9"}, {"op": "remove", "path": "/data/z"}],
        _content_type="application/json-patch+json",
    )
    assert cm.data == {"y": "9"}
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_config_map(
            "a",
            "default",
            [{"op": "test", "path": "/data/y", "value": "0"}],
            _content_type="application/json-patch+json",
        )
    assert error(exc)["code"] == 422
    apps.create_namespaced_deployment("default", deployment())
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "main", "env": [{"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "side:1"},
                    ]
                }
            }
        }
    }
    dep = apps.patch_namespaced_deployment(
        "d1", "default", patch, _content_type="application/strategic-merge-patch+json"
    )
    containers = dep.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [("main", "img:1"), ("sidecar", "side:1")]
    assert [e.name for e in containers[0].env] == ["A", "B"]
    assert dep.metadata.generation == 2


def test_strategic_merge_is_refused_for_custom_resources(
    api: ApiServer, client: kubernetes.client.ApiClient, custom: kubernetes.client.CustomObjectsApi
) -> None:
    create_widget(custom, widget())
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            GROUP,
            "v1",
            "default",
            "widgets",
            "w1",
            {"spec": {}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert error(exc)["code"] == 415


def test_server_side_apply(api: ApiServer, client: kubernetes.client.ApiClient) -> None:
    dyn = kubernetes.dynamic.DynamicClient(client)
    widgets = dyn.resources.get(api_version=f"{GROUP}/v1", kind="Widget")
    body = widget(ports=[{"name": "http", "port": 80}], labels={"a": "1"})
    first = dyn.server_side_apply(widgets, body, field_manager="op", namespace="default").to_dict()
    assert first["metadata"]["managedFields"][0]["manager"] == "op"
    assert first["metadata"]["managedFields"][0]["operation"] == "Apply"
    assert first["spec"]["maxCount"] == 5  # defaulted
    again = dyn.server_side_apply(widgets, body, field_manager="op", namespace="default").to_dict()
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]  # no-op

    # Another manager adds a list item by key: both items stay; then "op" drops a field it owns.
    other = {**widget(), "spec": {"size": "small", "ports": [{"name": "https", "port": 443}]}}
    dyn.server_side_apply(widgets, other, field_manager="other", namespace="default")
    body["spec"].pop("labels")
    obj = dyn.server_side_apply(widgets, body, field_manager="op", namespace="default").to_dict()
    assert sorted(p["name"] for p in obj["spec"]["ports"]) == ["http", "https"]
    assert "labels" not in obj["spec"]

    conflicting = widget(ports=[{"name": "http", "port": 8080}])
    with pytest.raises(ApiException) as exc:
        dyn.server_side_apply(widgets, conflicting, field_manager="other", namespace="default")
    body409 = error(exc)
    assert body409["reason"] == "Conflict" and 'conflict with "op"' in body409["message"]
    obj = dyn.server_side_apply(
        widgets, conflicting, field_manager="other", namespace="default", force_conflicts=True
    ).to_dict()
    assert [p["port"] for p in obj["spec"]["ports"] if p["name"] == "http"] == [8080]


def test_apply_needs_a_field_manager_and_accepts_yaml(
    api: ApiServer, client: kubernetes.client.ApiClient
) -> None:
    path = "/api/v1/namespaces/default/configmaps/y"
    yaml_body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n"
    response = client.call_api(
        *client.param_serialize(
            "PATCH", path, body=yaml_body, header_params={"Content-Type": "application/apply-patch+yaml"}
        )
    )
    response.read()
    assert response.status == 422
    response = client.call_api(
        *client.param_serialize(
            "PATCH",
            path,
            query_params=[("fieldManager", "me")],
            body=yaml_body,
            header_params={"Content-Type": "application/apply-patch+yaml"},
        )
    )
    response.read()
    assert response.status == 201
    assert api.get("configmaps", "default", "y")["data"] == {"k": "v"}  # type: ignore[index]


def test_noop_writes_do_not_bump_resource_version(core: kubernetes.client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "1"}})
    same = core.patch_namespaced_config_map("a", "default", {"data": {"k": "1"}})
    assert same.metadata.resource_version == cm.metadata.resource_version


# --- 5. CRD schemas: pruning, defaults, validation, CEL ---------------------------------------


def test_pruning_and_defaults(api: ApiServer) -> None:
    obj = api.create(
        widget(
            unknown=1,
            title=None,
            extra={"free": {"form": True}},
            labels={"x": "y"},
            template={
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "t", "junk": 1},
                "spec": {"anything": 1},
            },
            gpu={"bogus": 1},
            note=None,
            port="http",
        )
    )
    spec = obj["spec"]
    assert "unknown" not in spec and "title" not in spec and spec["note"] is None  # nullable keeps null
    assert spec["extra"] == {"free": {"form": True}} and spec["labels"] == {"x": "y"}
    assert spec["template"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "t"},
        "spec": {"anything": 1},
    }
    assert spec["gpu"] == {"count": 0} and spec["maxCount"] == 5 and spec["port"] == "http"


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"gpu": {"count": -1}},
            "spec.gpu.count",
            "Invalid value: -1: spec.gpu.count in body should be greater than or equal to 0",
        ),
        (
            {"maxCount": 11},
            "spec.maxCount",
            "Invalid value: 11: spec.maxCount in body should be less than or equal to 10",
        ),
        ({"size": "huge"}, "spec.size", 'Unsupported value: "huge": supported values: "small", "large"'),
        ({"size": None}, "spec.size", "Required value"),
        (
            {"minCount": "1"},
            "spec.minCount",
            'Invalid value: "string": spec.minCount in body must be of type integer: "string"',
        ),
        ({"name": "ABC"}, "spec.name", "Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"),
        ({"name": "abcdefghij"}, "spec.name", "Too long: may not be more than 8 bytes"),
        (
            {"title": "a"},
            "spec.title",
            'Invalid value: "a": spec.title in body should be at least 2 chars long',
        ),
        ({"tags": []}, "spec.tags", 'Invalid value: "array": spec.tags in body should have at least 1 items'),
        (
            {"until": "tomorrow"},
            "spec.until",
            'Invalid value: "tomorrow": spec.until in body must be of type date-time: "tomorrow"',
        ),
        (
            {"port": 1.5},
            "spec.port",
            'Invalid value: "number": spec.port in body must be of type integer or string: "number"',
        ),
        ({"ports": [{"name": "a"}, {"name": "a"}]}, "spec.ports[1]", 'Duplicate value: {"name":"a"}'),
        (
            {"minCount": 9, "maxCount": 3},
            "spec",
            'Invalid value: "object": minCount must not exceed maxCount',
        ),
    ],
)
def test_validation_errors(
    custom: kubernetes.client.CustomObjectsApi, spec: dict[str, Any], field: str, message: str
) -> None:
    body = widget(**spec)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    with pytest.raises(ApiException) as exc:
        create_widget(custom, body)
    status = error(exc)
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == field
    assert status["details"]["causes"][0]["message"] == message
    assert status["message"] == f'Widget.example.com "w1" is invalid: {field}: {message}'


def test_cel_transition_rules_and_unevaluated_rules(
    api: ApiServer, custom: kubernetes.client.CustomObjectsApi
) -> None:
    create_widget(custom, widget())
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            GROUP, "v1", "default", "widgets", "w1", {"spec": {"size": "large"}}
        )
    assert "size is immutable" in error(exc)["message"]
    assert any("self.tags.all" in rule for rule in api.unevaluated_rules)


def test_project_style_error_message(api: ApiServer) -> None:
    crd = json.loads(
        json.dumps(WIDGET_CRD)
        .replace("widgets", "trainingjobs")
        .replace("Widget", "TrainingJob")
        .replace("widget", "trainingjob")
        .replace(GROUP, "deep-hybrid-datacloud.eu")
    )
    api.load_crds(crd)
    with pytest.raises(
        Exception,
        match=r'^TrainingJob.deep-hybrid-datacloud.eu "x" is invalid: spec.gpu.count: '
        r"Invalid value: -1: spec.gpu.count in body should be greater than or equal to 0$",
    ):
        api.create(
            {
                "apiVersion": "deep-hybrid-datacloud.eu/v1",
                "kind": "TrainingJob",
                "metadata": {"name": "x", "namespace": "default"},
                "spec": {"size": "small", "gpu": {"count": -1}},
            }
        )


# --- 6, 7. selectors and watches ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=a", ["p1", "p2"]),
        ("app==a", ["p1", "p2"]),
        ("app!=a", ["p3", "p4"]),
        ("tier in (web,db)", ["p1", "p3"]),
        ("tier notin (web)", ["p2", "p3", "p4"]),
        ("tier", ["p1", "p3"]),
        ("!tier", ["p2", "p4"]),
        ("app=a,tier", ["p1"]),
    ],
)
def test_label_selectors(
    api: ApiServer, core: kubernetes.client.CoreV1Api, selector: str, expected: list[str]
) -> None:
    for name, labels in [
        ("p1", {"app": "a", "tier": "web"}),
        ("p2", {"app": "a"}),
        ("p3", {"app": "b", "tier": "db"}),
        ("p4", {}),
    ]:
        api.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default", "labels": labels},
            }
        )
    names = [
        i.metadata.name for i in core.list_namespaced_config_map("default", label_selector=selector).items
    ]
    assert names == expected


def test_field_selectors(api: ApiServer, core: kubernetes.client.CoreV1Api) -> None:
    for name, node in [("a", "n1"), ("b", "n2")]:
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            }
        )
    api.patch_status("pods", "default", "b", {"phase": "Running"})
    assert [
        p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1").items
    ] == ["a"]
    assert [
        p.metadata.name
        for p in core.list_namespaced_pod("default", field_selector="status.phase!=Running").items
    ] == ["a"]
    assert [
        p.metadata.name for p in core.list_namespaced_pod("default", field_selector="metadata.name=b").items
    ] == ["b"]
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", field_selector="spec.bogus=1")
    assert error(exc)["code"] == 400


def test_list_pagination(api: ApiServer, core: kubernetes.client.CoreV1Api) -> None:
    for n in range(5):
        api.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{n}", "namespace": "default"}}
        )
    page = core.list_namespaced_config_map("default", limit=2)
    names = [i.metadata.name for i in page.items]
    while page.metadata._continue:
        page = core.list_namespaced_config_map("default", limit=2, _continue=page.metadata._continue)
        names += [i.metadata.name for i in page.items]
    assert names == [f"c{n}" for n in range(5)]


def test_watch_resume_selectors_and_timeout(api: ApiServer, core: kubernetes.client.CoreV1Api) -> None:
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old", "namespace": "default"}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "new", "namespace": "default", "labels": {"w": "1"}},
        }
    )
    api.patch("configmaps", "default", "new", {"metadata": {"labels": {"w": "2"}}})
    api.delete("configmaps", "default", "old")
    watch = kubernetes.watch.Watch()
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in watch.stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=rv,
            timeout_seconds=1,
            allow_watch_bookmarks=True,
        )
    ]
    assert seen == [("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "old")]
    started = time.monotonic()
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in watch.stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=rv,
            label_selector="w=1",
            timeout_seconds=1,
        )
    ]
    assert seen == [("ADDED", "new"), ("DELETED", "new")]  # leaving the selection is a DELETED
    assert 0.9 < time.monotonic() - started < 5
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in watch.stream(core.list_namespaced_config_map, "default", timeout_seconds=1)
    ]
    assert seen == [("ADDED", "new")]


def test_watch_from_a_version_older_than_the_history_is_410_expired() -> None:
    with ApiServer.running(history=3) as small:
        listed = urllib.request.urlopen(f"{small.url}/api/v1/namespaces/default/configmaps", timeout=10)
        rv = json.loads(listed.read())["metadata"]["resourceVersion"]
        for i in range(5):
            small.create({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": f"c{i}", "namespace": "default"}})
        url = f"{small.url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"
        with urllib.request.urlopen(url, timeout=10) as stream:
            lines = [json.loads(line) for line in stream]
        assert [line["type"] for line in lines] == ["ERROR"]
        assert (lines[0]["object"]["code"], lines[0]["object"]["reason"]) == (410, "Expired")
        assert lines[0]["object"]["message"].startswith(f"too old resource version: {rv} (")


def test_helpers_write_through_the_same_logic_and_notify_watchers(
    api: ApiServer, core: kubernetes.client.CoreV1Api
) -> None:
    events: list[tuple[str, str]] = []

    def consume() -> None:
        for e in kubernetes.watch.Watch().stream(
            core.list_namespaced_config_map, "default", timeout_seconds=1
        ):
            events.append((e["type"], e["object"].metadata.resource_version))

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.3)
    created = api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "h", "namespace": "default"}}
    )
    thread.join()
    assert events == [("ADDED", created["metadata"]["resourceVersion"])]
    assert api.list("configmaps", "default")[0]["metadata"]["name"] == "h"


# --- 8. deletion, finalizers, garbage collection ----------------------------------------------


def test_finalizers_hold_deletion(api: ApiServer, core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "f", "finalizers": ["x/y"]}})
    core.delete_namespaced_config_map("f", "default")
    held = api.get("configmaps", "default", "f")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException):
        core.patch_namespaced_config_map("f", "default", {"metadata": {"finalizers": ["x/y", "new/one"]}})
    core.patch_namespaced_config_map("f", "default", {"metadata": {"finalizers": None}})
    assert api.get("configmaps", "default", "f") is None


def _owned(api: ApiServer, kind: str, name: str, owner: dict[str, Any], **extra: Any) -> dict[str, Any]:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    meta = {"name": name, "namespace": "default", "ownerReferences": [ref], **extra}
    return api.create({"apiVersion": "v1", "kind": kind, "metadata": meta})


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_garbage_collection_cascades(
    api: ApiServer, custom: kubernetes.client.CustomObjectsApi, policy: str
) -> None:
    owner = create_widget(custom, widget())
    cm = _owned(api, "ConfigMap", "child", owner)
    _owned(api, "Secret", "grandchild", cm)
    custom.delete_namespaced_custom_object(GROUP, "v1", "default", "widgets", "w1", propagation_policy=policy)
    assert api.get("widgets", "default", "w1") is None
    assert (
        api.get("configmaps", "default", "child") is None
        and api.get("secrets", "default", "grandchild") is None
    )


def test_foreground_waits_for_dependents_and_orphan_keeps_them(
    api: ApiServer, custom: kubernetes.client.CustomObjectsApi
) -> None:
    owner = create_widget(custom, widget())
    _owned(api, "ConfigMap", "slow", owner, finalizers=["keep/me"])
    custom.delete_namespaced_custom_object(
        GROUP, "v1", "default", "widgets", "w1", propagation_policy="Foreground"
    )
    waiting = api.get("widgets", "default", "w1")
    assert waiting is not None and waiting["metadata"]["finalizers"] == ["foregroundDeletion"]
    api.patch("configmaps", "default", "slow", {"metadata": {"finalizers": []}})
    assert api.get("configmaps", "default", "slow") is None and api.get("widgets", "default", "w1") is None

    owner = create_widget(custom, widget("w2"))
    _owned(api, "ConfigMap", "kept", owner)
    custom.delete_namespaced_custom_object(
        GROUP, "v1", "default", "widgets", "w2", propagation_policy="Orphan"
    )
    kept = api.get("configmaps", "default", "kept")
    assert kept is not None and not kept["metadata"].get("ownerReferences")


def test_namespace_deletion_removes_its_objects(api: ApiServer, core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "tmp"}})
    core.create_namespaced_config_map("tmp", {"metadata": {"name": "a"}})
    core.delete_namespace("tmp")
    assert api.get("configmaps", "tmp", "a") is None and api.get("namespaces", None, "tmp") is None


# --- 9. scale subresource, built-ins, CRDs through the API, discovery, RBAC log ---------------


def test_deployment_scale_subresource(apps: kubernetes.client.AppsV1Api) -> None:
    apps.create_namespaced_deployment("default", deployment(replicas=1))
    scale = apps.read_namespaced_deployment_scale("d1", "default")
    assert (scale.kind, scale.api_version, scale.spec.replicas) == ("Scale", "autoscaling/v1", 1)
    assert scale.status.selector == "app=d1"
    apps.patch_namespaced_deployment_scale("d1", "default", {"spec": {"replicas": 0}})
    assert apps.read_namespaced_deployment("d1", "default").spec.replicas == 0
    scale = apps.replace_namespaced_deployment_scale(
        "d1", "default", {"metadata": {"name": "d1"}, "spec": {"replicas": 3}}
    )
    dep = apps.read_namespaced_deployment("d1", "default")
    assert scale.spec.replicas == 3 and dep.spec.replicas == 3 and dep.metadata.generation == 3


@pytest.mark.parametrize(
    ("api_version", "kind", "extra"),
    [
        ("v1", "Service", {"spec": {"ports": [{"port": 80}]}}),
        ("v1", "Endpoints", {}),
        ("v1", "ServiceAccount", {}),
        ("v1", "Event", {"involvedObject": {"name": "x"}}),
        ("events.k8s.io/v1", "Event", {"eventTime": None}),
        ("batch/v1", "Job", {"spec": {"template": {}}}),
        ("apps/v1", "ReplicaSet", {"spec": {}}),
        ("coordination.k8s.io/v1", "Lease", {"spec": {"holderIdentity": "me"}}),
        ("discovery.k8s.io/v1", "EndpointSlice", {"addressType": "IPv4", "endpoints": []}),
    ],
)
def test_builtin_resources_are_served(
    client: kubernetes.client.ApiClient, api_version: str, kind: str, extra: dict[str, Any]
) -> None:
    dyn = kubernetes.dynamic.DynamicClient(client)
    res = dyn.resources.get(api_version=api_version, kind=kind)
    res.create(
        body={"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, **extra},
        namespace="default",
    )
    assert res.get(name="x", namespace="default").metadata.name == "x"
    nodes = dyn.resources.get(api_version="v1", kind="Node")
    nodes.create(
        body={
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1"},
            "status": {"capacity": {"cpu": "2"}},
        }
    )
    assert nodes.get(name="n1").status.capacity.cpu == "2"


def test_crd_created_through_the_api_is_served(api: ApiServer, client: kubernetes.client.ApiClient) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD).replace("widget", "gadget").replace("Widget", "Gadget"))
    kubernetes.client.ApiextensionsV1Api(client).create_custom_resource_definition(crd)
    custom = kubernetes.client.CustomObjectsApi(client)
    custom.create_namespaced_custom_object(
        GROUP,
        "v1",
        "default",
        "gadgets",
        {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": "small"}},
    )
    resources = client.call_api(*client.param_serialize("GET", f"/apis/{GROUP}/v1"))
    resources.read()
    names = {r["name"] for r in json.loads(resources.data)["resources"]}
    assert {"widgets", "widgets/status", "gadgets", "gadgets/status"} <= names
    kubernetes.client.ApiextensionsV1Api(client).delete_custom_resource_definition("gadgets.example.com")
    with pytest.raises(ApiException):
        custom.list_namespaced_custom_object(GROUP, "v1", "default", "gadgets")


def test_discovery_and_requests_log(
    api: ApiServer, client: kubernetes.client.ApiClient, core: kubernetes.client.CoreV1Api
) -> None:
    assert kubernetes.client.VersionApi(client).get_code().major == "1"
    groups = {
        g.name: g.preferred_version.version
        for g in kubernetes.client.ApisApi(client).get_api_versions().groups
    }
    assert groups[GROUP] == "v1" and groups["apps"] == "v1" and groups["autoscaling"] == "v2"
    api.requests_log.clear()
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.list_config_map_for_all_namespaces()
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    core.delete_collection_namespaced_config_map("default")
    kubernetes.client.AppsV1Api(client).create_namespaced_deployment("default", deployment())
    kubernetes.client.AppsV1Api(client).read_namespaced_deployment_scale("d1", "default")
    assert api.requests_log == [
        ApiCall("create", "", "configmaps", "", "default"),
        ApiCall("list", "", "configmaps", "", ""),
        ApiCall("patch", "", "configmaps", "", "default"),
        ApiCall("deletecollection", "", "configmaps", "", "default"),
        ApiCall("create", "apps", "deployments", "", "default"),
        ApiCall("get", "apps", "deployments", "scale", "default"),
    ]


def test_start_and_stop_leave_no_threads_or_ports() -> None:
    before = threading.active_count()
    with ApiServer.running() as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    assert threading.active_count() == before
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


# --- kopf in-process ---------------------------------------------------------------------------


async def test_kopf_operator_round_trip(api: ApiServer) -> None:
    registry = kopf.OperatorRegistry()
    calls: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api.url)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.watching.server_timeout = 10
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="example.com")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="example.com")
        settings.posting.enabled = False

    @kopf.on.create(GROUP, "v1", "widgets", registry=registry)
    def created(name: str, patch: kopf.Patch, **_: Any) -> None:
        calls.append(name)
        patch.status["phase"] = "Handled"

    stop = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(registry=registry, standalone=True, clusterwide=True, stop_flag=stop)
    )
    try:
        await asyncio.to_thread(api.create, widget())
        for _ in range(100):
            obj = await asyncio.to_thread(api.get, "widgets", "default", "w1")
            if obj and obj.get("status", {}).get("phase") == "Handled":
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a second (wrong) invocation would show up by now
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert calls == ["w1"]
    assert obj is not None and obj["status"]["phase"] == "Handled"
