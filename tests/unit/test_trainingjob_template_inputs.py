"""What a running Job may still take: the user's request (template inputs) against a release's
rendering of it."""

from __future__ import annotations

import pytest

from deep_platform.builders.trainingjob import (
    SPEC_HASH_ANNOTATION,
    TEMPLATE_INPUTS_ANNOTATION,
    build_job,
    mutable_part,
    same_request,
    template_inputs,
)
from deep_platform.config import site_settings
from tests.unit.test_trainingjob_builder import module, trainingjob


def test_a_release_rendering_differently_keeps_the_inputs_but_not_the_job_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tj, mod = trainingjob(), module()
    old = build_job(tj, mod)
    monkeypatch.setenv("DEEP_PROGRESS_URL", "http://elsewhere.svc:8090")
    site_settings.cache_clear()
    try:
        new = build_job(tj, mod)
    finally:
        monkeypatch.delenv("DEEP_PROGRESS_URL")
        site_settings.cache_clear()
    assert new["spec"]["template"] != old["spec"]["template"]
    hashes = (job["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for job in (old, new))
    assert len(set(hashes)) == 2
    assert same_request(old, new)


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({"suspend": True}, True),
        ({"activeDeadlineSeconds": 60}, True),
        ({"ttlSecondsAfterFinished": 600}, True),
        ({"image": "ai4oshub/plankton:2.0"}, False),
        ({"hyperparameters": {"epochs": 3}}, False),
        ({"env": [{"name": "SEED", "value": "1"}]}, False),
        ({"backoffLimit": 5}, False),
    ],
)
def test_what_the_user_changes_decides_whether_the_pod_is_asked_to_change(
    change: dict[str, object], same: bool
) -> None:
    mod = module()
    before, after = build_job(trainingjob(), mod), build_job(trainingjob(**change), mod)
    assert same_request(before, after) is same


def test_a_new_module_image_is_a_new_request() -> None:
    tj = trainingjob()
    assert template_inputs(tj, module()) != template_inputs(tj, module(image="ai4oshub/plankton:2.0"))


def test_a_job_of_an_older_release_without_inputs_counts_as_made_for_the_request() -> None:
    job = build_job(trainingjob(), module())
    del job["metadata"]["annotations"][TEMPLATE_INPUTS_ANNOTATION]
    assert same_request(job, build_job(trainingjob(image="ai4oshub/other:1.0"), module()))


def test_the_mutable_part_carries_annotations_and_removes_what_the_spec_dropped() -> None:
    job = build_job(trainingjob(suspend=True), module())
    patch = mutable_part(job)
    assert patch["spec"] == {"suspend": True, "activeDeadlineSeconds": None, "ttlSecondsAfterFinished": None}
    assert patch["metadata"]["annotations"] == job["metadata"]["annotations"]
    assert "template" not in patch["spec"]
