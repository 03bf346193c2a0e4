"""Config, from_config, save_pretrained / from_pretrained, and interchange with diffusers."""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle

import numpy as np
import pytest
import torch

import genfast.samplers as gs

diffusers = pytest.importorskip("diffusers")

CLASSES = [gs.DDPMScheduler, gs.DDIMScheduler]


def _public(config) -> dict:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_config_attribute_and_key_access(cls):
    s = cls(num_train_timesteps=77, beta_schedule="scaled_linear", prediction_type="v_prediction")
    assert s.config.num_train_timesteps == s.config["num_train_timesteps"] == 77
    assert s.config.beta_schedule == "scaled_linear"
    assert isinstance(s.config, dict)
    assert "backend" not in s.config
    theirs = getattr(diffusers, cls.__name__)(num_train_timesteps=77, beta_schedule="scaled_linear",
                                              prediction_type="v_prediction")
    assert _public(s.config) == _public(theirs.config)
    assert set(s.config["_use_default_values"]) == set(theirs.config["_use_default_values"])
    with pytest.raises(AttributeError):
        _ = s.config.not_a_key


def test_frozen_dict_is_read_only_and_copyable():
    config = gs.DDPMScheduler().config
    for mutate in (
        lambda c: c.__setitem__("beta_end", 1.0),
        lambda c: setattr(c, "beta_end", 1.0),
        lambda c: c.pop("beta_end"),
        lambda c: c.update(beta_end=1.0),
        lambda c: c.setdefault("x", 1),
        lambda c: c.__delitem__("beta_end"),
    ):
        with pytest.raises(TypeError):
            mutate(config)
    assert pickle.loads(pickle.dumps(config)) == config
    assert copy.deepcopy(config) == config and copy.copy(config).beta_end == config.beta_end


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_scheduler_pickle_and_deepcopy(cls):
    s = cls(num_train_timesteps=50)
    s.set_timesteps(5)
    for clone in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        assert clone.config == s.config
        assert torch.equal(clone.timesteps, s.timesteps)
        assert torch.equal(clone.alphas_cumprod, s.alphas_cumprod)


def test_deprecated_direct_config_attribute_access():
    s = gs.DDIMScheduler(num_train_timesteps=40)
    with pytest.warns(FutureWarning, match="num_train_timesteps"):
        assert s.num_train_timesteps == 40
    with pytest.raises(AttributeError):
        _ = s.definitely_missing


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_save_and_load_round_trip(cls, tmp_path):
    s = cls(num_train_timesteps=60, beta_schedule="squaredcos_cap_v2", clip_sample=False,
            timestep_spacing="trailing", backend="reference")
    s.save_pretrained(tmp_path)
    with open(tmp_path / "scheduler_config.json") as f:
        data = json.load(f)
    assert data["_class_name"] == cls.__name__
    assert "_diffusers_version" in data and "_genfast_version" in data
    assert "backend" not in data and "_use_default_values" not in data
    loaded = cls.from_pretrained(tmp_path)
    assert _public(loaded.config) == _public(s.config)
    assert torch.equal(loaded.alphas_cumprod, s.alphas_cumprod)
    assert loaded.backend == "auto"  # the backend is a property of the machine, not of the file
    assert cls.from_pretrained(tmp_path, backend="reference").backend == "reference"
    # the file itself, and a subfolder layout like a saved pipeline
    assert _public(cls.from_pretrained(str(tmp_path / "scheduler_config.json")).config) == _public(s.config)
    s.save_pretrained(tmp_path / "pipe" / "scheduler")
    assert _public(cls.from_pretrained(tmp_path / "pipe", subfolder="scheduler").config) == _public(s.config)
    # overrides
    over = cls.from_pretrained(tmp_path, prediction_type="sample")
    assert over.config.prediction_type == "sample"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_files_interchange_with_diffusers(cls, tmp_path, caplog):
    theirs_cls = getattr(diffusers, cls.__name__)
    trained = np.linspace(1e-4, 0.02, 30)
    ours = cls(num_train_timesteps=30, trained_betas=trained, prediction_type="v_prediction")
    ours.save_pretrained(tmp_path / "ours")
    with caplog.at_level(logging.WARNING):
        theirs = theirs_cls.from_pretrained(tmp_path / "ours")
    assert "not expected" not in caplog.text
    assert torch.allclose(theirs.alphas_cumprod, ours.alphas_cumprod)
    assert theirs.config.prediction_type == "v_prediction"

    theirs = theirs_cls(num_train_timesteps=30, beta_schedule="scaled_linear", steps_offset=1)
    theirs.save_pretrained(tmp_path / "theirs")
    loaded = cls.from_pretrained(tmp_path / "theirs")
    assert _public(loaded.config) == _public(theirs.config)
    assert torch.equal(loaded.alphas_cumprod, theirs.alphas_cumprod)


