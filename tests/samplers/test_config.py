"""genfast's schedulers are diffusers' classes: the config, loading and saving machinery is
diffusers' own (inherited), and genfast's additions (``backend``, the checks made once) keep it
so. diffusers' own test suite runs against them in ``test_diffusers_suite.py``."""

from __future__ import annotations

import copy
import inspect
import json
import logging
import pickle
import subprocess
import sys

import diffusers
import numpy as np
import pytest
import torch

import genfast.samplers as gs
from genfast.samplers._common import FusedStepMixin

CLASSES = [gs.DDPMScheduler, gs.DDIMScheduler]


def _public(config) -> dict:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def test_import_genfast_and_ops_do_not_load_diffusers():
    """diffusers is required by genfast.samplers only; genfast and genfast.ops stay light."""
    code = ("import sys, genfast, genfast.ops; import genfast.reference; "
            "print(sorted(m for m in sys.modules if m == 'diffusers' or m.startswith('diffusers.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    code = "import sys, genfast.samplers; print('diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"  # the check above can fail: the probe sees diffusers when loaded


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_subclass_of_diffusers_class(cls):
    theirs_cls = getattr(diffusers, cls.__name__)
    assert issubclass(cls, theirs_cls)
    s = cls()
    assert isinstance(s, diffusers.SchedulerMixin) and isinstance(s, diffusers.ConfigMixin)
    # every public name of diffusers' class is there, and only step / set_timesteps are replaced
    public = {n for n in dir(theirs_cls) if not n.startswith("_")}
    assert public <= set(dir(s))
    own = {n for n in vars(cls) if not n.startswith("_")} | {n for n in vars(FusedStepMixin) if not n.startswith("_")}
    replaced = {"step", "set_timesteps", "from_config", "timesteps", "final_alpha_cumprod", "ignore_for_config"}
    assert own & public <= replaced


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_config_equals_diffusers(cls):
    kwargs = dict(num_train_timesteps=77, beta_schedule="scaled_linear", prediction_type="v_prediction")
    s, theirs = cls(**kwargs, backend="reference"), getattr(diffusers, cls.__name__)(**kwargs)
    assert s.config == theirs.config  # _use_default_values included
    assert "backend" not in s.config and s.backend == "reference"
    assert s.compatibles == theirs.compatibles
    assert json.loads(s.to_json_string()) == json.loads(theirs.to_json_string())
    assert repr(s) == repr(theirs)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_backend_option(cls, tmp_path):
    s = cls(backend="cpu")
    s.save_pretrained(tmp_path)
    assert "backend" not in json.loads((tmp_path / "scheduler_config.json").read_text())
    assert cls.from_pretrained(tmp_path).backend == "auto"  # a property of the machine, not of the file
    assert cls.from_pretrained(tmp_path, backend="reference").backend == "reference"
    s2, unused = cls.from_config(s.config, return_unused_kwargs=True, backend="cpu")
    assert s2.backend == "cpu" and "backend" not in unused
    for bad in (lambda: cls(backend="tpu"), lambda: cls.from_config(s.config, backend="gpu"),
                lambda: setattr(s, "backend", "tpu")):
        with pytest.raises(ValueError, match="backend"):
            bad()
    with pytest.raises(TypeError):
        cls(1000, 0.0001, 0.02, "linear", None, True, True, 0, "epsilon", False, 0.995, 1.0, 1.0, "leading",
            False, "cpu")  # backend is keyword-only


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_files_interchange_with_diffusers(cls, tmp_path, caplog):
    theirs_cls = getattr(diffusers, cls.__name__)
    trained = np.linspace(1e-4, 0.02, 30)
    ours = cls(num_train_timesteps=30, trained_betas=trained, prediction_type="v_prediction", backend="cpu")
    ours.save_pretrained(tmp_path / "ours")
    data = json.loads((tmp_path / "ours" / "scheduler_config.json").read_text())
    assert data["_class_name"] == cls.__name__ and "backend" not in data
    with caplog.at_level(logging.WARNING):
        theirs = theirs_cls.from_pretrained(tmp_path / "ours")
    assert "not expected" not in caplog.text
    assert type(theirs) is theirs_cls and theirs.config == cls.from_pretrained(tmp_path / "ours").config
    assert torch.equal(theirs.alphas_cumprod, ours.alphas_cumprod)

    theirs = theirs_cls(num_train_timesteps=30, beta_schedule="scaled_linear", steps_offset=1)
    theirs.save_pretrained(tmp_path / "theirs")
    loaded = cls.from_pretrained(tmp_path / "theirs")
    assert type(loaded) is cls and _public(loaded.config) == _public(theirs.config)
    assert torch.equal(loaded.alphas_cumprod, theirs.alphas_cumprod)


def test_from_config_conversions_match_diffusers():
    """DDIM from a DDPM config and back give diffusers' own configs (hidden keys kept)."""
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=200, variance_type="fixed_large", clip_sample=False)
    ours, theirs = gs.DDIMScheduler.from_config(ddpm.config), diffusers.DDIMScheduler.from_config(ddpm.config)
    assert ours.config == theirs.config and ours.config["variance_type"] == "fixed_large"
    back = gs.DDPMScheduler.from_config(ours.config)
    assert back.config == diffusers.DDPMScheduler.from_config(theirs.config).config
    assert back.variance_type == "fixed_large"
    pndm = diffusers.PNDMScheduler(num_train_timesteps=100, skip_prk_steps=True)
    assert gs.DDIMScheduler.from_config(pndm.config).config == diffusers.DDIMScheduler.from_config(pndm.config).config


def test_unsupported_beta_schedule_is_value_and_not_implemented_error():
    config = diffusers.DDPMScheduler(beta_schedule="sigmoid").config
    with pytest.raises(NotImplementedError):
        diffusers.DDIMScheduler.from_config(config)
    with pytest.raises(gs.UnsupportedBetaScheduleError, match="beta_schedule") as info:
        gs.DDIMScheduler.from_config(config)
    assert isinstance(info.value, ValueError) and isinstance(info.value, NotImplementedError)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_pickle_and_deepcopy_keep_the_schedule(cls):
    s = cls(num_train_timesteps=50, backend="reference")
    s.set_timesteps(5)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    t = s.timesteps[1]
    for clone in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        assert type(clone) is cls and clone.config == s.config and clone.backend == "reference"
        assert torch.equal(clone.timesteps, s.timesteps)
        torch.testing.assert_close(clone.step(x, t, x, return_dict=False)[1], s.step(x, t, x, return_dict=False)[1])


def test_internal_dict_replacement_is_honoured():
    """diffusers' pipelines fix old configs with ``scheduler._internal_dict = FrozenDict(...)``;
    step reads the config at call time."""
    from diffusers.configuration_utils import FrozenDict

    s = gs.DDIMScheduler(num_train_timesteps=100, clip_sample=True)
    s.set_timesteps(10)
    s._internal_dict = FrozenDict({**s.config, "clip_sample": False})
    ref = diffusers.DDIMScheduler(num_train_timesteps=100, clip_sample=False)
    ref.set_timesteps(10)
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 3
    mo = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s.step(mo, 90, x).prev_sample, ref.step(mo, 90, x).prev_sample,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "cls, kwargs, name",
    [
        (gs.DDPMScheduler, dict(beta_schedule="cosine"), "beta_schedule"),
        (gs.DDIMScheduler, dict(beta_schedule="sigmoid"), "beta_schedule"),  # DDPM-only in diffusers
        (gs.DDPMScheduler, dict(num_train_timesteps=0), "num_train_timesteps"),
        (gs.DDPMScheduler, dict(clip_sample_range=0.0), "clip_sample_range"),
        (gs.DDIMScheduler, dict(clip_sample_range=-1.0), "clip_sample_range"),
        (gs.DDPMScheduler, dict(thresholding=True, dynamic_thresholding_ratio=1.5), "dynamic_thresholding_ratio"),
        (gs.DDIMScheduler, dict(thresholding=True, sample_max_value=0.0), "sample_max_value"),
        (gs.DDPMScheduler, dict(trained_betas=[0.5, 1.5, 0.2], num_train_timesteps=3), "trained_betas"),
        (gs.DDIMScheduler, dict(beta_start=0.5, beta_end=float("nan")), "beta_end"),
        (gs.DDPMScheduler, dict(backend="tpu"), "backend"),
    ],
)
def test_bad_constructor_arguments(cls, kwargs, name):
    """Values with which diffusers' step fails or returns NaN raise at construction."""
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


