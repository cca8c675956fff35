"""A TrainingJob's progress on its dashboard page, in headless Chromium: the charts the
platform draws from the history it keeps (written here by the operator's own writer)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from deep_platform import kube as k
from deep_platform.api import TrainingJob
from deep_platform.config import OperatorConfig
from deep_platform.progress.receiver import Flusher
from deep_platform.progress.report import Report
from deep_platform.progress.tracker import Tracker
from deep_platform.web import create_app
from tests.browser.chromium import Chromium
from tests.harness.operator_fixtures import kube_for

pytestmark = pytest.mark.browser
TJ = k.kind_of(TrainingJob)
EPOCHS = 12

CHARTS = """[...document.querySelectorAll('#progress-charts svg')].map(svg => {
  const box = svg.getBoundingClientRect();
  const texts = [...svg.querySelectorAll('text')].map(t => {
    const b = t.getBoundingClientRect();
    return {cls: t.getAttribute('class'), text: t.textContent, w: b.width, h: b.height,
            size: parseFloat(getComputedStyle(t).fontSize),
            inside: b.left >= box.left - 1 && b.right <= box.right + 1 && b.top >= box.top - 1
                    && b.bottom <= box.bottom + 1};
  });
  const lines = [...svg.querySelectorAll('polyline')];
  return {metric: svg.dataset.metric, w: box.width, h: box.height, lines: lines.length,
          points: lines.map(l => l.points.numberOfItems), texts};
})"""


async def test_the_detail_page_plots_each_metric_against_epochs(
    apiserver: Any, operator_config: OperatorConfig
) -> None:
    kube = kube_for(apiserver.url)
    body = kube.create(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "long-run", "namespace": "default"},
            "spec": {"image": "me/model:1"},
        }
    )
    tracker = Tracker(clock=lambda: 1_780_000_000.0)
    for epoch in range(1, EPOCHS + 1):  # what a 12-epoch training reported, one report per epoch
        metrics = {"loss": 2.0 / epoch, **({"val_accuracy": 0.5 + epoch / 40} if epoch % 2 == 0 else {})}
        tracker.record(
            ("default", "long-run"),
            body["metadata"]["uid"],
            Report(epoch=epoch, total_epochs=15, metrics=metrics),
            lambda: None,
        )
    Flusher(kube, operator_config.platform_namespace, tracker).flush(final=True)  # status and history
    server = TestServer(create_app(kube, operator_config), host="127.0.0.1")
    await server.start_server()
    try:
        async with Chromium() as browser:
            await browser.goto(str(server.make_url("/dashboard/trainingjobs/default/long-run")))
            summary = await browser.evaluate("document.getElementById('progress-summary').textContent")
            assert summary == "12/15 (80 %)"
            charts = await browser.evaluate(CHARTS)
            assert [(c["metric"], c["lines"], c["points"]) for c in charts] == [
                ("loss", 1, [EPOCHS]),
                ("val_accuracy", 1, [EPOCHS // 2]),
            ]
            for chart in charts:
                assert chart["w"] >= 400 and chart["h"] >= 200, chart
                labels = {t["cls"]: t for t in chart["texts"]}
                assert labels["chart-title"]["text"] == chart["metric"]
                first = "1" if chart["metric"] == "loss" else "2"  # val_accuracy: every other epoch
                assert (labels["x-label"]["text"], labels["x-min"]["text"], labels["x-max"]["text"]) == (
                    "epoch",
                    first,
                    "12",
                )
                for text in chart["texts"]:  # readable: drawn, not tiny, inside the chart
                    assert text["w"] > 0 and text["h"] > 0 and text["size"] >= 12 and text["inside"], text
            loss = next(c for c in charts if c["metric"] == "loss")
            assert {t["cls"]: t["text"] for t in loss["texts"]}["y-max"] == "2"
            assert browser.console_errors == []
    finally:
        await server.close()
        kube.close()