def test_from_config_of_diffusers_configs_matches_diffusers(caplog):
    """DDIM from a DDPM config and back: same config as diffusers' own conversion, no warnings,
    DDPM-only keys kept for a later swap back."""
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=200, variance_type="fixed_large", clip_sample=False,
                                   prediction_type="v_prediction")
    with caplog.at_level(logging.WARNING, logger="genfast.samplers"):
        ours = gs.DDIMScheduler.from_config(ddpm.config)
    assert caplog.text == ""
    theirs = diffusers.DDIMScheduler.from_config(ddpm.config)
    assert _public(ours.config) == _public(theirs.config)
    assert ours.config["variance_type"] == "fixed_large"  # hidden key, as in diffusers
    assert ours.config.get("_class_name", "DDIMScheduler") == "DDIMScheduler"
    assert ours.config.clip_sample is False and ours.config.prediction_type == "v_prediction"
    assert ours.config.set_alpha_to_one is True  # default, not in the DDPM config
    back = gs.DDPMScheduler.from_config(ours.config)
    assert back.variance_type == "fixed_large"
    # diffusers accepts our config too
    again = diffusers.DDPMScheduler.from_config(ours.config)
    assert again.config.variance_type == "fixed_large"
    assert torch.equal(again.alphas_cumprod, back.alphas_cumprod)


def test_from_config_respects_use_default_values():
    """Keys that the source left at their defaults give way to this class's defaults."""
    config = {"num_train_timesteps": 100, "clip_sample": True, "_use_default_values": ["clip_sample"],
              "_class_name": "DDPMScheduler"}
    s = gs.DDIMScheduler.from_config(config, clip_sample=False)
    assert s.config.clip_sample is False
    s = gs.DDIMScheduler.from_config({**config, "_use_default_values": []})
    assert s.config.clip_sample is True


def test_from_config_unknown_keys(caplog):
    pndm = diffusers.PNDMScheduler(num_train_timesteps=100, skip_prk_steps=True)
    with caplog.at_level(logging.WARNING, logger="genfast.samplers"):
        s = gs.DDIMScheduler.from_config(pndm.config)
    assert caplog.text == ""  # keys of the source's diffusers class are quiet, as in diffusers
    assert s.config["skip_prk_steps"] is True
    with caplog.at_level(logging.WARNING, logger="genfast.samplers"):
        s, unused = gs.DDPMScheduler.from_config({"num_train_timesteps": 10, "foo_bar": 3},
                                                 return_unused_kwargs=True, not_an_arg=1)
    assert "foo_bar" in caplog.text
    assert unused["foo_bar"] == 3 and unused["not_an_arg"] == 1
    assert s.config.num_train_timesteps == 10


def test_from_config_overrides_and_backend():
    base = gs.DDPMScheduler(num_train_timesteps=50).config
    s = gs.DDIMScheduler.from_config(base, timestep_spacing="trailing", backend="reference")
    assert s.config.timestep_spacing == "trailing" and s.backend == "reference"
    assert "backend" not in s.config
    with pytest.raises(ValueError, match="timestep_spacing"):
        gs.DDIMScheduler.from_config(base, timestep_spacing="nope")
    with pytest.raises(ValueError, match="config"):
        gs.DDIMScheduler.from_config()


def test_from_config_rejects_unsupported_schedule_like_diffusers():
    config = gs.DDPMScheduler(beta_schedule="sigmoid").config
    with pytest.raises(NotImplementedError):
        diffusers.DDIMScheduler.from_config(config)
    with pytest.raises(ValueError, match="beta_schedule") as info:
        gs.DDIMScheduler.from_config(config)
    assert isinstance(info.value, NotImplementedError)


