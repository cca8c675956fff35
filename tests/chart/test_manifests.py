"""manifests/ is the chart rendered with default values; it must never drift from the chart."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.chart import chart, tools

MANIFESTS = chart.ROOT / "manifests"


def test_manifests_match_the_chart(tmp_path: Path) -> None:
    tools.helm(4)
    subprocess.run(["bash", str(chart.ROOT / "scripts" / "render-manifests.sh"), "--out", str(tmp_path)],
                   check=True, capture_output=True, text=True)
    expected = sorted(p.name for p in tmp_path.iterdir())
    assert sorted(p.name for p in MANIFESTS.iterdir()) == expected
    for name in expected:
        assert (MANIFESTS / name).read_text() == (tmp_path / name).read_text(), (
            f"manifests/{name} drifted from the chart: run scripts/render-manifests.sh and commit manifests/")


def test_kustomize_builds_the_whole_platform() -> None:
    """`kubectl apply -k manifests/` sees the namespace, the CRDs and every component."""
    result = subprocess.run([str(tools.kubectl(4)), "kustomize", str(MANIFESTS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    objs = chart.objects(result.stdout)
    kinds = [o["kind"] for o in objs]
    assert kinds.count("CustomResourceDefinition") == 4
    assert "Namespace" in kinds
    names = {o["metadata"]["name"] for o in objs}
    assert {"deep-platform-operator", "deep-platform-activator", "deep-platform-web"} <= names
    # the same objects as the chart renders with default values (plus the namespace)
    rendered = chart.objects(chart.render(4, None, include_crds=True))
    assert sorted(map(chart.canonical, rendered)) == sorted(
        chart.canonical(o) for o in objs if o["kind"] != "Namespace")
