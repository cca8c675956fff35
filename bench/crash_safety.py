"""Crash safety on the real API server: 200 TrainingJobs + 50 InferenceServices, the operator
(`deep-platform run`, its own process) killed with SIGKILL 10 times at random moments and
started again; against the same burst without kills, in the same run.

    python bench/crash_safety.py [--trainingjobs 200] [--services 50] [--kills 10]

Needs a real API server ($KUBECONFIG, else the shared/k8s control plane, started for the run:
bench/_servers.py); the kubelet stand-in of
tests/harness/node_kubelet.py plays the kubelet on two CPU nodes of its own. Prints the time
from the burst (and from the last restart) to convergence, and the invariants of
tests/harness/crash_safety.py: statuses, one Job per TrainingJob ever, no orphan child,
observedGeneration, no Event announcing a transition twice.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _servers  # noqa: E402
from deep_platform import kube as k  # noqa: E402
from tests.harness.crash_safety import OperatorProcess, Outcome, Plan, Scenario  # noqa: E402
from tests.harness.node_kubelet import NodeKubelet, NodeShape  # noqa: E402

NODES = [NodeShape("crash-bench-a", taint_gpu=False), NodeShape("crash-bench-b", taint_gpu=False)]


def one_run(
    api: k.Kube, kubeconfig: Path, plan: Plan, kills: int, window: float, logs: Path
) -> tuple[str, Outcome]:
    namespace = f"crash-bench-{uuid.uuid4().hex[:6]}"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    operator = OperatorProcess(kubeconfig, namespace, "deep-platform", logs / f"{namespace}.log")
    scenario = Scenario(api, namespace, plan, operator)
    try:
        out = scenario.run(kills=kills, kill_window=window, timeout=600,
                           on_progress=lambda line: print(f"  {line}", flush=True))
    finally:
        scenario.close()
        api.delete(k.NAMESPACE, namespace)
    return namespace, out


def report(label: str, out: Outcome) -> None:
    converged = "never" if out.converged is None else f"{out.burst_to_converged:.1f} s"
    after = ""
    if out.converged is not None and out.kills:
        after = f", {out.restart_to_converged:.1f} s after the last restart"
    print(f"{label}: {out.kills} kills, converged {converged} after the burst began{after}; "
          f"{out.events} Events")
    for line in out.problems[:15] if out.converged is None else []:
        print(f"  not converged: {line}")
    for line in out.invariants[:15]:
        print(f"  invariant broken: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainingjobs", type=int, default=200)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    with _servers.real_server(required=True) as kubeconfig:
        assert kubeconfig is not None
        return run(_servers.client_for(kubeconfig, component="crash-bench"), Path(kubeconfig), args)


def run(api: k.Kube, kubeconfig: Path, args: argparse.Namespace) -> int:
    _servers.install_crds(api)
    _servers.ensure_namespace(api, "deep-platform")
    plan = Plan(trainingjobs=args.trainingjobs, services=args.services, ttl=20)
    logs = Path(tempfile.mkdtemp(prefix="crash-bench-"))
    print(f"{plan.trainingjobs} TrainingJobs + {plan.services} InferenceServices; operator logs in {logs}")
    with NodeKubelet(api, NODES):
        _, base = one_run(api, kubeconfig, plan, 0, 0, logs)
        report("without kills", base)
        window = 0.8 * (base.burst_to_converged or 60.0)
        _, crash = one_run(api, kubeconfig, plan, args.kills, window, logs)
        report(f"with kills in the first {window:.0f} s", crash)
    if base.converged and crash.converged:
        print(f"ratio: converged {crash.burst_to_converged / base.burst_to_converged:.2f}x the time "
              f"without kills (burst start); last restart -> converged "
              f"{crash.restart_to_converged / base.burst_to_converged:.2f}x")
    ok = all(out.converged is not None and not out.invariants for out in (base, crash))
    print("invariants: all hold" if ok else "invariants: BROKEN")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
