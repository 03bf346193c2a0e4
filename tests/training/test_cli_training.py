"""The command line on the engine (issue 16, items 2-5): --resume continues a run with the same
losses, an existing run needs --resume or --overwrite, torchvision data sets fail clearly when
torchvision is missing, and 'genfast sample NAME --num-samples N --out DIR' gives the same images
alone and as two torchrun-style processes, which also train together."""

from __future__ import annotations

import csv
import socket

import numpy as np
import pytest

from genfast.cli import main

from . import _workers as W

pytestmark = pytest.mark.usefixtures("flush_denormal")

TRAIN = ["train", "dcgan", "--batch-size", "16", "--grid-every", "0", "--no-progress", "--save-every", "0"]


def _losses(run):
    with (run / "metrics.csv").open() as f:
        return [(r["step"], r["d_loss"], r["g_loss"]) for r in csv.DictReader(f)]


def test_cli_resume_matches_the_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFAST_CACHE", str(tmp_path / "cache"))
    assert main([*TRAIN, "--steps", "8", "--out", str(tmp_path / "a")]) == 0
    assert main([*TRAIN, "--steps", "4", "--out", str(tmp_path / "b")]) == 0
    assert main([*TRAIN, "--steps", "8", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert len(a) == len(b) == 8 and a == b


def test_cli_run_folder_checks(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--steps", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*TRAIN, "--steps", "1", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*TRAIN, "--steps", "1", "--out", str(out), "--overwrite"]) == 0
    (tmp_path / "f").write_text("")
    assert main([*TRAIN, "--steps", "1", "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main([*TRAIN, "--steps", "1", "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_torchvision_data(tmp_path, capsys):
    try:
        import torchvision  # noqa: F401
    except ImportError:
        assert main([*TRAIN, "--steps", "1", "--data", "torchvision:MNIST", "--out", str(tmp_path / "r")]) == 2
        assert "needs torchvision" in capsys.readouterr().err
        return
    rc = main([*TRAIN, "--steps", "1", "--data", "torchvision:MNIST", "--data-root", str(tmp_path / "none"),
               "--out", str(tmp_path / "r")])
    assert rc == 2 and "--download" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_train_and_sharded_sample(tmp_path, capsys):
    ck = tmp_path / "ck"
    assert main([*TRAIN, "--steps", "2", "--out", str(ck)]) == 0
    one = tmp_path / "one"
    sample = ["sample", "dcgan", "--checkpoint", str(ck), "--num-samples", "7", "--chunk-size", "3",
              "--no-progress"]
    assert main([*sample, "--out", str(one)]) == 0
    assert main([*sample, "--out", str(one)]) == 2 and "--overwrite" in capsys.readouterr().err
    two, run2 = tmp_path / "two", tmp_path / "run2"
    W.spawn(W.cli_torchrun, 2, _free_port(), [[*sample, "--out", str(two)],
                                              [*TRAIN, "--steps", "3", "--out", str(run2)]])
    a, b = np.load(one / "samples.npz")["images"], np.load(two / "samples.npz")["images"]
    assert a.shape == (7, 8, 8, 1) and np.array_equal(a, b)
    assert len(list((two / "samples").glob("*.png"))) == 7
    assert len(_losses(run2)) == 3 and (run2 / "checkpoint" / "training_state.json").is_file()


def test_eval_every_logs_the_frechet_digit_distance(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFAST_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main([*TRAIN, "--steps", "4", "--eval-every", "2", "--out", str(out)]) == 0
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    figures = [(r["step"], r["fdd"] != "", r["classes_present"] != "") for r in rows]
    assert figures == [("1", False, False), ("2", True, True), ("3", False, False), ("4", True, True)]
    assert 0 < float(rows[1]["fdd"]) < 1e4


def test_sigterm_to_a_training_process_leaves_a_checkpoint_that_resumes(tmp_path):
    """Issue 16: interrupting 'genfast train dcgan' left sample grids but no checkpoint. Here a
    real process is sent SIGTERM mid-run: it writes the checkpoint, exits with 130, and --resume
    finishes the run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "genfast", *TRAIN, "--steps", "100000", "--save-every", "3", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = out / "checkpoint" / "training_state.json"
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.exists(), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "checkpoint" in err
    import json

    step = json.loads(state.read_text())["step"]
    assert step >= 3
    assert main([*TRAIN, "--steps", str(step + 2), "--out", str(out), "--resume"]) == 0
    assert json.loads(state.read_text())["step"] == step + 2
    assert [int(r[0]) for r in _losses(out)] == list(range(1, step + 3))


def test_sample_vqvae_is_sharded_with_the_same_images_for_1_2_3_processes(tmp_path, capsys):
    """Issue 16, item 4, for the VQ-VAE: 'genfast sample vqvae --num-samples N' splits the code
    grids drawn from the prior over torchrun's ranks; sample i's seed is its chunk's, so the set
    is bit-identical for world sizes 1, 2 and 3."""
    ck = tmp_path / "vq"
    common = ["--no-progress", "--seed", "0"]
    assert main(["train", "vqvae", "--steps", "2", "--hidden-channels", "8", "--num-codes", "8", "--out", str(ck),
                 "--save-every", "0", *common]) == 0
    assert main(["train", "vqvae-prior", "--steps", "2", "--d-model", "16", "--n-layers", "1", "--checkpoint",
                 str(ck), "--save-every", "0", *common]) == 0
    sample = ["sample", "vqvae", "--checkpoint", str(ck), "--num-samples", "7", "--chunk-size", "2",
              "--temperature", "1.5", *common]
    outs = []
    for world in (1, 2, 3):
        out = tmp_path / f"w{world}"
        if world == 1:
            assert main([*sample, "--out", str(out)]) == 0
        else:
            W.spawn(W.cli_torchrun, world, _free_port(), [[*sample, "--out", str(out)]])
        data = np.load(out / "samples.npz")
        assert data["images"].shape == (7, 8, 8, 1) and len(list((out / "samples").glob("*.png"))) == 7
        outs.append(data["images"])
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    assert not np.array_equal(outs[0][0], outs[0][2])  # the chunks do get different codes
