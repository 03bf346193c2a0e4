"""``genfast zoo --quick`` end to end, the zoo's outputs, and ``genfast train/sample/eval`` for the
autoencoder and GAN family on tiny settings."""

import json

import pytest
import torch
from PIL import Image

from genfast.cli import main
from genfast.cli.families import discover
from genfast.cli.families.zoo_models import MODELS, build
from genfast.cli.zoo import format_markdown, sample_sheet


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_family_is_discovered():
    families, errors = discover()
    assert "zoo_models" not in errors
    for name in MODELS:
        assert families[name].__name__ == "genfast.cli.families.zoo_models"


def test_zoo_quick_runs_every_own_model(tmp_path, capsys):
    rc = main(["zoo", "--quick", "--no-progress", "--out", str(tmp_path),
               "--only", ",".join(MODELS)])
    out = capsys.readouterr().out
    assert rc == 0, out
    md = (tmp_path / "zoo.md").read_text()
    cols = "model | parameters | training time | samples/s | Frechet digit distance | class coverage | likelihood"
    assert f"| {cols} |" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert len(rows) == len(MODELS) and not any("FAILED" in r for r in rows)
    assert "ELBO" in next(r for r in rows if r.startswith("| vae |"))
    img = Image.open(tmp_path / "zoo_samples.png")
    assert img.size[1] >= len(MODELS) * 32


def test_zoo_unknown_model(capsys):
    assert main(["zoo", "--quick", "--only", "nope"]) == 2
    assert "--only" in capsys.readouterr().err


def test_format_markdown_and_sheet(tmp_path):
    rows = [{"model": "m", "params": 1234, "train_s": 1.0, "steps": 3, "samples_per_s": 10.0, "fdd": 2.5,
             "coverage": [0.5, 0.5], "likelihood": None, "images": torch.zeros(4, 1, 8, 8)},
            {"model": "bad", "error": "ValueError: x"}]
    md = format_markdown(rows)
    assert "| m | 1.2 k | 1.0 s (3 steps) | 10 | 2.5 | 2/2 (min 50%) | - |" in md
    assert "FAILED: ValueError: x" in md
    p = sample_sheet(rows, tmp_path / "s.png", scale=2)
    assert Image.open(p).size[1] == 2 + 16 + 2


def test_build_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build("gan9000", (1, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        build("dcgan", (1, 10, 10))
    with pytest.raises(ValueError, match="glo"):
        build("glo", (1, 8, 8))


@pytest.mark.parametrize("name", ["vae", "cgan"])
def test_train_sample_eval_cli(name, tmp_path, capsys):
    ck = tmp_path / name
    assert main(["train", name, "--steps", "4", "--grid-every", "2", "--out", str(ck), "--no-progress"]) == 0
    assert (ck / "config.json").is_file() and (ck / "model.safetensors").is_file()
    assert (ck / "samples_step000002.png").is_file() and (ck / "samples.png").is_file()
    assert main(["sample", name, "--checkpoint", str(ck), "--n", "8", "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").is_file()
    capsys.readouterr()
    assert main(["eval", name, "--checkpoint", str(ck), "--n", "16", "--json", "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["n"] == 16 and len(r["coverage"]) == 10
    assert ("likelihood" in r) == (name == "vae")
    assert main(["sample", name, "--checkpoint", str(tmp_path / "none")]) == 2
