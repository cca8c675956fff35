"""MIG profiles and the extended resources NVIDIA's device plugin advertises for them.

A profile is named as NVML, `nvidia-smi mig -lgip` and the MIG manager name it: `<g>g.<mem>gb`
(GPU slices, memory in GB), optionally with one attribute: `+me` (with the media extensions),
`+me.all` (all of them), `+gfx` (graphics) or `-me` (without media extensions). Compute-instance
profiles (`1c.2g.20gb`: one compute slice of a 2g GPU instance) exist too, but nothing can ask
for them: with `migStrategy: mixed` the device plugin (k8s-device-plugin, `rm.go`,
`AddDefaultResourcesToConfig`) advertises only profiles whose compute and GPU slices are equal.

The device plugin names the resource `nvidia.com/mig-<profile>` with every `+` replaced by `.`
(a resource name must be a DNS subdomain), so `1g.10gb+me` is `nvidia.com/mig-1g.10gb.me`;
`-me` stays as it is (`nvidia.com/mig-1g.10gb-me`).

Pure functions, no imports from the rest of the package: the API models, the pod builder, the
scheduling check and the GPU inventory all name MIG resources through `mig_resource_name`.
"""

from __future__ import annotations

import re

#: GPU slices NVML has instance profiles for (1, 2, 3, 4, 6, 7 and 8 slices; no 5)
_SLICES = "[1-46-8]"
#: a GPU-instance profile as NVML names it; the CRD's pattern on `migProfile`
MIG_PROFILE_PATTERN = rf"^{_SLICES}g\.[1-9][0-9]{{0,3}}gb(\+me|\+me\.all|\+gfx|-me)?$"
_COMPUTE_INSTANCE = re.compile(rf"^[1-8]c\.({_SLICES}g\.[1-9][0-9]{{0,3}}gb(?:\+me|\+me\.all|\+gfx|-me)?)$")
_RESOURCE_FORM = re.compile(
    r"^(?:nvidia\.com/)?(?:mig-)?([1-8]g\.[1-9][0-9]{0,3}gb)(\.me\.all|\.me|\.gfx|-me)?$"
)
EXAMPLES = "1g.10gb, 1g.10gb+me, 2g.20gb, 3g.40gb, 7g.80gb"
RESOURCE_PREFIX = "nvidia.com/mig-"


def is_mig_profile(profile: str) -> bool:
    """A profile the device plugin can advertise (the shape, not whether a GPU has it)."""
    return re.match(MIG_PROFILE_PATTERN, profile) is not None


def mig_resource_name(profile: str) -> str | None:
    """`1g.10gb+me` -> `nvidia.com/mig-1g.10gb.me`, as the device plugin's mixed strategy
    advertises it; None for a profile it never advertises (`1c.2g.20gb`, a malformed name)."""
    if not is_mig_profile(profile):
        return None
    return RESOURCE_PREFIX + profile.replace("+", ".")


def mig_profile_problem(profile: str) -> str | None:
    """Why no pod can ask for this MIG profile, with the spelling that works; None when it is fine."""
    if is_mig_profile(profile):
        return None
    compute = _COMPUTE_INSTANCE.match(profile)
    if compute:
        return (
            f"{profile!r} is a compute-instance profile, which the NVIDIA device plugin does not "
            f"advertise; ask for the GPU-instance profile {compute.group(1)!r} instead"
        )
    resource = _RESOURCE_FORM.match(profile)
    if resource:
        attribute = (resource.group(2) or "").replace(".", "+", 1)
        spelled = resource.group(1) + attribute
        if is_mig_profile(spelled):
            return (
                f"{profile!r} is spelled like the node's resource name; write the MIG profile "
                f"as nvidia-smi names it: {spelled!r}"
            )
    return f"{profile!r} is not a MIG profile; write it as nvidia-smi names it, such as {EXAMPLES}"
