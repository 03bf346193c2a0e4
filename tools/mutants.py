"""Mutation check of the test suite (issue 14, item 7): each mutant below is a one-line fault that
the tests must catch. For each, the source line is edited in place, the named tests run, and the
file is restored; the script fails if any mutant survives (all its tests pass).

Usage: ``python tools/mutants.py`` (``make mutants``), from the repository root, with the
package built (``make build``). Each mutant runs only the tests that should catch it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, file, original text, mutated text, pytest arguments)
MUTANTS = [
    (
        "op guidance-rescale factor inverted",
        "genfast/ops/sampling_step.py",
        "guidance_rescale * (cond.std(dim=1) / guided.std(dim=1))",
        "guidance_rescale * (guided.std(dim=1) / cond.std(dim=1))",
        ["tests/ops/test_sampling_step.py", "-k", "guidance"],
    ),
    (
        "reference guidance-rescale factor inverted",
        "genfast/reference/sampling_step.py",
        "factor = guidance_rescale * (std_text / std_cfg)",
        "factor = guidance_rescale * (std_cfg / std_text)",
        ["tests/ops/test_sampling_step.py", "-k", "guidance"],
    ),
    (
        "reference VQ tie-break: last index instead of the first",
        "genfast/reference/vq.py",
        "idx = dm.argmax(1) if use_cosine_sim else dm.argmin(1)",
        "idx = (dm.shape[1] - 1 - (dm.flip(1).argmax(1) if use_cosine_sim else dm.flip(1).argmin(1)))",
        ["tests/ops/test_vq.py", "-k", "oracle or ties or duplicate"],
    ),
    (
        "reference DDPM posterior-mean coefficient off by 0.1 % (seen by the fuzz tests)",
        "genfast/reference/sampling_step.py",
        "c_x0 = (a_prev.sqrt() * cur_beta) / beta_t",
        "c_x0 = 1.001 * (a_prev.sqrt() * cur_beta) / beta_t",
        ["tests/ops/test_fuzz.py", "-k", "ddpm"],
    ),
    (
        "VQ overflow scaling: distances not scaled back (seen by the fuzz and extreme tests)",
        "genfast/ops/vq.py",
        "inv_s = ((127 - k).to(torch.int32) << 23).view(torch.float32)",
        "inv_s = torch.ones_like(s)",
        ["tests/ops/test_fuzz.py", "-k", "vq", "tests/ops/test_vq.py", "-k", "extreme"],
    ),
    (
        "DDPM model: conditional and unconditional outputs swapped",
        "genfast/models/ddpm.py",
        "e_c, e_u = eps.chunk(2)",
        "e_u, e_c = eps.chunk(2)",
        ["tests/models/test_ddpm.py", "-k", "guidance"],
    ),
]


def run_mutant(name, path, original, mutated, args) -> bool:
    """True when the mutant is caught (some test fails)."""
    f = ROOT / path
    text = f.read_text()
    if text.count(original) != 1:
        raise SystemExit(f"mutant {name!r}: the original text is not found exactly once in {path}")
    try:
        f.write_text(text.replace(original, mutated))
        env = dict(os.environ, TRITON_INTERPRET=os.environ.get("TRITON_INTERPRET", "1"))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        f.write_text(text)
    caught = proc.returncode == 1  # tests ran and at least one failed (2+: an error, not a catch)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-200:]
    print(f"{'caught  ' if caught else 'SURVIVED'} {name}: {tail}", flush=True)
    return caught


def main() -> int:
    """Run every mutant; exit status 1 when one survives."""
    results = [run_mutant(*m) for m in MUTANTS]
    print(f"{sum(results)} of {len(results)} mutants caught")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
