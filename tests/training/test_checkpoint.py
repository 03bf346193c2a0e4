"""One checkpoint module for every family (issue 16, item 5): save_pretrained / from_pretrained
round trips, and the training state as untrusted input (corrupt, truncated, wrong family)."""

from __future__ import annotations

import json

import pytest
import torch

from genfast.training import from_pretrained, save_pretrained


def _models():
    from genfast.models import DBN, DCGAN, DDPM, MAF, NICE, VAE, VQVAE, BernoulliRBM, CodePrior, Glow, RealNVP
    from genfast.models.rbm import GaussianBernoulliRBM

    rbm = BernoulliRBM(16, 4, seed=3)
    rbm.cd_gradient((torch.rand(5, 16) < 0.5).float(), persistent=True)  # persistent chains [5, 16]
    return {
        "vae": VAE(latent_dim=2, hidden=(8,)),
        "dcgan": DCGAN(latent_dim=4, g_channels=(8, 8, 8), d_channels=(8, 8)),
        "ddpm": DDPM(image_size=8, base_channels=8, channel_mult=(1,), num_heads=1, num_train_timesteps=20),
        "vqvae": VQVAE(hidden_channels=8, embedding_dim=4, num_codes=8),
        "prior": CodePrior(8, 16, d_model=8, n_layers=1, n_heads=2),
        "glow": Glow(num_levels=1, num_steps=1, hidden=8),
        "realnvp": RealNVP(num_scales=1, hidden=8),
        "nice": NICE(num_layers=2, hidden=8, prior="gaussian"),
        "maf": MAF(num_layers=1, hidden=(8,)),
        "rbm": rbm,
        "grbm": GaussianBernoulliRBM(6, 3, sigma=0.5, seed=1),
        "dbn": DBN([16, 6, 3], seed=2),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_round_trip_every_family(name, tmp_path):
    model = _models()[name]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    save_pretrained(model, tmp_path / "ck", extra={"data": "digits"})
    record = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert record["model"] == type(model).__name__
    loaded = from_pretrained(tmp_path / "ck")
    assert type(loaded) is type(model) and loaded.training_info["extra"] == {"data": "digits"}
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_wrong_family_and_corrupt_files(tmp_path):
    from genfast.models import DDPM, VAE

    save_pretrained(VAE(latent_dim=2, hidden=(8,)), tmp_path / "vae")
    with pytest.raises(ValueError, match=r"config\.json.*'model'.*not a DDPM"):
        from_pretrained(tmp_path / "vae", expect=DDPM)
    (tmp_path / "vae" / "config.json").write_text('{"model": "Nope", "config": {}}')
    with pytest.raises(ValueError, match=r"config\.json: key 'model'"):
        from_pretrained(tmp_path / "vae")
    with pytest.raises(FileNotFoundError):
        from_pretrained(tmp_path / "missing")


def _interrupted_run(out):
    from genfast.data import load_digits
    from genfast.models import DCGAN

    x, _ = load_digits("train")

    def stop(step, _):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        DCGAN(latent_dim=4, g_channels=(8, 8, 8), d_channels=(8, 8)).fit(x[:64], steps=6, batch_size=16,
                                                                          out_dir=out, callback=stop)
    return x[:64]


def _resume(x, out, make=None):
    from genfast.models import DCGAN

    model = make() if make else DCGAN(latent_dim=4, g_channels=(8, 8, 8), d_channels=(8, 8))
    return model.fit(x, steps=6, batch_size=16, out_dir=out, resume=True)


@pytest.mark.parametrize("damage,match", [
    ("truncate_state", r"training_state\.safetensors.*corrupt"),
    ("garbage_json", r"training_state\.json.*not JSON"),
    ("family", r"training_state\.json: key 'family'"),
    ("step", r"training_state\.json: key 'step'"),
    ("batch_size", r"training_state\.json: key 'batch_size'"),
    ("optimizer_groups", r"training_state\.json: key 'optimizers\.d_optimizer"),
    ("nan_moment", r"training_state\.safetensors: key 'optim\.g_optimizer\.0\.exp_avg'.*NaN"),
    ("truncate_weights", r"model\.safetensors"),
])
def test_damaged_training_state_is_a_value_error_naming_file_and_key(damage, match, tmp_path):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "run"
    x = _interrupted_run(out)
    ck = out / "checkpoint"
    js, st = ck / "training_state.json", ck / "training_state.safetensors"
    meta = json.loads(js.read_text())
    if damage == "truncate_state":
        st.write_bytes(st.read_bytes()[:100])
    elif damage == "truncate_weights":
        w = ck / "model.safetensors"
        w.write_bytes(w.read_bytes()[:-50])
    elif damage == "garbage_json":
        js.write_text("{not json")
    elif damage == "nan_moment":
        t = load_file(str(st))
        t["optim.g_optimizer.0.exp_avg"].fill_(float("nan"))
        save_file(t, str(st))
    else:
        if damage == "family":
            meta["family"] = "VAE"
        elif damage == "step":
            meta["step"] = -1
        elif damage == "batch_size":
            meta["batch_size"] = 32
        elif damage == "optimizer_groups":
            meta["optimizers"]["d_optimizer"]["param_groups"] = "x"
        js.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=match):
        _resume(x, out)


def test_resume_with_another_family_names_both(tmp_path):
    from genfast.models import VAE

    out = tmp_path / "run"
    x = _interrupted_run(out)
    with pytest.raises(ValueError, match=r"key 'family'.*'DCGAN', not a VAE"):
        _resume(x, out, make=lambda: VAE(latent_dim=2, hidden=(8,)))
