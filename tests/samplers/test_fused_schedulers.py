"""The schedulers on genfast.ops.solver_step against diffusers' own classes: whole sampling loops
over the constructor options, single steps with every noise source, the backends, config round
trips, compile, and the no-host-read property of ``step``."""

import itertools
import random

import diffusers
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import genfast.samplers as S
from genfast.testing import relative_error, stable_seed

NAMES = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "EulerDiscreteScheduler",
         "EulerAncestralDiscreteScheduler", "FlowMatchEulerDiscreteScheduler", "LCMScheduler")


def model(x, t):
    """A smooth stand-in for a denoiser: depends on the sample and the timestep."""
    return 0.3 * x * torch.cos(torch.as_tensor(t, dtype=torch.float32) / 300) + 0.1 * torch.sin(x)


def run_loop(cls, config, steps, seed, *, step_kw=None, dtype=torch.float32, shape=(2, 3, 8, 8), **kw):
    sched = cls(**config, **kw)
    sched.set_timesteps(steps)
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(seed))
         * getattr(sched, "init_noise_sigma", 1.0)).to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    for t in sched.timesteps:
        xi = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
        kwargs = dict(step_kw or {})
        if "generator" in diffusers_step_args(cls):
            kwargs["generator"] = gen
        x = sched.step(model(xi.float(), t).to(dtype), t, x, **kwargs).prev_sample
    return x


def diffusers_step_args(cls):
    import inspect

    return inspect.signature(cls.step).parameters


def option_grid(name):
    """Constructor options of each class (every value of every option the step depends on)."""
    if name == "DPMSolverMultistepScheduler":
        grid = itertools.product(("dpmsolver++", "sde-dpmsolver++", "dpmsolver", "sde-dpmsolver"), (1, 2, 3),
                                 ("midpoint", "heun"), ("epsilon", "sample", "v_prediction"), (False, True),
                                 (False, True), ("zero", "sigma_min"), (False, True), (False, True))
        out = []
        for algo, order, st, pred, thr, karras, final, lof, lu in grid:
            if final == "zero" and algo in ("dpmsolver", "sde-dpmsolver"):
                continue  # diffusers rejects the combination
            if (order == 3 and algo == "sde-dpmsolver") or (karras and lu):
                continue  # no third-order sde-dpmsolver in diffusers; karras and lu exclude each other
            out.append(dict(algorithm_type=algo, solver_order=order, solver_type=st, prediction_type=pred,
                            thresholding=thr, sample_max_value=1.5, use_karras_sigmas=karras, use_lu_lambdas=lu,
                            final_sigmas_type=final, lower_order_final=lof))
        return [(c, {}) for c in out]
    if name == "UniPCMultistepScheduler":
        grid = itertools.product(("bh1", "bh2"), (1, 2, 3), ("epsilon", "sample", "v_prediction"), (False, True),
                                 (True, False), ("zero", "sigma_min"), (False, True))
        return [(dict(solver_type=st, solver_order=o, prediction_type=p, thresholding=thr, sample_max_value=1.5,
                      predict_x0=x0, final_sigmas_type=f, use_karras_sigmas=k, lower_order_final=True), {})
                for st, o, p, thr, x0, f, k in grid] + [
            (dict(disable_corrector=[0, 2], solver_order=3), {}),
            (dict(lower_order_final=False, final_sigmas_type="sigma_min", solver_order=3), {})]
    if name == "EulerDiscreteScheduler":
        grid = itertools.product(("epsilon", "v_prediction", "sample"), (False, True), (0.0, 4.0),
                                 ("discrete", "continuous"), ("zero", "sigma_min"))
        return [(dict(prediction_type=p, use_karras_sigmas=k, timestep_type=tt, final_sigmas_type=f),
                 dict(s_churn=ch, s_tmin=0.5, s_tmax=50.0, s_noise=1.003)) for p, k, ch, tt, f in grid]
    if name == "EulerAncestralDiscreteScheduler":
        return [(dict(prediction_type=p, rescale_betas_zero_snr=r, timestep_spacing=sp), {})
                for p, r, sp in itertools.product(("epsilon", "v_prediction"), (False, True),
                                                  ("linspace", "leading", "trailing"))]
    if name == "FlowMatchEulerDiscreteScheduler":
        return [(dict(shift=sh, stochastic_sampling=st, use_karras_sigmas=k, invert_sigmas=inv), {})
                for sh, st, k, inv in itertools.product((1.0, 3.0), (False, True), (False, True), (False, True))]
    grid = itertools.product(("epsilon", "sample", "v_prediction"), (False, True), (False, True), (False, True))
    return [(dict(prediction_type=p, thresholding=thr, clip_sample=clip, sample_max_value=1.5,
                  set_alpha_to_one=one), {}) for p, thr, clip, one in grid]


