"""diffusers' own scheduler tests, run against genfast's drop-in classes.

Set ``GENFAST_DIFFUSERS_TESTS`` to a diffusers ``tests/`` folder (a checkout of the diffusers
repository, tag v0.40.0 or later; its ``schedulers/`` and ``others/`` subfolders and
``testing_utils.py`` are used; we do not ship diffusers' code). The suite runs twice in
subprocesses, offline: once with diffusers' own classes and once with the classes of
``_diffusers_swap.SWAP`` swapped in at collection. Every test that passes with diffusers' classes
must pass with genfast's. ``test_compatibles`` needs ``torchsde`` installed (diffusers' classes
fail it too without it); the two tests that download a pipeline from the Hub fail offline in
both runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._diffusers_swap import SWAP

ENV = "GENFAST_DIFFUSERS_TESTS"
HERE = Path(__file__).resolve().parent


def _test_files(root: Path) -> list:
    """``schedulers/test_schedulers.py`` plus every scheduler test file whose
    ``scheduler_classes`` names a key of ``SWAP``."""
    files = []
    for path in sorted((root / "schedulers").glob("test_scheduler_*.py")):
        for match in re.finditer(r"scheduler_classes\s*=\s*\(([^)]*)\)", path.read_text()):
            if {n.strip() for n in match.group(1).split(",")} & set(SWAP):
                files.append(path)
                break
    return [root / "schedulers" / "test_schedulers.py"] + files


def _run(root: Path, files: list, swap: bool, report: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", GENFAST_SWAP="1" if swap else "0",
               GENFAST_SWAP_REPORT=str(report),
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_diffusers_swap",
           "-c", os.devnull, "--rootdir", str(root.parent), "-W", "ignore",
           *[str(f.relative_to(root.parent)) for f in files]]
    proc = subprocess.run(cmd, cwd=root.parent, env=env, capture_output=True, text=True, timeout=1800)
    if not report.exists():
        pytest.fail(f"diffusers' suite did not run (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")
    return json.loads(report.read_text())


def _counts(outcomes: dict) -> dict:
    return {k: sum(v == k for v in outcomes.values()) for k in ("passed", "failed", "skipped")}


def test_diffusers_scheduler_suite_passes_with_genfast_classes(tmp_path):
    root = os.environ.get(ENV)
    if not root:
        pytest.skip(f"set {ENV} to a diffusers tests/ folder (tag v0.40.0 or later) to run diffusers' "
                    "scheduler tests against genfast's classes")
    root = Path(root).resolve()
    if not (root / "schedulers" / "test_schedulers.py").is_file():
        pytest.fail(f"{ENV}={root} is not a diffusers tests/ folder (no schedulers/test_schedulers.py)")
    files = _test_files(root)
    assert len(files) > 1, f"no test file in {root / 'schedulers'} tests a class of SWAP {sorted(SWAP)}"
    theirs = _run(root, files, swap=False, report=tmp_path / "diffusers.json")
    ours = _run(root, files, swap=True, report=tmp_path / "genfast.json")
    print("files:", [f.name for f in files])
    print("diffusers' classes:", _counts(theirs["outcomes"]))
    print("genfast's classes: ", _counts(ours["outcomes"]), "swapped in", ours["swapped"])
    assert theirs["swapped"] == []
    assert len(ours["swapped"]) >= len(files) - 1, ours["swapped"]
    assert set(ours["outcomes"]) == set(theirs["outcomes"]), "the two runs collected different tests"
    lost = sorted(k for k, v in theirs["outcomes"].items() if v == "passed" and ours["outcomes"][k] != "passed")
    assert not lost, f"pass with diffusers' classes but not with genfast's: {lost}"