def test_unused_options_and_diffusers_lenient_values_are_accepted():
    """As diffusers: options of a switched-off feature are not checked; an unknown
    variance_type behaves as "fixed_small"; sample_max_value < 1 thresholds at that value;
    trained_betas of another length than num_train_timesteps are taken as given."""
    gs.DDPMScheduler(clip_sample=False, clip_sample_range=0.0, dynamic_thresholding_ratio=7.0)
    s = gs.DDPMScheduler(trained_betas=np.array([0.1, 0.3]))
    assert s.alphas_cumprod.shape == (2,) and s.config.num_train_timesteps == 1000
    for cls in CLASSES:
        with pytest.raises(TypeError, match="not_an_option"):
            cls(not_an_option=1)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_step_output_is_diffusers_output(cls):
    """step builds diffusers' output object directly (diffusers' dataclass construction costs
    more than the rest of step); it must be the object diffusers' constructor makes."""
    s = cls(num_train_timesteps=50)
    s.set_timesteps(5)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = s.step(x, s.timesteps[1], x, variance_noise=torch.zeros_like(x))
    output_cls = gs.DDPMSchedulerOutput if cls is gs.DDPMScheduler else gs.DDIMSchedulerOutput
    ref = output_cls(prev_sample=out.prev_sample, pred_original_sample=out.pred_original_sample)
    assert type(out) is output_cls
    assert list(out.keys()) == list(ref.keys()) == ["prev_sample", "pred_original_sample"]
    assert vars(out).keys() == vars(ref).keys()
    assert out[0] is out.prev_sample is out["prev_sample"] and out[1] is out.pred_original_sample
    assert out.to_tuple() == ref.to_tuple() and repr(out) == repr(ref)
    again = pickle.loads(pickle.dumps(out))
    assert type(again) is output_cls and torch.equal(again.prev_sample, out.prev_sample)
    leaves, spec = torch.utils._pytree.tree_flatten(out)
    assert leaves == [out.prev_sample, out.pred_original_sample]
    assert type(torch.utils._pytree.tree_unflatten(leaves, spec)) is output_cls
    out.prev_sample = x  # BaseOutput keeps the attribute and the item in step
    assert out["prev_sample"] is x


ALL_SCHEDULERS = [getattr(gs, n) for n in gs.__all__ if n.endswith("Scheduler")]


@pytest.mark.parametrize("cls", ALL_SCHEDULERS, ids=lambda c: c.__name__)
def test_step_docstring_documents_every_argument(cls):
    """The shared docstring text (genfast.samplers._common.DOC_FRAGMENTS) is in place: ``step``'s
    Args name every parameter of its signature, and no placeholder is left."""
    doc = cls.step.__doc__
    for name in inspect.signature(cls.step).parameters:
        if name != "self":
            assert f"\n            {name}" in doc or f" {name}:" in doc or f"{name}," in doc, (cls.__name__, name)
    for text in (doc, cls.__doc__):
        assert not any(line.strip().startswith("{") and line.strip().endswith("}") for line in text.splitlines())


def test_fused_docs_checks_the_guidance_tail():
    """A step whose keyword-only tail is not genfast's guidance keywords is refused at import."""
    from genfast.samplers._common import fused_docs

    class Bad:
        def step(self, model_output, timestep, sample, *, guidance_scale=1.0):
            """Args:
                {guidance_args}
            """

    with pytest.raises(TypeError, match="keyword-only parameters"):
        fused_docs(Bad)