def tolerance(name, config):
    """Relative error allowed between genfast and diffusers over a loop. Both compute in float32;
    genfast's coefficients are float64-exact, diffusers' float32: measured here (2026-12-07) the
    difference is at most 8e-5 (SDE DPM-Solver at 20 steps), where genfast lies 15x closer to a
    float64 run than diffusers; UniPC's noise-prediction form with sample/v predictions at order 3
    (eps = (x - alpha x0) / sigma amplifies rounding) reached 4.6e-4, genfast again the closer."""
    if name == "UniPCMultistepScheduler" and not config.get("predict_x0", True):
        return 1e-3
    return 2e-4


def diffusers_nan(name, config):
    """The documented deviation: diffusers' UniPC with solver_type="bh1", predict_x0=True and
    final_sigmas_type="zero" returns NaN (B(h) = -inf times a zero residual at the last step);
    genfast the limit, x_0."""
    return (name == "UniPCMultistepScheduler" and config.get("solver_type") == "bh1"
            and config.get("final_sigmas_type") == "zero" and config.get("predict_x0", True))


@pytest.mark.parametrize("name", NAMES)
def test_loops_match_diffusers(name):
    """Whole sampling loops, the same generator, over the constructor options (a stable random
    share of the larger grids each run; the seed is printed)."""
    seed = stable_seed("loops", name)
    cases = option_grid(name)
    rng = random.Random(seed)
    cases = rng.sample(cases, min(len(cases), 24))
    G, D = getattr(S, name), getattr(diffusers, name)
    for config, step_kw in cases:
        steps = rng.choice((4, 9, 16))
        what = f"seed={seed} {name} {config} {step_kw} steps={steps}"
        try:
            expected = run_loop(D, config, steps, seed, step_kw=step_kw)
        except Exception as exc:  # an option combination diffusers rejects: genfast must too
            with pytest.raises(type(exc)):
                run_loop(G, config, steps, seed, step_kw=step_kw, backend="cpu")
            continue
        got = run_loop(G, config, steps, seed, step_kw=step_kw, backend="cpu")
        assert got.dtype == expected.dtype and got.shape == expected.shape, what
        if diffusers_nan(name, config):
            assert torch.isnan(expected).all() and torch.isfinite(got).all(), what
            continue
        assert relative_error(got, expected) <= tolerance(name, config), what


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_low_precision_loops_close_to_diffusers(name, dtype):
    """fp16/bf16 sample and model output: within a few units of the dtype's rounding of diffusers'
    own low-precision loop (both round once per step; the kernel computes in float32)."""
    seed = stable_seed("lowp", name, str(dtype))
    G, D = getattr(S, name), getattr(diffusers, name)
    expected = run_loop(D, {}, 6, seed, dtype=dtype)
    got = run_loop(G, {}, 6, seed, dtype=dtype, backend="cpu")
    exact = run_loop(D, {}, 6, seed, dtype=torch.float32)
    assert got.dtype == dtype
    # genfast's error against the float32 loop is at most that of diffusers' own low-precision
    # loop plus 2 ulps of the dtype
    ulp = torch.finfo(dtype).eps
    assert relative_error(got, exact) <= relative_error(expected, exact) + 2 * ulp, f"seed={seed}"


@pytest.mark.parametrize("name", NAMES)
def test_is_the_diffusers_class(name):
    G, D = getattr(S, name), getattr(diffusers, name)
    s = G()
    assert isinstance(s, D) and isinstance(s, diffusers.SchedulerMixin)
    assert "backend" not in s.config
    assert G.compatibles == D.compatibles


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name, tmp_path):
    G, D = getattr(S, name), getattr(diffusers, name)
    ours = G(num_train_timesteps=500, backend="reference")
    ours.save_pretrained(tmp_path)
    theirs = D.from_pretrained(tmp_path)
    back = G.from_pretrained(tmp_path)
    assert type(back) is G and back.backend == "auto"
    plain = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert plain(theirs.config) == plain(ours.config) == plain(back.config) == plain(D(num_train_timesteps=500).config)
    assert theirs.config["_class_name"] == name
    assert G.from_config(D().config, backend="cpu").backend == "cpu"
    with pytest.raises(ValueError, match="backend"):
        G(backend="gpu")


