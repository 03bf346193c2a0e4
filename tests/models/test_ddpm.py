"""DDPM: training reduces the loss, sampling gives the right shape/dtype/range through the fused
samplers, classifier-free guidance and the negative class run, checkpoints round-trip."""

import json
import subprocess
import sys

import pytest
import torch

from genfast.models.ddpm import DDPM


def _tiny(**kw):
    torch.manual_seed(0)
    kw.setdefault("base_channels", 8)
    kw.setdefault("num_classes", 10)
    return DDPM(image_size=8, **kw)


def test_training_reduces_the_loss(digits):
    x, y = digits
    model = _tiny()
    xb, yb = x[:256], y[:256]

    def held_out_loss():
        g = torch.Generator().manual_seed(123)  # same t, noise and label dropout each time
        with torch.no_grad():
            return float(sum(model.loss(xb[i : i + 128], yb[i : i + 128], generator=g) for i in (0, 128)) / 2)

    before = held_out_loss()
    info = model.fit(xb, yb, steps=40, batch_size=64, lr=3e-3, warmup_steps=5, progress=False)
    after = held_out_loss()
    assert info["steps"] == 40 and len(info["losses"]) == 40
    assert after < 0.8 * before, (before, after)
    assert model.ema_updates == 40
    # the EMA weights moved off their initial copy but are not the trained weights
    diff = [(e - p).abs().max() for e, p in zip(model.ema.parameters(), model.unet.parameters())]
    assert max(diff) > 0


@pytest.mark.parametrize("sampler, steps", [("ddpm", 8), ("ddim", 4)])
def test_sampling_shape_dtype_range_and_seed(sampler, steps):
    model = _tiny()
    a = model.sample(6, sampler=sampler, num_inference_steps=steps, seed=3)
    assert a.shape == (6, 1, 8, 8) and a.dtype == torch.float32
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0 and torch.isfinite(a).all()
    b = model.sample(6, sampler=sampler, num_inference_steps=steps, seed=3)
    assert torch.equal(a, b)
    c = model.sample(6, sampler=sampler, num_inference_steps=steps, seed=4)
    assert not torch.equal(a, c)
    assert model.sample(5, sampler=sampler, num_inference_steps=steps, seed=3, batch_size=2).shape == (
        5,
        1,
        8,
        8,
    )



@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_training_schedule_is_the_samplers(schedule):
    """The loss uses the model's own alphas_cumprod (so that training does not import
    diffusers); it must be exactly the one its sampler steps with."""
    kw = dict(beta_start=0.00085, beta_end=0.012) if schedule == "scaled_linear" else {}
    model = _tiny(beta_schedule=schedule, num_train_timesteps=300, **kw)
    for sampler in ("ddpm", "ddim"):
        assert torch.equal(model.alphas_cumprod, model.make_scheduler(sampler).alphas_cumprod)


