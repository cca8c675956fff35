"""The Pod Security Standards "restricted" profile (which includes "baseline"), as checks on a pod spec.

Written from the published standard (kubernetes.io/docs/concepts/security/pod-security-standards),
so a chart can be checked without an API server that enforces it.
"""

from __future__ import annotations

from typing import Any

RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Every way this pod spec breaks the "restricted" profile; empty when it passes."""
    found: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    containers = [
        (kind, c)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(kind) or []
    ]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"spec.{field} is true")
    for volume in spec.get("volumes") or []:
        types = [k for k in volume if k != "name"]
        if any(t not in RESTRICTED_VOLUMES for t in types):
            allowed = sorted(RESTRICTED_VOLUMES)
            found.append(f"volume {volume['name']} is of type {types} (allowed: {allowed})")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("pod securityContext.windowsOptions.hostProcess is true")
    found += _selinux(pod_sc, "pod")
    if pod_sc.get("runAsUser") == 0:
        found.append("pod securityContext.runAsUser is 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":
        found.append("pod seccompProfile is Unconfined")
    if (pod_sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        found.append("pod appArmorProfile is Unconfined")
    for kind, c in containers:
        where = f"{kind}[{c['name']}]"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            found.append(f"{where} is privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where} windowsOptions.hostProcess is true")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{where} uses hostPort {port['hostPort']}")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{where} procMount is {sc['procMount']}")
        found += _selinux(sc, where)
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where} appArmorProfile is Unconfined")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where} securityContext.allowPrivilegeEscalation is not false")
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            found.append(f"{where} runAsNonRoot is not true (neither on the pod nor on the container)")
        if sc.get("runAsUser") == 0:
            found.append(f"{where} securityContext.runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where} seccompProfile is {seccomp!r} (RuntimeDefault or Localhost required)")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{where} does not drop ALL capabilities")
        extra = [cap for cap in caps.get("add") or [] if cap != "NET_BIND_SERVICE"]
        if extra:
            found.append(f"{where} adds capabilities {extra} (only NET_BIND_SERVICE is allowed)")
    return found


def _selinux(sc: dict[str, Any], where: str) -> list[str]:
    options = sc.get("seLinuxOptions") or {}
    found = []
    if options.get("type", "") not in SELINUX_TYPES:
        found.append(f"{where} seLinuxOptions.type is {options['type']}")
    for field in ("user", "role"):
        if options.get(field):
            found.append(f"{where} seLinuxOptions.{field} is set")
    return found
