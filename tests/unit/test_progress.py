"""Training progress, the pure parts: reports, printed lines, the tracker's status and history,
the `Progressing` condition, the pod parts, the token checks, the chart, the callbacks."""

from __future__ import annotations

import datetime as dt
import importlib
import subprocess
import sys
import types
from typing import Any

import kubernetes_validate
import pytest

from deep_platform.api import TrainingJob
from deep_platform.api.trainingjob import ProgressSpec, TrainingJobProgress
from deep_platform.builders.trainingjob import build_job
from deep_platform.builders.trainingjob_progress import (
    COLLECTOR,
    TEE_SCRIPT,
    next_stall_check,
    progressing,
)
from deep_platform.progress import AUDIENCE, TOKEN_FILE
from deep_platform.progress.auth import Refused, identity_from_review, owner_trainingjob
from deep_platform.progress.chart import charts
from deep_platform.progress.parse import LineParser
from deep_platform.progress.receiver import RateLimiter
from deep_platform.progress.report import BadReport, Report, parse_report
from deep_platform.progress.tracker import HISTORY_POINTS, Run, Tracker, history_configmap_name
from tests.chart.podsecurity import restricted_violations

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def trainingjob(**spec: Any) -> TrainingJob:
    return TrainingJob.from_body(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "retrain", "namespace": "team-a", "uid": "uid-1", "generation": 1},
            "spec": {"image": "me/model:1", **spec},
        }
    )


# --- the pod ------------------------------------------------------------------------------------


