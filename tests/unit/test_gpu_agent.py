"""The GPU agent against a fake NVML layer: A100, H100, MIG, a lost GPU, no driver."""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import threading
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deep_platform import kube as k
from deep_platform.gpu.agent import ConfigMapPublisher, GpuAgent, pod_uid_of, registry_for
from deep_platform.gpu.inventory import LABEL, NodeInventory, from_configmap
from deep_platform.gpu.nvml import ERROR_DRIVER_NOT_LOADED, ERROR_LIBRARY_NOT_FOUND, RealNvml
from tests.unit.gpu_fakes import MIB, FakeNvml, a100, h100, mig_a100

POD_UID = "3f1c2b9e-7a4d-4e2f-9b1a-0c5d6e7f8a9b"
CLOCK = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def agent_for(nvml: FakeNvml, **kw: object) -> GpuAgent:
    return GpuAgent(nvml, "gpu-node-1", clock=lambda: CLOCK, **kw)  # type: ignore[arg-type]


def test_fake_layer_has_the_real_layers_methods() -> None:
    real = {n: inspect.signature(f) for n, f in vars(RealNvml).items() if not n.startswith("_")}
    fake = {n: inspect.signature(f) for n, f in vars(FakeNvml).items() if not n.startswith("_")}
    for name, signature in real.items():
        assert name in fake, f"FakeNvml lacks {name}"
        assert list(signature.parameters) == list(fake[name].parameters), name


def test_reads_a100_and_h100_node() -> None:
    nvml = FakeNvml([a100(0, used_mib=30512, util=97, temp=64), h100(1, util=3, temp=31)])
    inventory = agent_for(nvml).step()
    assert inventory.error is None
    assert inventory.driver_version == "550.54.15"
    first, second = inventory.gpus
    assert (first.product, first.memory_total_mib, first.memory_used_mib) == (
        "NVIDIA-A100-SXM4-80GB", 81920, 30512
    )
    assert (first.utilization_percent, first.temperature_celsius) == (97, 64)
    assert second.product == "NVIDIA-H100-80GB-HBM3"
    assert second.memory_total_mib == 81559
    assert inventory.summary() == (
        "gpu-node-1: 1x NVIDIA-A100-SXM4-80GB (81920 MiB), 1x NVIDIA-H100-80GB-HBM3 (81559 MiB)"
    )


def test_mig_instances_and_their_processes_are_read(tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text(
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID.replace('-', '_')}"
        ".slice/cri-containerd-0a1b2c.scope\n"
    )
    nvml = FakeNvml([mig_a100(0)])
    agent = agent_for(nvml, proc_root=tmp_path, pods=lambda: {POD_UID: ("alice", "train-mnist-abcde")})
    gpu = agent.step().gpus[0]
    assert gpu.mig_enabled
    assert gpu.utilization_percent is None  # NVML: not supported in MIG mode
    assert [m.profile for m in gpu.mig_instances] == ["3g.40gb", "2g.20gb", "2g.20gb"]
    assert [m.memory_total_mib for m in gpu.mig_instances] == [40192, 19968, 19968]
    [proc] = gpu.processes
    assert (proc.pid, proc.used_memory_mib) == (4242, 9000)
    assert (proc.namespace, proc.pod) == ("alice", "train-mnist-abcde")
    assert "MIG 2g.20gb,3g.40gb" in agent.latest.summary()  # type: ignore[union-attr]


def test_pod_uid_from_cgroup_v1_path(tmp_path: Path) -> None:
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "cgroup").write_text(f"12:memory:/kubepods/burstable/pod{POD_UID}/0a1b2c3d\n")
    assert pod_uid_of(77, tmp_path) == POD_UID
    assert pod_uid_of(78, tmp_path) is None  # process gone between NVML and /proc


def test_gpu_fallen_off_the_bus_is_reported_once_and_others_still_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = FakeNvml([a100(0, util=50), a100(1, lost=True), a100(2, util=70)])
    agent = agent_for(nvml)
    with caplog.at_level(logging.INFO, logger="deep_platform.gpu.agent"):
        for _ in range(3):
            inventory = agent.step()
    lost = inventory.gpus[1]
    assert lost.lost and "fallen off the bus" in (lost.error or "")
    assert [g.utilization_percent for g in inventory.gpus] == [50, None, 70]
    assert sum("fallen off the bus" in r.message for r in caplog.records) == 1
    assert inventory.summary() == "gpu-node-1: 2x NVIDIA-A100-SXM4-80GB (81920 MiB)"
    metrics = generate_latest(registry_for(agent)).decode()
    assert 'deep_gpu_lost{gpu="1",node="gpu-node-1",product="",uuid=""} 1.0' in metrics
    nvml.gpus[1].lost = False
    with caplog.at_level(logging.INFO, logger="deep_platform.gpu.agent"):
        assert not agent.step().gpus[1].lost
    assert any("answers again" in r.message for r in caplog.records)


@pytest.mark.parametrize("code", [ERROR_LIBRARY_NOT_FOUND, ERROR_DRIVER_NOT_LOADED])
def test_no_driver_is_said_once_then_the_agent_idles(code: int, caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml([], init_error=code)
    published: list[NodeInventory] = []
    agent = agent_for(nvml, publish=published.append)
    with caplog.at_level(logging.INFO, logger="deep_platform.gpu.agent"):
        for _ in range(5):
            inventory = agent.step()
    assert "no NVIDIA driver" in (inventory.error or "")
    assert sum("no NVIDIA driver" in r.message for r in caplog.records) == 1
    assert published and published[-1].summary().startswith("gpu-node-1: no NVIDIA driver")
    assert "deep_gpu_nvml_up{node=\"gpu-node-1\"} 0.0" in generate_latest(registry_for(agent)).decode()


def test_run_without_driver_waits_the_idle_interval_and_stops_cleanly() -> None:
    nvml = FakeNvml([], init_error=ERROR_LIBRARY_NOT_FOUND)
    agent = agent_for(nvml)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), kwargs={"interval": 0.01, "idle_interval": 0.2})
    thread.start()
    stop.wait(0.5)
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    assert 2 <= nvml.init_calls <= 4  # retried at the idle pace, not the reading pace (~50)
    assert nvml.shutdowns == 0