@pytest.mark.parametrize("name", NAMES)
def test_backends_agree(kernel_backend, name):
    """The class step on every backend that runs here against the reference backend."""
    backend, device = kernel_backend
    seed = stable_seed("backends", name, backend)
    shape = (2, 3, 5, 7)
    outs = {}
    for be in ("reference", backend):
        sched = getattr(S, name)(backend=be)
        sched.set_timesteps(5, device=device)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
        noise = torch.Generator(device=device.type).manual_seed(seed + 1)
        for t in sched.timesteps:
            kw = {"generator": noise} if "generator" in diffusers_step_args(type(sched)) else {}
            x = sched.step(model(x, t.cpu()), t, x, **kw).prev_sample
        outs[be] = x
    assert relative_error(outs[backend], outs["reference"]) < 1e-5, f"seed={seed}"


@pytest.mark.parametrize("name", NAMES)
def test_fused_guidance_equals_guidance_outside(name):
    """model_output_uncond + guidance_scale + guidance_rescale in step equal classifier-free
    guidance with diffusers' rescale_noise_cfg done before an unguided step."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    seed = stable_seed("cfg", name)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 8, 8, generator=g)
    cond, uncond = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    a, b = getattr(S, name)(backend="cpu"), getattr(S, name)(backend="cpu")
    for s in (a, b):
        s.set_timesteps(4)
    t = a.timesteps[0]
    w, phi = 4.0, 0.6
    guided = uncond + w * (cond - uncond)
    guided = rescale_noise_cfg(guided, cond, guidance_rescale=phi)
    kw = {"generator": torch.Generator().manual_seed(1)} if "generator" in diffusers_step_args(type(a)) else {}
    fused = a.step(cond, t, x, model_output_uncond=uncond, guidance_scale=w, guidance_rescale=phi, **kw)
    kw = {"generator": torch.Generator().manual_seed(1)} if kw else {}
    plain = b.step(guided, t, x, **kw)
    assert relative_error(fused.prev_sample, plain.prev_sample) < 1e-5, f"seed={seed}"
    # a swap of the two branches must show
    c = getattr(S, name)(backend="cpu")
    c.set_timesteps(4)
    kw = {"generator": torch.Generator().manual_seed(1)} if kw else {}
    swapped = c.step(uncond, t, x, model_output_uncond=cond, guidance_scale=w, guidance_rescale=phi, **kw)
    assert relative_error(swapped.prev_sample, plain.prev_sample) > 1e-3


class _NoHostReads(TorchDispatchMode):
    """Fails on any op that reads a tensor value on the host (``.item()``, ``bool(t)``, ``int(t)``,
    ``nonzero``, ...): on a GPU each would synchronise the device."""

    FORBIDDEN = ("aten::_local_scalar_dense", "aten::nonzero", "aten::equal", "aten::is_nonzero")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.FORBIDDEN:
            raise AssertionError(f"host read of a tensor value: {func._schema.name}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", NAMES + ("DDPMScheduler", "DDIMScheduler"))
def test_step_reads_no_tensor_value_on_the_host(name):
    """A 10-step loop over the scheduler's own (tensor) timesteps, with guidance and noise drawn
    in the op, never reads a tensor value on the host (the property a CUDA graph and a sync-free
    GPU loop need), including the first step's index look-up."""
    sched = getattr(S, name)(backend="cpu")
    sched.set_timesteps(10)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(stable_seed("nosync", name)))
    with _NoHostReads():
        for t in sched.timesteps:
            xi = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
            out = model(xi, torch.zeros(()))
            x = sched.step(out, t, x, model_output_uncond=out * 0.5, guidance_scale=2.0).prev_sample
    assert torch.isfinite(x).all()


