"""genfast train ldm / genfast sample ldm on tiny settings: the run folder, prompted samples with a
negative prompt, genfast edit (inpainting, img2img), and one-line errors (a word outside the
vocabulary, a bad step count, a DDPM option on a latent model)."""

from __future__ import annotations

import pytest

from genfast.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ldm") / "run"
    rc = main(["train", "ldm", "--steps", "4", "--autoencoder-steps", "2", "--batch-size", "8", "--image-size", "16",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_train_writes_the_run(run):
    for name in ("config.json", "model.safetensors", "metrics.csv", "samples.png"):
        assert (run / name).is_file(), name


def test_sample_with_prompts(run, tmp_path, capsys):
    png = tmp_path / "s.png"
    rc = main(["sample", "ldm", "--checkpoint", str(run), "--prompt", "a thick seven", "--negative-prompt",
               "slanted", "--guidance-scale", "2", "--sampler", "unipc", "--steps", "3", "--n", "4", "--out", str(png),
               "--no-progress"])
    assert rc == 0 and png.is_file()
    assert "unipc" in capsys.readouterr().out


def test_errors_are_one_line(run, tmp_path, capsys):
    rc = main(["sample", "ldm", "--checkpoint", str(run), "--prompt", "a blue seven", "--n", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown word" in err and "blue" in err and len(err.strip().splitlines()) == 1
    rc = main(["train", "ldm", "--steps", "0", "--out", str(tmp_path / "x")])
    assert rc == 2 and "--steps" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["inpaint", "img2img"])
def test_edit(run, tmp_path, capsys, mode):
    png = tmp_path / f"{mode}.png"
    rc = main(["edit", "--checkpoint", str(run), "--mode", mode, "--prompt", "a seven", "--n", "3", "--steps", "3",
               "--out", str(png), "--no-progress"])
    assert rc == 0 and png.is_file()
    from PIL import Image

    rows = 3 if mode == "inpaint" else 2  # inputs, masked inputs (inpainting), results
    assert Image.open(png).size[1] > Image.open(png).size[0] * (rows - 0.5) / 3
    rc = main(["edit", "--checkpoint", str(run), "--class", "3", "--n", "1", "--no-progress"])
    assert rc == 2 and "--class needs a DDPM" in capsys.readouterr().err


def test_demo_stage_quick(tmp_path, capsys):
    rc = main(["demo", "--quick", "--only", "ldm", "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (tmp_path / "ldm_samples.png").is_file()
    for what in ("asked digit shown", "slanted share", "Frechet digit distance", "inpainting"):
        assert what in out, what


def test_sharded_sample_matches_the_grid(run, tmp_path):
    """'genfast sample ldm --num-samples N --out DIR' writes the folder of PNGs and the .npz; chunk
    j is drawn with the seed (seed << 32) + j, so a one-chunk run equals sample(seed=that)."""
    import numpy as np

    from genfast.models._zoo_base import ZooModel
    from genfast.training.sampling import chunk_seed, to_uint8

    out = tmp_path / "s"
    argv = ["sample", "ldm", "--checkpoint", str(run), "--prompt", "a seven", "--steps", "2", "--num-samples", "3",
            "--chunk-size", "3", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    images = np.load(out / "samples.npz")["images"]
    assert images.shape[0] == 3 and len(list((out / "samples").glob("*.png"))) == 3
    model = ZooModel.load(run)
    expected = to_uint8(model.sample(3, prompt="a seven", num_inference_steps=2, seed=chunk_seed(0, 0)))
    assert np.array_equal(images, expected)
