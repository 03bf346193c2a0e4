"""Mutation check of the test suite (issue 14, item 7): each mutant of tools/mutants.json is a one-line fault that
the tests must catch. For each, the source line is edited in place, the named tests run, and the
file is restored; the script fails if any mutant survives (all its tests pass).

Usage: ``python tools/mutants.py`` (``make mutants``), from the repository root, with the
package built (``make build``). Each mutant runs only the tests that should catch it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The mutants: name, file, original text, mutated text, pytest arguments (a data file).
MUTANTS = [(m["name"], m["file"], m["original"], m["mutated"], m["pytest"])
           for m in json.loads((ROOT / "tools" / "mutants.json").read_text())["mutants"]]


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