def test_no_host_read_mode_catches_a_read():
    """The mode above fails where it must (a test that can fail)."""
    with pytest.raises(AssertionError, match="host read"), _NoHostReads():
        float(torch.ones(()) * 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_whole_loop_compiles_fullgraph(name):
    """A 6-step loop with fused guidance compiles with fullgraph=True and matches eager (inductor
    falls back to eager RNG so the in-op seeds agree)."""
    import torch._inductor.config as ic

    def loop(sched, x, cond_scale):
        for t in sched.timesteps:
            xi = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
            out = 0.3 * xi * torch.cos(t.float() / 300) + 0.1 * torch.sin(xi)
            x = sched.step(out, t, x, model_output_uncond=out * cond_scale, guidance_scale=3.0).prev_sample
        return x

    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(stable_seed("compile", name)))
    a, b = getattr(S, name)(backend="cpu"), getattr(S, name)(backend="cpu")
    a.set_timesteps(6)
    b.set_timesteps(6)
    old = ic.fallback_random
    ic.fallback_random = True
    try:
        torch.manual_seed(0)
        eager = loop(a, x, 0.5)
        torch.manual_seed(0)
        compiled = torch.compile(loop, fullgraph=True)(b, x, 0.5)
    finally:
        ic.fallback_random = old
        torch._dynamo.reset()
    # inductor fuses the stand-in model differently (float rounding), amplified over the steps
    assert relative_error(compiled, eager) < 1e-4


def test_step_before_set_timesteps_raises():
    for name in ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "LCMScheduler"):
        with pytest.raises(ValueError, match="set_timesteps"):
            getattr(S, name)().step(torch.zeros(1, 1), 1, torch.zeros(1, 1))


def test_bad_inputs_name_the_argument():
    s = S.DPMSolverMultistepScheduler()
    s.set_timesteps(5)
    with pytest.raises(TypeError, match="model_output"):
        s.step([1.0], s.timesteps[0], torch.zeros(1, 2))
    with pytest.raises(ValueError, match="shape"):
        s.step(torch.zeros(1, 3), s.timesteps[0], torch.zeros(1, 2))
    e = S.EulerDiscreteScheduler()
    e.set_timesteps(5)
    with pytest.raises(ValueError, match="integer indices"):
        e.step(torch.zeros(1, 2), 3, torch.zeros(1, 2))
    with pytest.raises(TypeError, match="s_churn"):
        e.step(torch.zeros(1, 2), e.timesteps[0], torch.zeros(1, 2), s_churn="x")


def test_first_index_without_reading_the_value():
    """Steps that start mid-schedule: set_begin_index, a view of the schedule, or a host value give
    diffusers' step index."""
    d = diffusers.DPMSolverMultistepScheduler()
    g = S.DPMSolverMultistepScheduler()
    for s in (d, g):
        s.set_timesteps(10)
    x = torch.randn(1, 2, 4, generator=torch.Generator().manual_seed(stable_seed("index")))
    for start in (g.timesteps[4], int(g.timesteps[4]), g.timesteps[4].clone()):
        g._step_index = None
        g._init_step_index(start)
        d._step_index = None
        d._init_step_index(g.timesteps[4].clone())
        assert g.step_index == d.step_index == 4
    outs = []
    for s in (S.UniPCMultistepScheduler(), diffusers.UniPCMultistepScheduler()):
        s.set_timesteps(10)
        s.set_begin_index(3)
        y = x
        for t in s.timesteps[3:6]:
            y = s.step(model(y, t), t, y).prev_sample
        assert s.step_index == 6
        outs.append(y)
    assert relative_error(outs[0], outs[1]) < 1e-5


def test_fast_output_objects_equal_diffusers_construction():
    """The outputs built without diffusers' slow dataclass path are the objects diffusers builds."""
    from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteSchedulerOutput
    from diffusers.schedulers.scheduling_lcm import LCMSchedulerOutput
    from diffusers.schedulers.scheduling_utils import SchedulerOutput

    from genfast.samplers._common import FusedStepMixin

    a, b = torch.zeros(2), torch.ones(2)
    for cls, fields in ((SchedulerOutput, dict(prev_sample=a)),
                        (EulerDiscreteSchedulerOutput, dict(prev_sample=a, pred_original_sample=b)),
                        (LCMSchedulerOutput, dict(prev_sample=a, denoised=b))):
        ours, theirs = FusedStepMixin._output(cls, True, **fields), cls(**fields)
        assert type(ours) is cls and list(ours.keys()) == list(theirs.keys()) and ours.to_tuple() == theirs.to_tuple()
        assert all(getattr(ours, k) is getattr(theirs, k) for k in fields) and ours[0] is theirs[0]
        assert FusedStepMixin._output(cls, False, **fields) == tuple(fields.values())