def test_every_training_pod_gets_the_endpoint_and_an_audience_bound_token() -> None:
    job = build_job(trainingjob(), None)
    spec = job["spec"]["template"]["spec"]
    train = spec["containers"][0]
    env = {e["name"]: e["value"] for e in train["env"]}
    assert env["DEEP_PROGRESS_URL"].endswith("/v1/progress/team-a/retrain")
    assert env["DEEP_PROGRESS_TOKEN_FILE"] == TOKEN_FILE
    token = next(v for v in spec["volumes"] if v["name"] == "progress-token")
    source = token["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == AUDIENCE and source["expirationSeconds"] == 600
    assert spec["automountServiceAccountToken"] is False  # no token for the API server
    assert train["command"] == ["deepaas-cli"]  # no collector unless asked
    assert "initContainers" not in spec
    assert restricted_violations(spec) == []
    kubernetes_validate.validate(job, "1.34", strict=True)


def test_the_stdout_collector_wraps_the_command_and_adds_a_native_sidecar() -> None:
    tj = trainingjob(
        command=["python", "train.py"],
        args=["--fast"],
        progress={"collector": {"stdout": True, "pattern": r"(?P<name>\w+): (?P<value>[0-9.]+)"}},
    )
    job = build_job(tj, None)
    spec = job["spec"]["template"]["spec"]
    train = spec["containers"][0]
    assert train["command"] == ["sh"] and train["args"][-3:] == ["python", "train.py", "--fast"]
    sidecar = next(c for c in spec["initContainers"] if c["name"] == COLLECTOR)
    assert sidecar["restartPolicy"] == "Always"
    assert (
        sidecar["args"][:2] == ["report", "--follow"]
        and sidecar["args"][-1] == r"(?P<name>\w+): (?P<value>[0-9.]+)"
    )
    assert restricted_violations(spec) == []
    kubernetes_validate.validate(job, "1.34", strict=True)


def test_the_wrapper_keeps_exit_code_and_output(tmp_path: Any) -> None:
    out = tmp_path / "train.log"
    done = subprocess.run(
        ["sh", "-c", TEE_SCRIPT, "tee", str(out), "sh", "-c", "echo 'Epoch 1/2'; echo oops >&2; exit 3"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 3
    assert done.stdout == "Epoch 1/2\noops\n"  # what kubectl logs shows
    assert out.read_text() == "Epoch 1/2\noops\n"


def test_a_bad_collector_pattern_names_the_field() -> None:
    with pytest.raises(ValueError, match="named groups"):
        trainingjob(progress={"collector": {"stdout": True, "pattern": r"(\w+)=(\d+)"}})
    with pytest.raises(ValueError, match=r"spec\.progress\.collector\.pattern"):
        trainingjob(progress={"collector": {"pattern": "("}})


# --- reports and lines --------------------------------------------------------------------------


def test_report_bodies_are_checked_field_by_field() -> None:
    good = parse_report({"epoch": 3, "totalEpochs": 15, "metrics": {"loss": 0.3, "val/acc": 1}})
    assert (good.epoch, good.total_epochs, good.metrics) == (3, 15, {"loss": 0.3, "val/acc": 1.0})
    for body, words in [
        ([], "JSON object"),
        ({"epoch": -1}, "epoch must be"),
        ({"epoch": True}, "epoch must be"),
        ({"metrics": {"loss": float("nan")}}, "metrics.loss"),
        ({"metrics": {"a b": 1}}, "no metric name"),
        ({"epoch": 16, "totalEpochs": 15}, "past the total"),
        ({}, "says nothing"),
        ({"eta": 1}, "unknown fields"),
        ({"metrics": {f"m{i}": 1 for i in range(40)}}, "at most 32"),
    ]:
        with pytest.raises(BadReport, match=words):
            parse_report(body)


def test_keras_lines_and_katib_pairs() -> None:
    parser = LineParser()
    for line in [
        "Epoch 3/15",
        "100/469 [===>....] - ETA: 3s - loss: 0.5",
        "469/469 [==============================] - 3s 5ms/step - loss: 0.2 - accuracy: 0.94",
    ]:
        parser.feed(line)
    found = parser.report()
    assert found is not None
    assert (found.epoch, found.total_epochs, found.metrics) == (3, 15, {"loss": 0.2, "accuracy": 0.94})
    assert parser.report() is None
    parser.feed("epoch=4 loss=0.125 lr=1e-3 note=abc")
    found = parser.report()
    assert found is not None and found.epoch == 4 and found.metrics == {"loss": 0.125, "lr": 0.001}
    for lines, epoch in [
        (["Epoch 2/3", "469/469 - 3s - 6ms/step - loss: 0.3 - accuracy: 0.9"], 2),  # verbose=2
        (["Epoch 2/3", "469/469 ━━━━━━━━━━━━━━━━━━━━ 3s 6ms/step - accuracy: 0.9 - loss: 0.3"], 2),  # Keras 3
        (
            ["Epoch 2/3", "100/469 ━━━━━━━━━━━━━━━━━━━━ 1s 4ms/step - accuracy: 0.9 - loss: 0.3"],
            1,
        ),  # under way
    ]:
        for line in lines:
            parser.feed(line)
        found = parser.report()
        assert found is not None and (found.epoch, found.metrics) == (
            epoch,
            {"loss": 0.3, "accuracy": 0.9},
        ), lines
    custom = LineParser(r"(?P<name>\w+) is (?P<value>[0-9.]+)")
    custom.feed("loss is 0.75, epoch is 2")
    found = custom.report()
    assert found is not None and found.epoch == 2 and found.metrics == {"loss": 0.75}


# --- the tracker ----------------------------------------------------------------------------------


def test_status_summary_percent_and_estimated_end() -> None:
    run = Run(uid="u")
    run.add(Report(epoch=1, total_epochs=10, metrics={"loss": 1.0}), 1000.0)
    run.add(Report(epoch=3, total_epochs=10, metrics={"loss": 0.5}), 1020.0)
    status = run.status(1020.0)
    assert status["summary"] == "3/10" and status["percent"] == 30 and status["reports"] == 2
    assert status["metrics"] == {"loss": 0.5}
    # 20 % in 20 s: the remaining 70 % take 70 s
    assert status["estimatedCompletionTime"] == "1970-01-01T00:18:10Z"
    assert TrainingJobProgress.model_validate(status).percent == 30  # the status model reads it


def test_history_is_bounded_one_point_per_epoch_and_restarts_cleanly() -> None:
    run = Run(uid="u")
    run.add(Report(epoch=1, metrics={"loss": 1.0}), 0)
    run.add(Report(metrics={"acc": 0.5}), 1)  # same epoch: merged into its point
    assert run.points == [{"x": 1, "t": 1, "m": {"loss": 1.0, "acc": 0.5}}]
    for epoch in range(2, 2 * HISTORY_POINTS):
        run.add(Report(epoch=epoch, metrics={"loss": 1 / epoch}), epoch)
    assert len(run.points) <= HISTORY_POINTS and run.points[-1]["x"] == 2 * HISTORY_POINTS - 1
    run.add(Report(epoch=1, metrics={"loss": 1.0}), 10_000)  # the training started over
    assert [p["x"] for p in run.points] == [1]


def test_tracker_series_and_forgetting() -> None:
    tracker = Tracker(clock=lambda: 50.0)
    tracker.record(("ns", "a"), "u1", Report(epoch=2, total_epochs=4, metrics={"loss": 0.5}), lambda: None)
    families = {f.name: f for f in tracker.collect()}
    assert [(s.labels, s.value) for s in families["deep_training_progress_ratio"].samples] == [
        ({"namespace": "ns", "name": "a"}, 0.5)
    ]
    assert [(s.labels["metric"], s.value) for s in families["deep_training_metric"].samples] == [
        ("loss", 0.5)
    ]
    # a TrainingJob made again under the name starts afresh (its uid differs)
    run = tracker.record(
        ("ns", "a"), "u2", Report(epoch=1), lambda: {"uid": "u1", "points": [{"x": 9, "m": {}}]}
    )
    assert run.points == [{"x": 1, "t": 50, "m": {}}]
    tracker.forget(("ns", "a"))
    assert all(not f.samples for f in tracker.collect()) and tracker.gone == [("ns", "a")]


def test_history_configmap_names_fit() -> None:
    assert history_configmap_name("ns", "a") == "progress-ns-a"
    long = history_configmap_name("n" * 63, "x" * 253)
    assert len(long) <= 253 and long != history_configmap_name("n" * 63, "x" * 252 + "y")


# --- the Progressing condition -------------------------------------------------------------------


def test_progressing_turns_false_when_reports_stop() -> None:
    spec = ProgressSpec(stall_after_seconds=60)
    fresh = TrainingJobProgress(epoch=1, last_report_time=T0)
    later = T0 + dt.timedelta(seconds=30)
    assert progressing(None, None, "Running", T0, later) is None  # not followed
    assert progressing(spec, fresh, "Running", T0, later)[:2] == (True, "Reporting")  # type: ignore[index]
    assert next_stall_check(spec, fresh, "Running", T0, later) == pytest.approx(31.0)
    stalled = progressing(spec, fresh, "Running", T0, T0 + dt.timedelta(seconds=61))
    assert stalled is not None and stalled[:2] == (False, "Stalled") and "2026-01-01T00:00:00Z" in stalled[2]
    assert progressing(spec, None, "Running", T0, T0 + dt.timedelta(seconds=61))[:2] == (False, "NoReport")  # type: ignore[index]
    assert progressing(spec, None, "Running", T0, later)[:2] == (True, "AwaitingReport")  # type: ignore[index]
    assert progressing(None, fresh, "Succeeded", T0, later)[:2] == (False, "Succeeded")  # type: ignore[index]
    assert next_stall_check(None, fresh, "Succeeded", T0, later) is None


# --- who may report --------------------------------------------------------------------------------


def review(**status: Any) -> dict[str, Any]:
    return {"status": status}


def test_token_review_answers() -> None:
    extra = {"authentication.kubernetes.io/pod-name": ["p"], "authentication.kubernetes.io/pod-uid": ["pu"]}
    user = {"username": "system:serviceaccount:team-a:default", "extra": extra}
    who = identity_from_review(review(authenticated=True, audiences=[AUDIENCE], user=user))
    assert (who.namespace, who.service_account, who.pod_name, who.pod_uid) == ("team-a", "default", "p", "pu")
    for answer, reason in [
        (review(authenticated=False, error="expired"), "unauthenticated"),
        (
            review(authenticated=True, audiences=["https://kubernetes.default.svc"], user=user),
            "wrong_audience",
        ),
        (review(authenticated=True, audiences=[AUDIENCE], user={"username": "alice"}), "not_a_pod"),
        (
            review(
                authenticated=True,
                audiences=[AUDIENCE],
                user={"username": "system:serviceaccount:team-a:default"},
            ),
            "not_a_pod",
        ),
    ]:
        with pytest.raises(Refused) as refused:
            identity_from_review(answer)
        assert refused.value.reason == reason


def test_the_pod_must_belong_to_the_trainingjobs_job() -> None:
    job = {
        "metadata": {
            "name": "retrain",
            "uid": "j1",
            "ownerReferences": [{"kind": "TrainingJob", "name": "retrain", "uid": "t1"}],
        }
    }
    pod = {
        "metadata": {
            "labels": {"deep-hybrid-datacloud.eu/kind": "trainingjob"},
            "ownerReferences": [{"kind": "Job", "name": "retrain", "uid": "j1"}],
        }
    }
    assert owner_trainingjob(pod, job) == ("retrain", "t1")
    stranger = {
        "metadata": {**pod["metadata"], "ownerReferences": [{"kind": "Job", "name": "retrain", "uid": "j0"}]}
    }
    assert owner_trainingjob(stranger, job) is None
    unlabelled = {"metadata": {**pod["metadata"], "labels": {}}}
    assert owner_trainingjob(unlabelled, job) is None
    plain_job = {"metadata": {"name": "retrain", "uid": "j1"}}
    assert owner_trainingjob(pod, plain_job) is None


def test_rate_limiter_allows_bursts_then_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.allow("k", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("k", 0.5) and not limiter.allow("k", 0.5)
    assert limiter.allow("other", 0.5)


# --- the chart ------------------------------------------------------------------------------------


def test_one_chart_per_metric_one_point_per_report() -> None:
    history = {
        "points": [{"x": e, "m": {"loss": 1 / e, **({"acc": e / 10} if e > 2 else {})}} for e in range(1, 6)]
    }
    found = charts(history)
    assert [(c.metric, len(c.points)) for c in found] == [("loss", 5), ("acc", 3)]
    svg = found[0].svg
    assert svg.count("<polyline") == 1 and 'data-metric="loss"' in svg and ">epoch<" in svg
    assert charts({"points": [{"x": 1, "m": {"<b>": 1}}]})[0].svg.count("<b>") == 0  # escaped


# --- the callbacks, with the smallest stand-in of each library's base class ----------------------


def test_keras_and_lightning_callbacks_report_each_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    keras = types.ModuleType("keras")
    keras.callbacks = types.SimpleNamespace(Callback=type("Callback", (), {}))  # type: ignore[attr-defined]
    lightning = types.ModuleType("lightning.pytorch")
    lightning.Callback = type("Callback", (), {})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keras", keras)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", lightning)
    from deep_platform.progress import callbacks

    module = importlib.reload(callbacks)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(module, "report", lambda **kw: sent.append(kw) or True)
    keras_cb = module.KerasProgress()
    keras_cb.params = {"epochs": 15}
    keras_cb.on_epoch_end(2, {"loss": 0.3, "name": "x"})

    class Scalar:
        def item(self) -> float:
            return 0.25

    trainer = types.SimpleNamespace(
        max_epochs=5, current_epoch=1, global_step=40, callback_metrics={"val_loss": Scalar()}
    )
    module.LightningProgress().on_train_epoch_end(trainer, None)
    assert sent == [
        {"epoch": 3, "total_epochs": 15, "metrics": {"loss": 0.3}},
        {"epoch": 2, "total_epochs": 5, "step": 40, "metrics": {"val_loss": 0.25}},
    ]
    monkeypatch.undo()
    importlib.reload(callbacks)


# --- the controller skips the endpoint's echoes that cannot change Progressing -------------------


def test_the_controller_skips_only_echoes_that_change_nothing_of_its_own() -> None:
    from deep_platform.controllers.trainingjob import _is_echo
    from deep_platform.progress.tracker import TRACKER

    progress = {"epoch": 3, "totalEpochs": 15, "summary": "3/15", "metrics": {"loss": 0.3}}

    def body(
        phase: str, reason: str | None, written: dict[str, Any] = progress, generation: int = 1
    ) -> dict[str, Any]:
        conditions = [{"type": "Progressing", "status": "True", "reason": reason}] if reason else []
        return {
            "metadata": {
                "namespace": "ns",
                "name": "echo",
                "uid": "u1",
                "generation": generation,
                "resourceVersion": "99",
            },
            "status": {
                "observedGeneration": 1,
                "phase": phase,
                "progress": written,
                "conditions": conditions,
            },
        }

    TRACKER.written[("ns", "echo")] = ("u1", dict(progress))
    try:
        assert _is_echo(body("Running", "Reporting"))
        assert _is_echo(body("Succeeded", "Succeeded"))
        assert not _is_echo(body("Running", None))  # the first report: the condition appears
        assert not _is_echo(body("Running", "Stalled"))  # reports came back
        assert not _is_echo(body("Running", "Reporting", {**progress, "epoch": 4}))  # not what it wrote
        assert not _is_echo(body("Running", "Reporting", generation=2))  # a spec change rides along
    finally:
        TRACKER.written.pop(("ns", "echo"), None)


def test_a_running_training_is_woken_when_its_reports_could_have_stopped() -> None:
    import threading

    from deep_platform.api.trainingjob import TrainingJobStatus
    from deep_platform.conditions import get_condition, now
    from deep_platform.controllers.trainingjob_progress import follow_progress, stall_check

    tj = trainingjob(progress={"stallAfterSeconds": 30})
    status = TrainingJobStatus(
        phase="Running",
        start_time=now() - dt.timedelta(minutes=5),
        progress=TrainingJobProgress(epoch=2, last_report_time=now() - dt.timedelta(seconds=29)),
    )
    woken = threading.Event()
    try:
        follow_progress(tj, status, ("team-a", "retrain"), 1, woken.set)
        condition = get_condition(status, "Progressing")
        assert condition is not None and (condition.status.value, condition.reason) == ("True", "Reporting")
        assert woken.wait(5), "no wake-up when the stall time ran out"  # due about 2 s after the call
    finally:
        stall_check.cancel_all()
    status.progress = None  # a training that never reported and sets no spec.progress: no condition
    follow_progress(trainingjob(), status, ("team-a", "retrain"), 1, woken.set)
    assert get_condition(status, "Progressing") is None
