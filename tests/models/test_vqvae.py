"""genfast.models.VQVAE and CodePrior: training reduces the loss, shapes and ranges, save/load,
and the command line (train, train the prior, sample, eval) on tiny settings."""

from __future__ import annotations

import pytest
import torch

from genfast.models import VQVAE, CodePrior

pytestmark = pytest.mark.usefixtures("one_thread")


def _digits(n=256):
    from genfast.data import load_digits

    x, _ = load_digits("train")
    return x[:n]


def test_vqvae_training_reduces_loss_and_shapes():
    torch.manual_seed(0)
    x = _digits()
    model = VQVAE(hidden_channels=8, embedding_dim=4, num_codes=16)
    with torch.no_grad():
        model.train()
        first = model(x[:128])  # k-means initialisation happens here
    info_before = float(first.reconstruction_loss)
    info = model.fit(x, steps=40, batch_size=64, lr=3e-3)
    assert info["steps"] == 40
    with torch.no_grad():
        after = float(model.eval()(x[:128]).reconstruction_loss)
    assert after < 0.8 * info_before
    codes = model.encode(x[:10])
    assert codes.shape == (10, 4, 4) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    imgs = model.decode_indices(codes)
    assert imgs.shape == (10, 1, 8, 8) and imgs.dtype == torch.float32
    assert float(imgs.min()) >= -1.0 and float(imgs.max()) <= 1.0
    out = model(x[:4])
    assert out.reconstruction.shape == (4, 1, 8, 8) and out.indices.shape == (4, 4, 4)


def test_vqvae_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    x = _digits(64)
    model = VQVAE(hidden_channels=8, embedding_dim=4, num_codes=8)
    model.fit(x, steps=2, batch_size=32)
    model.save(tmp_path / "ck", extra={"data": "digits"})
    # the one layout of every family (issue 16, item 5): what save_pretrained writes
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    loaded = VQVAE.load(tmp_path / "ck")
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))
    assert loaded.training_info["extra"] == {"data": "digits"}
    with pytest.raises(FileNotFoundError):
        VQVAE.load(tmp_path / "missing")


@pytest.mark.parametrize("name", ["vqvae", "prior"])
def test_old_layout_is_refused_with_the_way_to_convert(name, tmp_path):
    """A folder of the layout VQVAE.save / CodePrior.save wrote before the one format
    (``vqvae.json`` / ``prior.json`` + ``.safetensors``) is a ValueError naming the file and
    saying how to convert; following those words gives a folder that loads with the same weights."""
    import json

    from safetensors.torch import save_file

    if name == "vqvae":
        klass, model = VQVAE, VQVAE(hidden_channels=4, embedding_dim=2, num_codes=4)
    else:
        klass, model = CodePrior, CodePrior(7, 4, d_model=8, n_layers=1, n_heads=2)
    old = tmp_path / "old"
    old.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(old / f"{name}.safetensors"))
    (old / f"{name}.json").write_text(json.dumps({"config": model.config, "training_info": {"extra": {}}}))
    with pytest.raises(ValueError, match=rf"{name}\.json.*old layout.*model\.safetensors") as err:
        klass.load(old)
    assert str(old / f"{name}.json") in str(err.value)
    from genfast.training import from_pretrained

    with pytest.raises(ValueError, match="old layout"):
        from_pretrained(old)
    # the conversion the message describes
    (old / f"{name}.safetensors").rename(old / "model.safetensors")
    cfg = json.loads((old / f"{name}.json").read_text())["config"]
    (old / "config.json").write_text(json.dumps({"model": klass.__name__, "format_version": 1, "config": cfg}))
    loaded = klass.load(old)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_vqvae_bad_inputs():
    with pytest.raises(ValueError, match="num_codes"):
        VQVAE(num_codes=0)
    model = VQVAE(hidden_channels=4, embedding_dim=2, num_codes=4)
    with pytest.raises(ValueError, match="x"):
        model(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(2, 1, 7, 8))


def test_prior_learns_a_pattern_and_samples():
    torch.manual_seed(2)
    # two deterministic sequences: the prior must put most mass on them after training
    a = torch.arange(6) % 5
    b = (torch.arange(6) * 2) % 5
    codes = torch.stack([a, b] * 64)
    prior = CodePrior(5, 6, d_model=32, n_layers=1, n_heads=2)
    with torch.no_grad():
        start = float(prior.loss(codes))
    info = prior.fit(codes, steps=60, batch_size=32, lr=3e-3)
    assert info["loss"] < 0.5 * start
    s = prior.sample(20, seed=0)
    assert s.shape == (20, 6) and s.dtype == torch.int64
    assert int(s.min()) >= 0 and int(s.max()) < 5
    hits = ((s == a).all(1) | (s == b).all(1)).float().mean()
    assert hits > 0.7
    assert torch.equal(prior.sample(5, seed=3), prior.sample(5, seed=3))
    logits = prior(codes[:3])
    assert logits.shape == (3, 6, 5)


def test_prior_save_load_and_bad_inputs(tmp_path):
    prior = CodePrior(7, 4, d_model=16, n_layers=1, n_heads=2)
    prior.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = CodePrior.load(tmp_path)
    codes = torch.randint(0, 7, (3, 4))
    assert torch.equal(loaded(codes), prior(codes))
    with pytest.raises(ValueError, match="not a CodePrior"):  # a VQ-VAE's folder is not a prior
        CodePrior.load(VQVAE(hidden_channels=4, embedding_dim=2, num_codes=4).save(tmp_path / "vq"))
    with pytest.raises(ValueError, match="d_model"):
        CodePrior(7, 4, d_model=15, n_heads=2)
    with pytest.raises(ValueError, match="codes"):
        prior(torch.randint(0, 7, (3, 5)))
    with pytest.raises(ValueError, match="codes"):
        prior(torch.full((3, 4), 7))
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(2, temperature=0.0)


def test_cli_train_prior_sample_eval(tmp_path, capsys):
    from genfast.cli import main

    out = str(tmp_path / "vq")
    common = ["--no-progress", "--seed", "0"]
    assert main(
        [
            "train",
            "vqvae",
            "--steps",
            "3",
            "--hidden-channels",
            "8",
            "--num-codes",
            "8",
            "--out",
            out,
            *common,
        ]
    ) in (0, None)
    capsys.readouterr()
    assert main(["eval", "vqvae", "--checkpoint", out, "--json", *common]) in (0, None)  # before the prior
    import json

    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= figures["test_reconstruction_mse"] < 4.0 and figures["test_codebook_perplexity"] >= 1.0
    assert main(
        [
            "train",
            "vqvae-prior",
            "--steps",
            "3",
            "--d-model",
            "16",
            "--n-layers",
            "1",
            "--checkpoint",
            out,
            *common,
        ]
    ) in (0, None)
    png = str(tmp_path / "s.png")
    assert main(["sample", "vqvae", "--checkpoint", out, "--n", "4", "--out", png, *common]) in (0, None)
    assert (tmp_path / "s.png").exists()
    text = capsys.readouterr().out
    assert "checkpoint:" in text and "grid:" in text
    assert main(["sample", "vqvae", "--checkpoint", out, "--n", "0", *common]) == 2  # bad --n: an error line
