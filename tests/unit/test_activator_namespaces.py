"""With the chart's watchNamespaces the activator has Roles only in those namespaces: it lists
InferenceServices and their Deployments there, never across the cluster."""

from __future__ import annotations

from typing import Any

from deep_platform.activator.cluster import Cluster
from tests.harness.operator_fixtures import kube_for


def test_watched_namespaces_only(apiserver: Any) -> None:
    test = kube_for(apiserver.url)
    for ns in ("team-a", "team-b"):
        apiserver.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        test.create(
            {
                "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
                "kind": "InferenceService",
                "metadata": {"name": f"model-{ns}", "namespace": ns},
                "spec": {"image": "registry/model:1"},
            }
        )
        test.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": f"model-{ns}",
                    "namespace": ns,
                    "labels": {"deep-hybrid-datacloud.eu/kind": "inferenceservice"},
                },
                "spec": {
                    "selector": {"matchLabels": {"app": "m"}},
                    "template": {
                        "metadata": {"labels": {"app": "m"}},
                        "spec": {"containers": [{"name": "c", "image": "registry/model:1"}]},
                    },
                },
            }
        )
    activator = kube_for(apiserver.url, component="activator")
    watched = Cluster(activator, "deep-platform", "a-1", namespaces=["team-a"])
    assert [s["metadata"]["name"] for s in watched.inference_services()] == ["model-team-a"]
    assert [d["metadata"]["name"] for d in watched.deployments()] == ["model-team-a"]
    everywhere = Cluster(activator, "deep-platform", "a-1")
    assert sorted(s["metadata"]["name"] for s in everywhere.inference_services()) == [
        "model-team-a",
        "model-team-b",
    ]
    assert len(everywhere.deployments()) == 2
    test.close()
    activator.close()