def test_from_config_with_path_is_deprecated(tmp_path):
    gs.DDIMScheduler(num_train_timesteps=20).save_pretrained(tmp_path)
    with pytest.warns(FutureWarning, match="from_pretrained"):
        s = gs.DDIMScheduler.from_config(str(tmp_path))
    assert s.config.num_train_timesteps == 20


def test_load_errors(tmp_path):
    with pytest.raises(OSError, match="scheduler_config.json"):
        gs.DDPMScheduler.from_pretrained(tmp_path)
    bad = tmp_path / "scheduler_config.json"
    bad.write_text("{not json")
    with pytest.raises(OSError, match="JSON"):
        gs.DDPMScheduler.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="directory"):
        gs.DDPMScheduler().save_pretrained(bad)
    with pytest.raises(NotImplementedError, match="push_to_hub"):
        gs.DDPMScheduler().save_pretrained(tmp_path / "x", push_to_hub=True)


def test_hub_download_path(tmp_path, monkeypatch):
    """A repo id goes through huggingface_hub.hf_hub_download (mocked here: no network)."""
    hub = pytest.importorskip("huggingface_hub")
    gs.DDIMScheduler(num_train_timesteps=33).save_pretrained(tmp_path / "scheduler")
    calls = []

    def fake_download(repo_id, filename, subfolder=None, **kwargs):
        calls.append((repo_id, filename, subfolder, kwargs))
        return os.path.join(tmp_path, subfolder or "", filename)

    monkeypatch.setattr(hub, "hf_hub_download", fake_download)
    s = gs.DDIMScheduler.from_pretrained("someone/some-model", subfolder="scheduler", revision="main")
    assert s.config.num_train_timesteps == 33
    assert calls == [("someone/some-model", "scheduler_config.json", "scheduler", {"revision": "main"})]

    def failing(*args, **kwargs):
        raise RuntimeError("offline")

    monkeypatch.setattr(hub, "hf_hub_download", failing)
    with pytest.raises(OSError, match="offline"):
        gs.DDIMScheduler.from_pretrained("someone/other-model")


def test_compatibles_and_class_attributes():
    s = gs.DDIMScheduler()
    assert set(s.compatibles) == {gs.DDPMScheduler, gs.DDIMScheduler}
    assert gs.DDPMScheduler.order == 1 and gs.DDIMScheduler.config_name == "scheduler_config.json"
    assert repr(s).startswith("DDIMScheduler {")


def test_internal_dict_replacement_is_honoured():
    """diffusers' StableDiffusionPipeline fixes old configs by assigning
    ``scheduler._internal_dict = FrozenDict(new_config)``; step reads the config at call time."""
    from diffusers.configuration_utils import FrozenDict

    s = gs.DDIMScheduler(num_train_timesteps=100, clip_sample=True)
    s.set_timesteps(10)
    s._internal_dict = FrozenDict({**s.config, "clip_sample": False})
    assert s.config.clip_sample is False
    ref = diffusers.DDIMScheduler(num_train_timesteps=100, clip_sample=False)
    ref.set_timesteps(10)
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 3
    mo = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s.step(mo, 90, x).prev_sample, ref.step(mo, 90, x).prev_sample,
                               rtol=1e-5, atol=1e-6)


def test_output_pickles():
    out = gs.DDIMSchedulerOutput(prev_sample=torch.ones(2), pred_original_sample=torch.zeros(2))
    again = pickle.loads(pickle.dumps(out))
    assert torch.equal(again.prev_sample, out.prev_sample) and torch.equal(again[1], out[1])
    partial = gs.DDPMSchedulerOutput(prev_sample=torch.ones(1))
    assert partial.to_tuple() == (partial.prev_sample,) and partial.pred_original_sample is None
    leaves, spec = torch.utils._pytree.tree_flatten(out)
    assert len(leaves) == 2
    assert isinstance(torch.utils._pytree.tree_unflatten(leaves, spec), gs.DDIMSchedulerOutput)