def test_driver_appearing_later_is_picked_up() -> None:
    nvml = FakeNvml([h100(0)], init_error=ERROR_DRIVER_NOT_LOADED)
    agent = agent_for(nvml)
    assert agent.step().error
    nvml.init_error = None
    assert agent.step().gpus[0].product == "NVIDIA-H100-80GB-HBM3"


def test_prometheus_metrics_of_a_reading() -> None:
    agent = agent_for(FakeNvml([a100(0, used_mib=1024, util=88, temp=70), mig_a100(1)]))
    agent.step()
    text = generate_latest(registry_for(agent)).decode()
    labels = (
        'gpu="0",node="gpu-node-1",product="NVIDIA-A100-SXM4-80GB",'
        'uuid="GPU-a100-0000-8c1e-7f2b-4a3d5e6f7a8b"'
    )
    assert f"deep_gpu_utilization_percent{{{labels}}} 88.0" in text
    samples = {
        (s.name, s.labels.get("gpu"), s.labels.get("profile")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("deep_gpu_memory_used_bytes", "0", None)] == 1024 * MIB
    assert samples[("deep_gpu_memory_total_bytes", "1", None)] == 81920 * MIB
    assert samples[("deep_gpu_mig_instances", "1", "2g.20gb")] == 2
    assert f"deep_gpu_temperature_celsius{{{labels}}} 70.0" in text
    assert 'profile="2g.20gb"' in text and "deep_gpu_mig_instances" in text
    assert 'deep_gpu_nvml_up{node="gpu-node-1"} 1.0' in text


class RecordingApi:
    def __init__(self) -> None:
        self.applied: list[dict[str, object]] = []

    def apply(self, obj: dict[str, object]) -> dict[str, object]:
        self.applied.append(obj)
        return obj


def test_publisher_writes_on_shape_change_and_refreshes_otherwise() -> None:
    api, clock = RecordingApi(), [0.0]
    publish = ConfigMapPublisher(api, "deep-platform", refresh=60, monotonic=lambda: clock[0])
    nvml = FakeNvml([a100(0, util=10)])
    agent = agent_for(nvml, publish=publish)
    agent.step()
    nvml.gpus[0].util = 90  # utilisation alone: no write before the refresh
    clock[0] = 20
    agent.step()
    assert len(api.applied) == 1
    nvml.gpus[0].lost = True  # the shape changed: written at once
    clock[0] = 25
    agent.step()
    clock[0] = 90
    agent.step()
    assert len(api.applied) == 3
    configmap = api.applied[-1]
    assert configmap["metadata"]["labels"][LABEL] == "true"  # type: ignore[index]
    assert configmap["metadata"]["name"] == "gpu-inventory-gpu-node-1"  # type: ignore[index]
    inventory = from_configmap(configmap)
    assert inventory is not None and inventory.gpus[0].lost


def test_publish_failure_does_not_stop_the_agent(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: NodeInventory) -> None:
        raise ConnectionError("api server unreachable")

    agent = agent_for(FakeNvml([a100(0)]), publish=broken)
    assert agent.step().gpus[0].product == "NVIDIA-A100-SXM4-80GB"
    assert "api server unreachable" in caplog.text


def test_agent_publishes_and_maps_pods_through_the_api_server(apiserver: object, tmp_path: Path) -> None:
    """The agent as `deep-platform gpu-agent --proc-root` builds it: its own client (the chart's
    RBAC test checks these calls against the gpu-agent's Role), pods of its node only."""
    from deep_platform.gpu.agent import pods_on_node
    from deep_platform.gpu.inventory import read_inventories
    from tests.harness.operator_fixtures import kube_for

    url = apiserver.url  # type: ignore[attr-defined]
    test, api = kube_for(url), kube_for(url, component="gpu-agent")
    test.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "alice"}})
    for name, node in (("retrain-abcde", "gpu-node-1"), ("elsewhere", "gpu-node-2")):
        test.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "alice"},
                     "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}})
    pod = test.get(k.POD, "retrain-abcde", "alice")
    assert pod is not None
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text(f"0::/kubepods/pod{pod['metadata']['uid']}/c0ffee\n")
    gpu = a100(0, util=50)
    gpu.procs = [(4242, 1024 * MIB)]
    agent = agent_for(FakeNvml([gpu]), publish=ConfigMapPublisher(api, "deep-platform"),
                      pods=pods_on_node(api, "gpu-node-1"), proc_root=tmp_path)
    inventory = agent.step()
    assert [(p.namespace, p.pod) for p in inventory.gpus[0].processes] == [("alice", "retrain-abcde")]
    assert agent.step().gpus[0].product == "NVIDIA-A100-SXM4-80GB"  # same shape: no second write
    found = read_inventories(test, "deep-platform", now=CLOCK + dt.timedelta(minutes=1))
    assert found["gpu-node-1"].gpus[0].processes[0].pod == "retrain-abcde"
    test.close()
    api.close()
