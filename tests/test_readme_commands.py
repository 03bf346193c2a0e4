"""Every command line of README.md runs as written (issue 13, item 6), on tiny settings.

The commands are read from the README's fenced code blocks (every line that starts with
``genfast``, ``python -m genfast`` or ``torchrun ... -m genfast``; ``;`` separates commands on one
line, ``\\`` continues one) and run in README order with :func:`genfast.cli.main`, in one
temporary folder, so a later command finds the checkpoints of the earlier ones as a reader's
would. What changes, and only that:

- tiny settings are appended (argparse keeps the last value: ``--steps 2000 ... --steps 2``);
- ``torchrun`` lines run their genfast command in this one process (the multi-process runs have
  their own tests in ``tests/training``); ``--device cuda`` becomes ``--device cpu`` without CUDA;
- absolute output paths (``/shared/runs/ddpm``) are made relative to the temporary folder;
- ``--data torchvision:NAME`` runs only when torchvision is installed, on a tiny MNIST written
  where torchvision looks for it (nothing is downloaded); ``path/to/...-idx3-ubyte`` is a tiny
  IDX file written there.

Nothing is written under the checkout: the test checks that its files did not change.
"""

from __future__ import annotations

import re
import shlex
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from genfast.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

_STEPS = ["--steps", "2"]
# (verb, name) -> the tiny settings appended to the README's command; None: any name of the verb
TINY = {
    ("train", "ddpm"): [*_STEPS, "--base-channels", "8", "--batch-size", "16"],
    ("train", "ldm"): [*_STEPS, "--autoencoder-steps", "1", "--batch-size", "8"],
    ("train", "rbm"): ["--epochs", "1", "--hidden", "16"],
    ("train", "dbn"): ["--epochs", "1", "--hidden", "16,8"],
    ("train", "vqvae"): [*_STEPS, "--hidden-channels", "8"],
    ("train", "vqvae-prior"): [*_STEPS, "--d-model", "16", "--n-layers", "1"],
    ("train", None): [*_STEPS, "--batch-size", "16"],
    ("sample", "ddpm"): [*_STEPS, "--n", "4"],
    ("sample", "ldm"): [*_STEPS, "--n", "2"],
    ("sample", "rbm"): ["--k", "5", "--n", "4"],
    ("sample", None): ["--n", "4"],
    ("eval", "ddpm"): [*_STEPS, "--n", "16"],
    ("eval", "rbm"): ["--chains", "4", "--betas", "20"],
    ("eval", "glow"): [],
    ("eval", "cyclegan"): [],
    ("eval", None): ["--n", "16"],
    ("edit", None): [*_STEPS, "--n", "2"],
    ("demo", None): ["--quick"],
    ("zoo", None): ["--quick", "--n", "16"],
    ("anomaly-table", None): ["--families", "ae", "--classes", "0", "--steps-scale", "0.02"],
    ("detect", None): [],
}
_VERBS_WITH_NAME = ("train", "sample", "eval")


def _split_commands(line: str) -> list[list[str]]:
    tokens = shlex.split(line, comments=True)
    out, cur = [], []
    for t in tokens:
        if t == ";":
            out.append(cur)
            cur = []
        elif t.endswith(";"):
            cur.append(t[:-1])
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    return [c for c in [*out, cur] if c]


def genfast_argv(tokens: list[str]) -> list[str] | None:
    """The arguments of ``genfast`` in one command, or None when it does not run genfast."""
    if tokens[:1] == ["genfast"]:
        return tokens[1:]
    if tokens[:3] == ["python", "-m", "genfast"]:
        return tokens[3:]
    if tokens[:1] == ["torchrun"]:
        for i in range(len(tokens) - 1):
            if tokens[i] == "-m" and tokens[i + 1] == "genfast":
                return tokens[i + 2 :]
    return None


def readme_commands() -> list[str]:
    """Every genfast command line of README.md's code blocks, in order (one string each)."""
    text = README.read_text()
    cmds = []
    for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if lang == "python":
            continue
        for line in block.replace("\\\n", " ").splitlines():
            if not re.match(r"\s*(genfast |python -m genfast|torchrun )", line):
                continue
            for tokens in _split_commands(line):
                if genfast_argv(tokens) is not None:
                    cmds.append(shlex.join(tokens))
    return cmds


COMMANDS = readme_commands()


