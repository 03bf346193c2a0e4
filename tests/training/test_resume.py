"""Kill and resume (issue 16, item 5): a run stopped at step 20 (Ctrl-C or SIGTERM) and resumed
from its checkpoint gives exactly the losses of the uninterrupted run for the next 20 steps, for
every family's training code: the optimisers, the EMA, the data position, the RNG states and the
family's own state (step counts, the RBM's Philox counter and momentum) are all restored."""

from __future__ import annotations

import os
import signal

import pytest
import torch

pytestmark = pytest.mark.usefixtures("flush_denormal")

STOP, TOTAL = 20, 40


@pytest.fixture(scope="module")
def digits():
    from genfast.data import load_digits

    x, y = load_digits("train")
    return x[:96], y[:96]


def _ddpm():
    from genfast.models import DDPM

    return DDPM(image_size=8, base_channels=8, channel_mult=(1,), num_res_blocks=1, num_heads=1,
                num_train_timesteps=50, num_classes=10)


def _dcgan():
    from genfast.models import DCGAN

    return DCGAN(latent_dim=4, g_channels=(8, 8, 8), d_channels=(8, 8))


def _wgan():
    from genfast.models import WGANGP

    return WGANGP(latent_dim=4, g_channels=(8, 8, 8), d_channels=(8, 8), n_critic=3)


def _vqvae():
    from genfast.models import VQVAE

    return VQVAE(hidden_channels=8, embedding_dim=4, num_codes=8, num_res_blocks=0)


def _nice():
    from genfast.models import NICE

    return NICE(num_layers=2, hidden=16)


def _rbm():
    from genfast.models import BernoulliRBM

    return BernoulliRBM(64, 12, seed=2)


def _fit(name, model, data, labels, **kw):
    """Train ``model`` of family ``name`` through its documented fit; ``kw`` goes to the engine."""
    if name == "ddpm":
        return model.fit(data, labels, steps=TOTAL, batch_size=16, warmup_steps=5, progress=False, **kw)
    if name in ("dcgan", "wgan"):
        return model.fit(data, steps=TOTAL, batch_size=16, **kw)
    if name == "vqvae":
        return model.fit(data, steps=TOTAL, batch_size=16, **kw)
    if name == "nice":
        from genfast.models import fit_flow

        return fit_flow(model, data, num_bins=17, steps=TOTAL, batch_size=16, **kw)
    if name in ("rbm", "rbm_ema"):  # rbm_ema: the averaged parameters are part of the training state
        v = (data.reshape(len(data), -1) > 0).float()
        ema = {"ema_decay": 0.9} if name == "rbm_ema" else {}
        return model.fit(v, epochs=7, batch_size=16, lr=0.1, k=1, persistent=True, **ema, **kw)  # 42 steps
    raise AssertionError(name)


FAMILIES = {"ddpm": _ddpm, "dcgan": _dcgan, "wgan": _wgan, "vqvae": _vqvae, "nice": _nice, "rbm": _rbm,
            "rbm_ema": _rbm}


def _losses(name, make, digits, out=None, stop=None, how="ctrl-c", resume=False):
    x, y = digits
    seen = []

    def cb(step, losses):
        seen.append(dict(losses) if isinstance(losses, dict) else {"loss": float(losses)})
        if stop is not None and step == stop:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise KeyboardInterrupt

    torch.manual_seed(0)
    model = make()
    kw = {"callback": cb}
    if out is not None:
        kw.update(out_dir=out, resume=resume)
    try:
        _fit(name, model, x, y, **kw)
    except KeyboardInterrupt:
        assert stop is not None
    return seen, model


@pytest.mark.parametrize("name", list(FAMILIES))
def test_resume_continues_with_the_same_losses(name, digits, tmp_path):
    make = FAMILIES[name]
    full, ref = _losses(name, make, digits)
    if name.startswith("rbm"):
        assert len(full) == 42  # 7 epochs of 6 batches
    else:
        assert len(full) == TOTAL
    how = "sigterm" if name in ("dcgan", "rbm", "rbm_ema") else "ctrl-c"
    first, _ = _losses(name, make, digits, out=tmp_path / "run", stop=STOP, how=how)
    assert len(first) == STOP if how == "ctrl-c" else len(first) in (STOP, STOP + 1)
    assert (tmp_path / "run" / "checkpoint" / "training_state.json").is_file()
    done = len(first)
    rest, model = _losses(name, make, digits, out=tmp_path / "run", resume=True)
    assert len(rest) == len(full) - done >= 20
    assert rest == full[done:]  # exactly equal, every named loss of every step
    for (k, a), (k2, b) in zip(ref.state_dict().items(), model.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_existing_run_needs_resume_or_overwrite(digits, tmp_path):
    from genfast.models import DCGAN

    x, _ = digits
    out = tmp_path / "run"
    DCGAN(latent_dim=4, g_channels=(8, 8, 8), d_channels=(8, 8)).fit(x, steps=2, batch_size=16, out_dir=out)
    assert (out / "metrics.csv").is_file() and (out / "loss.png").is_file()
    with pytest.raises(ValueError, match="resume.*overwrite"):
        DCGAN(latent_dim=4, g_channels=(8, 8, 8), d_channels=(8, 8)).fit(x, steps=2, batch_size=16, out_dir=out)
    DCGAN(latent_dim=4, g_channels=(8, 8, 8), d_channels=(8, 8)).fit(x, steps=3, batch_size=16, out_dir=out,
                                                                      overwrite=True)
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 4  # the old run's rows are gone
    with pytest.raises(ValueError, match="resume"):
        DCGAN().fit(x, steps=2, out_dir=tmp_path / "empty", resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        DCGAN().fit(x, steps=2, out_dir=tmp_path / "file")


def test_save_every_writes_checkpoints(digits, tmp_path):
    from genfast.models import VAE
    from genfast.training import from_pretrained

    x, _ = digits
    seen = []

    def cb(step, losses):
        if step == 5:
            seen.append(sorted(p.name for p in (tmp_path / "run" / "checkpoint").iterdir()))

    VAE(latent_dim=2, hidden=(16,)).fit(x, steps=7, batch_size=16, out_dir=tmp_path / "run", save_every=5,
                                        callback=cb)
    assert seen == [["config.json", "model.safetensors", "training_state.json", "training_state.safetensors"]]
    m = from_pretrained(tmp_path / "run" / "checkpoint")
    assert type(m).__name__ == "VAE" and m.step_count == 7


def test_metrics_rows_after_the_checkpoint_are_dropped_on_resume(digits, tmp_path):
    """A process killed outright (SIGKILL) may have flushed metrics.csv rows after its last
    checkpoint; the resumed run replaces them instead of repeating those steps."""
    import csv

    from genfast.models import VAE

    x, _ = digits
    out = tmp_path / "run"
    VAE(latent_dim=2, hidden=(8,)).fit(x, steps=3, batch_size=16, out_dir=out)
    with (out / "metrics.csv").open("a") as f:
        f.write("4,9.0\n5,9.0\n")  # rows of steps the checkpoint does not hold
    VAE(latent_dim=2, hidden=(8,)).fit(x, steps=6, batch_size=16, out_dir=out, resume=True)
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(float(r["loss"]) != 9.0 for r in rows)