def test_training_does_not_import_diffusers():
    code = (
        "import sys, torch\n"
        "from genfast.models.ddpm import DDPM\n"
        "m = DDPM(image_size=8, base_channels=8)\n"
        "m.loss(torch.zeros(2, 1, 8, 8), generator=torch.Generator().manual_seed(0)).backward()\n"
        "print('diffusers' in sys.modules)\n"
        "m.sample(1, sampler='ddim', num_inference_steps=2)\n"
        "print('diffusers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr


def test_ddim_backends_agree():
    # eta = 0: no noise, so the fused CPU op and the pure-PyTorch reference must agree
    model = _tiny()
    a = model.sample(4, sampler="ddim", num_inference_steps=5, backend="cpu")
    b = model.sample(4, sampler="ddim", num_inference_steps=5, backend="reference")
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_guidance_and_negative_class(digits):
    x, y = digits
    model = _tiny()
    model.fit(x[:64], y[:64], steps=2, progress=False)
    labels = torch.arange(10)
    g = model.sample(10, sampler="ddim", num_inference_steps=3, class_labels=labels, guidance_scale=2.0)
    assert g.shape == (10, 1, 8, 8)
    n = model.sample(4, sampler="ddpm", num_inference_steps=3, negative_class=0, guidance_scale=3.0)
    assert n.shape == (4, 1, 8, 8) and torch.isfinite(n).all()
    c = model.sample(4, sampler="ddim", num_inference_steps=3, class_labels=7)
    assert not torch.equal(c, model.sample(4, sampler="ddim", num_inference_steps=3, class_labels=2))


def test_unconditional_model(digits):
    x, _ = digits
    model = _tiny(num_classes=None)
    model.fit(x[:32], steps=2, batch_size=16, progress=False)
    assert model.sample(3, sampler="ddim", num_inference_steps=2).shape == (3, 1, 8, 8)
    with pytest.raises(ValueError, match="class_labels"):
        model.sample(3, class_labels=1)
    with pytest.raises(ValueError, match="guidance_scale"):
        model.sample(3, guidance_scale=2.0)


def test_checkpoint_round_trip(tmp_path, digits):
    x, y = digits
    model = _tiny(beta_schedule="squaredcos_cap_v2", channel_mult=(1, 2, 2))
    model.fit(x[:64], y[:64], steps=3, batch_size=32, progress=False)
    out = model.save(tmp_path / "ck", extra={"data": "digits"})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    record = json.loads((out / "config.json").read_text())
    assert record["model"] == "DDPM" and record["config"]["channel_mult"] == [1, 2, 2]
    loaded = DDPM.load(out, device="cpu")  # .to() must reach every submodule
    assert loaded.config == model.config and loaded.ema_updates == 3
    assert loaded.training_info["extra"] == {"data": "digits"}
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    kw = dict(sampler="ddim", num_inference_steps=3, seed=1)
    assert torch.equal(model.sample(4, **kw), loaded.sample(4, **kw))


def test_checkpoint_errors(tmp_path):
    model = _tiny()
    out = model.save(tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match="missing"):
        DDPM.load(tmp_path / "missing")
    (out / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        DDPM.load(out)
    (out / "config.json").write_text(json.dumps({"model": "VQVAE"}))
    with pytest.raises(ValueError, match="not a DDPM"):
        DDPM.load(out)
    model.save(out)
    (out / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="model.safetensors"):
        DDPM.load(out)
    other = _tiny(base_channels=16)
    other.save(tmp_path / "other")
    model.save(out)
    (out / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="do not match"):
        DDPM.load(out)
    (out / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        DDPM.load(out)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"sampler": "euler"}, ValueError, "sampler"),
        ({"num_inference_steps": 0}, ValueError, "num_inference_steps"),
        ({"num_inference_steps": 2000}, ValueError, "num_inference_steps"),
        ({"class_labels": 10}, ValueError, "class_labels"),
        ({"class_labels": torch.zeros(3)}, TypeError, "class_labels"),
        ({"class_labels": torch.zeros(5, dtype=torch.long)}, ValueError, "class_labels"),
        ({"negative_class": -1, "guidance_scale": 2.0}, ValueError, "negative_class"),
        ({"guidance_scale": float("nan"), "class_labels": 1}, ValueError, "guidance_scale"),
        ({"n": 0}, ValueError, "n must"),
    ],
)
def test_sample_bad_args(kwargs, exc, match):
    model = _tiny()
    kwargs = {"n": 3, **kwargs}
    with pytest.raises(exc, match=match):
        model.sample(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 7, "channel_mult": (1, 2)}, "divisible"),
        ({"channel_mult": ()}, "channel_mult"),
        ({"class_dropout": 1.0}, "class_dropout"),
        ({"beta_schedule": "cubic"}, "beta_schedule"),
        ({"ema_decay": 1.0}, "ema_decay"),
    ],
)
def test_constructor_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDPM(**kwargs)


def test_fit_bad_args(digits):
    x, y = digits
    model = _tiny()
    with pytest.raises(ValueError, match="steps or time_budget_s"):
        model.fit(x, y)
    with pytest.raises(ValueError, match="labels are required"):
        model.fit(x, steps=1)
    with pytest.raises(ValueError, match="images"):
        model.fit(x[:, :, :4], y, steps=1)
    with pytest.raises(ValueError, match="x0"):
        model.loss(torch.zeros(2, 3, 8, 8))


class _LabelNet(torch.nn.Module):
    """A stand-in noise predictor whose output depends on the label by value: eps = 0.1 x +
    v[label], or, with ``guided=(w, uncond_label)``, the guided output a correct classifier-free
    guidance forms from two such calls, 0.1 x + v[u] + w (v[label] - v[u])."""

    def __init__(self, values, guided=None):
        super().__init__()
        self.values = values
        self.guided = guided

    def forward(self, x, t, labels):
        v = self.values[labels].reshape(-1, 1, 1, 1)
        if self.guided is not None:
            w, u = self.guided
            v = self.values[u] + w * (v - self.values[u])
        return 0.1 * x + v


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_guidance_branches_on_values(sampler):
    """Issue 14, item 12: swapping the conditional and unconditional outputs of the DDPM model
    passed every model, CLI and zoo test (they checked shapes and finiteness). Here the noise
    predictor is a stand-in with label-dependent values, and the guided samples must equal an
    unguided run of a predictor that returns the correctly guided noise, for the null label
    and for a negative class; a swap of the branches (or of w and 1 - w) fails."""
    model = _tiny(num_classes=10)
    values = torch.linspace(-0.6, 0.9, 11)  # one value per class and the null label (10)
    kw = dict(sampler=sampler, num_inference_steps=4, seed=3, backend="reference")
    labels = torch.tensor([1, 4, 7, 2])
    for w, negative in ((3.0, None), (2.5, 6), (0.0, None)):
        model.ema = _LabelNet(values)
        got = model.sample(4, class_labels=labels, guidance_scale=w, negative_class=negative, **kw)
        u = 10 if negative is None else negative
        model.ema = _LabelNet(values, guided=(w, u))
        want = model.sample(4, class_labels=labels, **kw)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=f"w={w}, negative_class={negative}")
        # what a swap of the two branches computes: the same with weight 1 - w; it must differ
        model.ema = _LabelNet(values, guided=(1.0 - w, u))
        assert not torch.allclose(model.sample(4, class_labels=labels, **kw), got, atol=1e-3)