def tiny(argv: list[str]) -> list[str]:
    """``argv`` with the substitutions of this module's docstring and tiny settings appended."""
    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--device" and i + 1 < len(argv) and argv[i + 1].startswith("cuda") and not torch.cuda.is_available():
            argv[i + 1] = "cpu"
        if i > 0 and argv[i - 1] in ("--out", "--checkpoint", "--data-root") and a.startswith("/"):
            argv[i] = a.lstrip("/")
    verb = argv[0]
    name = argv[1] if verb in _VERBS_WITH_NAME else None
    extra = TINY.get((verb, name), TINY.get((verb, None)))
    if extra is None:
        raise AssertionError(f"no tiny settings for 'genfast {verb} {name or ''}': add them to TINY")
    if verb == "sample" and "--num-samples" in argv:
        extra = [*extra, "--num-samples", "4", "--chunk-size", "2"]
    return [*argv, *extra, "--no-progress"]


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (unsigned bytes): magic 0x0800 | ndim, the sizes big-endian, the data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(head + array.astype(np.uint8).tobytes())


def _tiny_mnist(folder: Path, names: tuple[str, str], n: int = 32) -> None:
    rng = np.random.default_rng(0)
    _write_idx(folder / names[0], rng.integers(0, 256, (n, 28, 28)))
    _write_idx(folder / names[1], np.arange(n) % 10)


def _prepare(argv: list[str], cwd: Path) -> None:
    """Create the data files a command names (see the module docstring) or skip it."""
    for i, a in enumerate(argv[:-1]):
        if a != "--data":
            continue
        data = argv[i + 1]
        if data.startswith("torchvision:"):
            pytest.importorskip("torchvision", reason="--data torchvision:NAME needs torchvision")
            root = cwd / argv[argv.index("--data-root") + 1] if "--data-root" in argv else cwd / "data"
            raw = root / data.split(":", 1)[1] / "raw"
            _tiny_mnist(raw, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"))
            _tiny_mnist(raw, ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
        elif "idx3-ubyte" in data and not (cwd / data).exists():
            p = cwd / data
            _tiny_mnist(p.parent, (p.name, p.name.replace("images", "labels").replace("idx3", "idx1")))


def _checkout_state() -> dict[str, float]:
    skip = {".git", ".venv", "build", "build-sanitize", "build-tsan", "dist", "_skbuild", "__pycache__",
            ".pytest_cache", ".ruff_cache", ".hypothesis"}
    out = {}
    for p in ROOT.iterdir():
        if p.name in skip or p.name.endswith(".egg-info"):
            continue
        for f in [p] if p.is_file() else p.rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".so", ".pyc"):
                out[str(f.relative_to(ROOT))] = f.stat().st_mtime
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One temporary folder for all the README's commands (later ones use earlier checkpoints),
    a private metric cache, and the checkout's files before and after."""
    d = tmp_path_factory.mktemp("readme")
    before = _checkout_state()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFAST_CACHE", str(d / "cache"))
        mp.setenv("GENFAST_TUNE", "0")
        mp.chdir(d)
        threads = torch.get_num_threads()
        yield d
        torch.set_num_threads(threads)
    after = _checkout_state()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"the README's commands wrote into the checkout: {changed[:10]}"


def test_readme_commands_are_found():
    """The extraction sees every family's commands (a README edit that hides them fails here)."""
    assert len(COMMANDS) >= 30, COMMANDS
    joined = "\n".join(COMMANDS)
    for needle in ("genfast train ddpm", "genfast sample vqvae", "genfast sample glow", "genfast eval glow",
                   "genfast sample rbm", "genfast eval rbm", "genfast train vqvae-prior", "-m genfast sample ddpm",
                   "genfast detect vae", "genfast demo", "genfast zoo"):
        assert needle in joined, needle
    for cmd in COMMANDS:  # each has its tiny settings
        tiny(genfast_argv(shlex.split(cmd)))


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{i:02d}-{c[:60]}" for i, c in enumerate(COMMANDS)])
def test_readme_command_runs_as_written(workdir, command, capsys):
    argv = tiny(genfast_argv(shlex.split(command)))
    _prepare(argv, workdir)
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 0, f"genfast {shlex.join(argv)} returned {rc}:\n{out.err[-3000:]}\n{out.out[-2000:]}"
