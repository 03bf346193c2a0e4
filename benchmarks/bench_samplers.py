"""Benchmark of genfast's drop-in schedulers against diffusers' classes.

For each scheduler (DPM-Solver++, UniPC, Euler, Euler ancestral, flow-matching Euler, LCM, DDPM,
DDIM) at 64x3x32x32 and 8x4x64x64 float32 (64x4x128x128 on a GPU): the median time of one
``step`` through genfast's class, through diffusers' class, and of the fused op call the class
makes (so the class's own overhead is the difference), all measured in this run, at a step in
the middle of a 25-step schedule with the multistep history filled. Stochastic steps are timed
without a generator (genfast draws the noise in the kernel; diffusers calls torch.randn). Then a
25-step loop end to end with a small ``UNet2DModel``.

Usage: python benchmarks/bench_samplers.py [--quick] [--no-loop]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _harness import ceilings_note, enable_tuning, gpu_ceilings, report, time_ms  # noqa: E402

import genfast.samplers as S  # noqa: E402
from genfast.samplers import _fused  # noqa: E402

NAMES = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "EulerDiscreteScheduler",
         "EulerAncestralDiscreteScheduler", "FlowMatchEulerDiscreteScheduler", "LCMScheduler",
         "DDPMScheduler", "DDIMScheduler")
CONFIGS = {"DPMSolverMultistepScheduler": {"algorithm_type": "dpmsolver++", "solver_order": 2},
           "UniPCMultistepScheduler": {"solver_order": 2}}
STEPS, AT = 25, 12  # a 25-step schedule, timed at step 12 (history full, corrector on)


def _prepared(cls, name, shape, device):
    """A scheduler after AT steps of a STEPS-step schedule, and a function running step AT again
    from the same state (a step's state changes are undone by resetting the step index)."""
    s = cls(**CONFIGS.get(name, {}))
    s.set_timesteps(STEPS, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, device=device, generator=g)
    mo = torch.randn(shape, device=device, generator=g)
    ts = s.timesteps
    for t in ts[:AT]:
        s.step(mo, t, x)
    t = ts[AT]
    keep = {k: getattr(s, k) for k in ("_step_index", "lower_order_nums", "this_order") if hasattr(s, k)}

    def run():
        for k, v in keep.items():
            setattr(s, k, v)
        return s.step(mo, t, x)

    return run


def _op_call(run):
    """The public op call equivalent to the one the genfast class makes in ``run`` (captured
    once): ``(bytes moved, make)`` where ``make(backend=None)`` returns it as a function, with
    the class's backend or another one; None for DDPM/DDIM, whose classes call ddpm_step /
    ddim_step."""
    import genfast.ops.solver as solver

    captured = {}
    real = solver.scheduler_call

    def spy(args):
        captured["args"] = args  # a genfast.ops.solver.SolverArgs
        return real(args)

    old = _fused._solver_step
    _fused._solver_step = spy
    try:
        run()
    finally:
        _fused._solver_step = old
    if not captured:
        return None, None
    a = captured["args"]
    mo, x, coef, hist, last, mou, noise, philox = (a.model_output, a.sample, a.coefficients, a.history, a.last_sample,
                                                   a.model_output_uncond, a.noise, a.philox)
    gs, gr, clip, thr, ratio, smax = (a.guidance_scale, a.guidance_rescale, a.clip_sample_range, a.thresholding,
                                      a.dynamic_thresholding_ratio, a.sample_max_value)
    rnd, conv, corr, backend = a.round_converted, a.return_converted, a.return_corrected, a.backend
    # bytes the pass must move: every tensor read once, every output written once
    moved = sum(t.numel() * t.element_size() for t in (mo, x, last, mou, noise, *hist) if t is not None)
    moved += x.numel() * x.element_size() * (1 + bool(conv) + bool(corr))
    def make(b=None):
        """The call with the class's backend, or with ``b`` ("torch", "auto")."""
        return lambda: solver.solver_step(
            mo, x, coef, history=hist, last_sample=last, model_output_uncond=mou, noise=noise, seed=philox,
            guidance_scale=gs, guidance_rescale=gr, clip_sample_range=clip or None, thresholding=thr,
            dynamic_thresholding_ratio=ratio, sample_max_value=smax, round_converted=rnd, return_converted=conv,
            return_corrected=corr, backend=b or backend)

    return moved, make


def _loop(cls, name, unet, device, steps=STEPS):
    s = cls(**CONFIGS.get(name, {}))
    x0 = torch.randn(1, 3, 32, 32, device=device, generator=torch.Generator(device=device).manual_seed(0))

    def run():
        s.set_timesteps(steps, device=device)
        x = x0 * getattr(s, "init_noise_sigma", 1.0)
        with torch.no_grad():
            for t in s.timesteps:
                xi = s.scale_model_input(x, t) if hasattr(s, "scale_model_input") else x
                x = s.step(unet(xi, t).sample, t, x).prev_sample
        return x

    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing runs")
    ap.add_argument("--no-loop", action="store_true", help="skip the UNet loop")
    args = ap.parse_args()
    logging.getLogger("diffusers").setLevel(logging.ERROR)  # scale_model_input warnings
    import diffusers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    enable_tuning()
    min_time = 0.3 if args.quick else 1.0
    shapes = [(64, 3, 32, 32), (8, 4, 64, 64)] + ([(64, 4, 128, 128)] if device == "cuda" else [])
    copy_gbs = gpu_ceilings().get("copy_gbs") if device == "cuda" else None
    rows = []
    for shape in shapes:
        for name in NAMES:
            g_run = _prepared(getattr(S, name), name, shape, device)
            d_run = _prepared(getattr(diffusers, name), name, shape, device)
            moved, op = _op_call(g_run)
            t_g = time_ms(g_run, device, min_time)
            t_d = time_ms(d_run, device, min_time)
            t_op = time_ms(op(), device, min_time) if op is not None else None
            # the same call on the stock-PyTorch composition and on "auto" (tuned: enable_tuning)
            t_torch = time_ms(op("torch"), device, min_time) if op is not None else None
            t_auto = time_ms(op("auto"), device, min_time) if op is not None else None
            row = {"shape": "x".join(map(str, shape)), "scheduler": name.replace("Scheduler", ""),
                   "diffusers ms": t_d, "genfast ms": t_g, "op ms": t_op, "op torch ms": t_torch,
                   "op auto ms": t_auto,
                   "class overhead us": (t_g - t_op) * 1e3 if t_op is not None else None,
                   "speed-up": t_d / t_g}
            if t_op is not None:
                row["op GB/s"] = moved / t_op / 1e6
                if copy_gbs:
                    row["% of copy"] = 100 * row["op GB/s"] / copy_gbs
            rows.append(row)
    notes = ("`speed-up` = diffusers' step time / genfast's class step time, measured in this run; `op ms` is "
             "the fused op call the class makes (genfast.ops.solver_step, or ddpm_step / ddim_step), "
             "`class overhead us` the class step minus that call; `op torch ms` / `op auto ms` the same "
             "call with backend=\"torch\" (eager float32 arithmetic) and \"auto\" (GENFAST_TUNE=1 "
             "unless set). Stochastic steps (Euler ancestral, LCM, "
             "DDPM) draw their noise without a generator: genfast in the kernel (Philox), diffusers with "
             "torch.randn.")
    columns = ["shape", "scheduler", "diffusers ms", "genfast ms", "op ms", "op torch ms", "op auto ms",
               "class overhead us", "speed-up", "op GB/s"] + (["% of copy"] if copy_gbs else [])
    notes += " `op GB/s`: bytes the op must read and write once, over its time." + ceilings_note()
    report(f"samplers_{device}", f"Drop-in schedulers, one step ({device})", rows, columns, device=device,
           notes=notes)
    if args.no_loop:
        return
    unet = diffusers.UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8).to(device).eval()
    loop_rows = []
    for name in NAMES:
        t_g = time_ms(_loop(getattr(S, name), name, unet, device), device, min_time)
        t_d = time_ms(_loop(getattr(diffusers, name), name, unet, device), device, min_time)
        loop_rows.append({"scheduler": name.replace("Scheduler", ""), "diffusers ms": t_d, "genfast ms": t_g,
                          "speed-up": t_d / t_g})
    report(f"samplers_loop_{device}", f"Drop-in schedulers, {STEPS}-step loop with a small UNet2DModel ({device})",
           loop_rows, ["scheduler", "diffusers ms", "genfast ms", "speed-up"], device=device,
           notes="One image 1x3x32x32, a 2-level UNet2DModel (32/64 channels); the UNet dominates on the CPU.")


if __name__ == "__main__":
    main()
