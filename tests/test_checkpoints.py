"""Checkpoints as untrusted input (issue 14, fault 9 and item 6) and the new-user faults of
fault 11: every bad config or weights file is a ValueError naming the file and the key, found
before anything is allocated, and ``genfast`` prints one line and exits with status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genfast.cli import main


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """One small, untrained checkpoint of each family, all in the one layout (config.json +
    model.safetensors): DDPM, VAE (autoencoders/GANs), Glow (flows), RBM, VQ-VAE."""
    from genfast.cli.families import flows
    from genfast.models import DDPM, VAE, VQVAE, BernoulliRBM
    from genfast.training import save_pretrained

    root = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    DDPM(image_size=8, base_channels=8, num_classes=10).save(root / "ddpm")
    VAE(image_shape=(1, 8, 8), latent_dim=4).save(root / "vae")
    cfg = {"levels": 1, "steps_per_level": 1, "layers": 5, "hidden": 8, "backend": "auto"}
    save_pretrained(flows.build("glow", (1, 8, 8), cfg), root / "glow", extra={"data": "digits", "num_bins": 17})
    save_pretrained(BernoulliRBM(64, 5, seed=0), root / "rbm", extra={"data": "digits", "image_shape": [1, 8, 8]})
    save_pretrained(VQVAE(), root / "vqvae")
    return root


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _edit_config(folder: Path, name: str, edit) -> None:
    p = folder / name
    record = json.loads(p.read_text())
    edit(record)
    p.write_text(json.dumps(record))


def _cli_error(argv, capsys) -> str:
    """Run ``genfast argv``: it must exit with status 2 and print exactly one error line."""
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("genfast: error:"), err
    return lines[0]


def _sample_ddpm(folder, tmp_path):
    return ["sample", "ddpm", "--checkpoint", str(folder), "--n", "1", "--steps", "2", "--out",
            str(tmp_path / "g.png"), "--no-progress"]


DDPM_EDITS = [
    # (what, edit of the record, the key the message must name)
    ("missing config", lambda r: r.pop("config"), "config"),
    ("num_heads 0", lambda r: r["config"].update(num_heads=0), "config.num_heads"),
    ("string width", lambda r: r["config"].update(base_channels="8"), "config.base_channels"),
    ("huge width", lambda r: r["config"].update(base_channels=200000), "config"),
    ("huge image", lambda r: r["config"].update(image_size=[60000, 60000]), "config.image_size"),
    ("unknown key", lambda r: r["config"].update(bogus=1), "config.bogus"),
    ("NaN rate", lambda r: r["config"].update(ema_decay=float("nan")), "config.ema_decay"),
    ("bad schedule", lambda r: r["config"].update(beta_schedule="exp"), "config.beta_schedule"),
    ("not an object", lambda r: r["config"].update(channel_mult={"a": 1}), "config.channel_mult"),
]


@pytest.mark.parametrize("what, edit, key", DDPM_EDITS, ids=[e[0] for e in DDPM_EDITS])
def test_bad_ddpm_config_is_one_line_naming_file_and_key(ckpts, tmp_path, capsys, what, edit, key):
    """Issue 14, fault 9: a missing key gave KeyError, num_heads 0 ZeroDivisionError, widths like
    200000 and image sizes like [60000, 60000] tried to allocate, and type errors did not name
    the file; each is now one line naming config.json and the key, before any allocation."""
    folder = _copy(ckpts / "ddpm", tmp_path / "ck")
    _edit_config(folder, "config.json", edit)
    line = _cli_error(_sample_ddpm(folder, tmp_path), capsys)
    assert "config.json" in line and repr(key)[1:-1] in line, line
    assert not (tmp_path / "g.png").exists()
    from genfast.models import DDPM

    with pytest.raises(ValueError, match="config.json"):
        DDPM.load(folder)


def test_deeply_nested_json(ckpts, tmp_path, capsys):
    """Issue 14, fault 9: deeply nested JSON raised RecursionError through ``genfast sample``."""
    folder = _copy(ckpts / "ddpm", tmp_path / "ck")
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "config.json" in _cli_error(_sample_ddpm(folder, tmp_path), capsys)
    (folder / "config.json").write_text('{"model": "DDPM", "config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "config.json" in _cli_error(_sample_ddpm(folder, tmp_path), capsys)


def test_nan_weights_are_refused(ckpts, tmp_path, capsys):
    """Issue 14, fault 9: NaN weights loaded, and ``genfast sample`` exited 0 after writing a
    grid of NaN images."""
    from safetensors.torch import load_file, save_file

    folder = _copy(ckpts / "ddpm", tmp_path / "ck")
    state = load_file(str(folder / "model.safetensors"))
    name = sorted(k for k in state if k.startswith("ema."))[0]
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    line = _cli_error(_sample_ddpm(folder, tmp_path), capsys)
    assert "model.safetensors" in line and name in line and "NaN" in line
    assert not (tmp_path / "g.png").exists()


def test_weights_that_do_not_fit_the_config(ckpts, tmp_path, capsys):
    """The safetensors header (names and shapes) is checked against the config before any data
    is read: a wrong shape or a missing tensor names the tensor."""
    from safetensors.torch import load_file, save_file

    folder = _copy(ckpts / "vae", tmp_path / "ck")
    state = load_file(str(folder / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = torch.zeros(3, 3)
    save_file(state, str(folder / "model.safetensors"))
    line = _cli_error(["sample", "vae", "--checkpoint", str(folder), "--n", "1", "--no-progress"], capsys)
    assert "model.safetensors" in line and name in line
    del state[name]
    save_file(state, str(folder / "model.safetensors"))
    assert name in _cli_error(["sample", "vae", "--checkpoint", str(folder), "--n", "1", "--no-progress"], capsys)


@pytest.mark.parametrize("fmt, argv_of", [
    ("glow", lambda f, o: ["sample", "glow", "--checkpoint", str(f), "--n", "1", "--out", o]),
    ("vae", lambda f, o: ["sample", "vae", "--checkpoint", str(f), "--n", "1", "--out", o]),
    ("vqvae", lambda f, o: ["eval", "vqvae", "--checkpoint", str(f)]),
    ("rbm", lambda f, o: ["sample", "rbm", "--checkpoint", str(f), "--n", "1", "--k", "2", "--out", o]),
])
def test_every_format_checks_its_config(ckpts, tmp_path, capsys, fmt, argv_of):
    """Issue 14, item 6, and issue 16, item 5: every family's checkpoint (zoo models, flows, RBM,
    VQ-VAE) is the one layout and goes through the one schema: a missing or mistyped key names
    the file and the key."""
    folder = _copy(ckpts / fmt, tmp_path / "ck")
    out = str(tmp_path / "g.png")
    key = {"glow": "config.num_levels", "vae": "config.latent_dim", "vqvae": "config.num_codes",
           "rbm": "config.n_hidden"}[fmt]
    value = {"glow": "2", "vae": -3, "vqvae": "64", "rbm": 0}[fmt]
    _edit_config(folder, "config.json", lambda r: r["config"].update({key.split(".")[1]: value}))
    line = _cli_error([*argv_of(folder, out), "--no-progress"], capsys)
    assert "config.json" in line and key in line, line
    assert not Path(out).exists()
    (folder / "config.json").unlink()  # a truncated checkpoint: the missing file is named
    assert "config.json" in _cli_error([*argv_of(folder, out), "--no-progress"], capsys)


@pytest.mark.parametrize("fmt", ["glow", "rbm", "vqvae"])
def test_corrupt_weights_name_the_file(ckpts, tmp_path, fmt):
    """Issue 16, item 5: a corrupt or truncated model.safetensors of a flow, an RBM or a VQ-VAE
    is a ValueError naming the file, through the family's loader and from_pretrained alike."""
    from genfast.cli.families import flows, rbm, vqvae
    from genfast.training import from_pretrained

    folder = _copy(ckpts / fmt, tmp_path / "ck")
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[: len(w.read_bytes()) // 2])
    load = {"glow": lambda: flows.load(folder, "cpu", "glow"), "rbm": lambda: rbm.load(folder, "cpu", "rbm"),
            "vqvae": lambda: vqvae.load(folder, "cpu")}[fmt]
    for fn in (load, lambda: from_pretrained(folder)):
        with pytest.raises(ValueError, match="model.safetensors"):
            fn()


def test_checkpoint_of_another_family_names_both(ckpts, tmp_path, capsys):
    """Issue 14, fault 11: ``genfast sample glow --checkpoint <a VAE folder>`` printed a
    KeyError: 'name' traceback, and ``genfast sample dcgan --checkpoint <a VAE folder>`` sampled
    the VAE silently and overwrote its grid. Both now name the two families."""
    vae = _copy(ckpts / "vae", tmp_path / "vae")
    for argv, wanted in ((["sample", "glow", "--checkpoint", str(vae)], "glow"),
                         (["sample", "dcgan", "--checkpoint", str(vae)], "dcgan"),
                         (["sample", "ddpm", "--checkpoint", str(vae), "--steps", "2"], "ddpm"),
                         (["sample", "rbm", "--checkpoint", str(vae)], "rbm"),
                         (["eval", "rbm", "--checkpoint", str(vae)], "rbm"),
                         (["sample", "vqvae", "--checkpoint", str(vae)], "vqvae"),
                         (["eval", "vqvae", "--checkpoint", str(vae)], "vqvae")):
        line = _cli_error([*argv, "--n", "1", "--no-progress"] if argv[0] == "sample" else [*argv, "--no-progress"],
                          capsys)
        assert "VAE" in line and wanted in line, line
    assert not any(p.suffix == ".png" for p in vae.iterdir())
    line = _cli_error(["sample", "vae", "--checkpoint", str(ckpts / "glow"), "--n", "1", "--no-progress"], capsys)
    assert "glow" in line and "vae" in line
    line = _cli_error(["sample", "glow", "--checkpoint", str(ckpts / "rbm"), "--n", "1", "--no-progress"], capsys)
    assert "RBM" in line and "glow" in line


def test_size_limit_is_computed_before_allocating(ckpts, tmp_path, monkeypatch):
    """The model's size comes from a build on the meta device; above the limit nothing is
    allocated (GENFAST_MAX_CHECKPOINT_BYTES lowers it here to a few bytes)."""
    from genfast.models import DDPM

    monkeypatch.setenv("GENFAST_MAX_CHECKPOINT_BYTES", "1000")
    with pytest.raises(ValueError, match="GiB"):
        DDPM.load(ckpts / "ddpm")
    monkeypatch.delenv("GENFAST_MAX_CHECKPOINT_BYTES")
    assert DDPM.load(ckpts / "ddpm").config["base_channels"] == 8


def test_round_trips_still_load(ckpts):
    """The checks accept every checkpoint genfast writes."""
    from genfast.cli.families import flows, rbm, vqvae
    from genfast.models import DDPM, VAE, VQVAE

    DDPM.load(ckpts / "ddpm")
    VAE.load(ckpts / "vae")
    VQVAE.load(ckpts / "vqvae")
    assert flows.load(ckpts / "glow", "cpu", "glow")[1]["num_bins"] == 17
    assert rbm.load(ckpts / "rbm", "cpu", "rbm")[1]["image_shape"] == (1, 8, 8)
    assert isinstance(vqvae.load(ckpts / "vqvae", "cpu")[0], VQVAE)


def test_old_vqvae_layout_is_one_line_saying_how_to_convert(ckpts, tmp_path, capsys):
    """Issue 16, item 5: the VQ-VAE's own format (vqvae.json + vqvae.safetensors) is gone; a
    folder in it is refused with the file named and the conversion spelled out."""
    old = _copy(ckpts / "vqvae", tmp_path / "old")
    (old / "model.safetensors").rename(old / "vqvae.safetensors")
    (old / "config.json").rename(old / "vqvae.json")
    for argv in (["sample", "vqvae", "--checkpoint", str(old), "--n", "1", "--out", str(tmp_path / "s.png")],
                 ["eval", "vqvae", "--checkpoint", str(old)]):
        line = _cli_error([*argv, "--no-progress"], capsys)
        assert str(old / "vqvae.json") in line and "old layout" in line and "model.safetensors" in line, line


# ----------------------------------------------------------------- fault 11: new users
def test_models_refuse_images_outside_minus_one_one():
    """Issue 14, fault 11: DDPM.fit and VAE.training_step accepted uint8 or [0, 255] images
    although the models expect [-1, 1]; they now raise, naming the range (no silent rescale:
    the caller knows which scale their data has)."""
    from genfast.models import DDPM, VAE

    gen = torch.Generator().manual_seed(0)
    images255 = torch.randint(0, 256, (8, 1, 8, 8), generator=gen)
    ddpm = DDPM(image_size=8, base_channels=8)
    with pytest.raises((TypeError, ValueError), match=r"\[-1, 1\]"):
        ddpm.fit(images255.to(torch.uint8), steps=1)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ddpm.fit(images255.float(), steps=1)
    vae = VAE(image_shape=(1, 8, 8), latent_dim=4)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        vae.training_step(images255.float())
    with pytest.raises(TypeError, match=r"\[-1, 1\]"):
        vae.training_step(images255.to(torch.uint8))
    nan = torch.zeros(8, 1, 8, 8)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        vae.training_step(nan)
    vae.training_step(images255.float() / 127.5 - 1)  # the documented scale works


def test_demo_only_empty_is_an_error(tmp_path, capsys):
    """Issue 14, fault 11: ``genfast demo --only ""`` ran every stage."""
    line = _cli_error(["demo", "--only", "", "--out", str(tmp_path), "--no-progress"], capsys)
    assert "--only" in line
    _cli_error(["demo", "--only", " , ", "--out", str(tmp_path), "--no-progress"], capsys)


# ----------------------------------------------------------------- issue 16, item 5: one layout
@pytest.mark.parametrize("argv, klass", [
    (["train", "glow", "--steps", "2", "--levels", "1", "--steps-per-level", "1", "--hidden", "8"], "Glow"),
    (["train", "maf", "--steps", "2", "--layers", "1", "--hidden", "8"], "MAF"),
    (["train", "rbm", "--epochs", "1", "--hidden", "8"], "BernoulliRBM"),
    (["train", "dbn", "--epochs", "1", "--hidden", "8,4"], "DBN"),
    (["train", "vqvae", "--steps", "2", "--hidden-channels", "8"], "VQVAE"),
], ids=["glow", "maf", "rbm", "dbn", "vqvae"])
def test_cli_trained_models_load_with_from_pretrained(argv, klass, tmp_path):
    """A flow, an RBM, a DBN and a VQ-VAE (and its prior) trained by the command line are
    config.json + model.safetensors folders that genfast.training.from_pretrained loads alone,
    with the same weights as the command line's own loader."""
    import genfast.models as gm
    from genfast.training import from_pretrained

    out = tmp_path / "run"
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    model = from_pretrained(out)
    assert type(model) is getattr(gm, klass)
    assert model.training_info["extra"]["name"] == argv[1]
    if klass == "VQVAE":
        assert main(["train", "vqvae-prior", "--checkpoint", str(out), "--steps", "2", "--d-model", "16",
                     "--no-progress"]) == 0
        prior = from_pretrained(out / "prior")
        assert type(prior) is gm.CodePrior and prior.training_info["extra"]["grid"] == [4, 4]
        # --seed decides the prior's initial weights too: the same command gives the same prior
        assert main(["train", "vqvae-prior", "--checkpoint", str(out), "--steps", "2", "--d-model", "16",
                     "--overwrite", "--no-progress"]) == 0
        again = from_pretrained(out / "prior").state_dict()
        assert all(torch.equal(v, again[k]) for k, v in prior.state_dict().items())
        return
    from genfast.cli.families import flows, rbm

    family = flows if klass in ("Glow", "MAF") else rbm
    again, _ = family.load(out, "cpu", argv[1])
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_mode_seeking_weight(tmp_path, capsys):
    """``--mode-seeking-weight`` reaches the conditional GANs' constructor and is refused elsewhere."""
    from genfast.training import from_pretrained

    out = tmp_path / "ac"
    assert main(["train", "acgan", "--steps", "2", "--mode-seeking-weight", "0", "--out", str(out),
                 "--no-progress", "--grid-every", "0"]) == 0
    assert from_pretrained(out).mode_seeking_weight == 0.0
    line = _cli_error(["train", "vae", "--steps", "2", "--mode-seeking-weight", "0.1", "--out", str(tmp_path / "v"),
                       "--no-progress"], capsys)
    assert "--mode-seeking-weight" in line
    line = _cli_error(["train", "cgan", "--steps", "2", "--mode-seeking-weight", "-1", "--out", str(tmp_path / "c"),
                       "--no-progress"], capsys)
    assert "--mode-seeking-weight must be >= 0" in line
