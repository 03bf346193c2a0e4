"""genfast train / sample / eval cyclegan on tiny settings, its zoo row, and one-line errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from genfast.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cyclegan") / "run"
    assert main(["train", "cyclegan", "--steps", "6", "--batch-size", "16", "--out", str(out), "--no-progress"]) == 0
    return out


def test_train_writes_the_run(run):
    for name in ("config.json", "model.safetensors", "metrics.csv", "translations.png"):
        assert (run / name).is_file(), name
    from genfast.models import CycleGAN

    model = CycleGAN.load(run)  # loads from Python without the CLI
    assert model.training_info["extra"]["attribute"] == "thickness"
    assert len(model.training_info["extra"]["terciles"]) == 3


def test_sample_grid_has_four_rows(run, tmp_path, capsys):
    png = tmp_path / "t.png"
    assert main(["sample", "cyclegan", "--checkpoint", str(run), "--n", "5", "--out", str(png), "--no-progress"]) == 0
    assert "A->B" in capsys.readouterr().out
    w, h = Image.open(png).size
    assert w > h  # 5 columns, 4 rows (inputs and translations of both domains)


def test_eval_reports_the_targets(run, capsys):
    assert main(["eval", "cyclegan", "--checkpoint", str(run), "--json", "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["n"] > 100 and 0.0 <= r["class_kept"] <= 1.0 and 0.0 <= r["attribute_moved"] <= 1.0
    assert r["attribute"] == "thickness"


def test_errors_name_the_flags(run, tmp_path, capsys):
    assert main(["train", "cyclegan", "--steps", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["train", "cyclegan", "--steps", "2", "--lr", "-1", "--out", str(tmp_path / "b")]) == 2
    assert "--lr" in capsys.readouterr().err
    assert main(["sample", "cyclegan", "--checkpoint", str(run), "--n", "0"]) == 2
    assert "--n" in capsys.readouterr().err
    # another family's checkpoint is named, not loaded as a CycleGAN
    vae = tmp_path / "vae"
    assert main(["train", "vae", "--steps", "2", "--out", str(vae), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sample", "cyclegan", "--checkpoint", str(vae)]) == 2
    err = capsys.readouterr().err
    assert "VAE" in err and "genfast sample vae" in err


def test_zoo_row(tmp_path, capsys):
    assert main(["zoo", "--quick", "--no-progress", "--out", str(tmp_path), "--only", "cyclegan"]) == 0
    md = (tmp_path / "zoo.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| cyclegan"))
    assert "class kept" in row and "thickness moved" in row and "FAILED" not in row
