"""Benchmark of the fused DDPM / DDIM sampling step (genfast.ops.ddpm_step / ddim_step).

For a 64x3x32x32 float32 batch (and, on a GPU, a 64x4x128x128 one for bandwidth): the time per
step of each backend that runs here, of the reference, of genfast's drop-in schedulers, and of
diffusers' DDPMScheduler.step / DDIMScheduler.step (when installed), all measured in this run,
with ratios. DDPM is timed with noise and no generator (genfast draws it in the kernel with
Philox; diffusers calls torch.randn); DDIM with eta = 0.

Usage: python benchmarks/bench_sampling_step.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _harness import enable_tuning, report, time_ms  # noqa: E402

import genfast.ops as O  # noqa: E402
from genfast.reference import sampling_step as RS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing runs")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    min_time = 0.3 if args.quick else 1.0
    avail = O.backends()
    backends = [b for b in ("cuda", "triton", "cpu") if avail[b]]
    if device == "cpu":
        backends = [b for b in backends if b == "cpu"]  # the Triton interpreter is not a fast path
    # "torch": the eager float32 arithmetic with genfast's Philox noise; "auto": the tuner's choice
    # (GENFAST_TUNE=1 unless set: enable_tuning)
    enable_tuning()
    backends += ["torch", "auto"]
    try:
        import diffusers
        from diffusers import DDIMScheduler as DDDIM
        from diffusers import DDPMScheduler as DDDPM
    except ImportError:
        diffusers = None
    from genfast.samplers import DDIMScheduler, DDPMScheduler

    shapes = [(64, 3, 32, 32)] + ([(64, 4, 128, 128)] if device == "cuda" else [])

    def measure(shape):
        """Time every implementation at one shape; returns (rows, copy bandwidth or None)."""
        rows = []
        copy_gbs = None
        x = torch.randn(shape, device=device)
        mo = torch.randn(shape, device=device)
        ac = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0).to(device)
        nbytes = x.numel() * x.element_size()
        # bytes moved: read model_output and sample, write prev_sample and pred_original_sample
        moved = 4 * nbytes
        if device == "cuda":
            big = torch.empty(256 * 2**20 // 4, device=device)
            t_copy = time_ms(lambda: big.clone(), device)
            copy_gbs = 2 * big.numel() * 4 / t_copy / 1e6
        entries = []
        # per scheduler: the op's call, the oracle's, the drop-in class and diffusers' class with
        # (inference steps, timestep); clip_sample=False in the scheduler rows, as in the op rows:
        # the class-minus-op difference is then the class's own work (diffusers' default adds a clamp)
        cases = [
            ("ddpm", lambda b: O.ddpm_step(mo, 500, x, ac, backend=b), lambda: RS.ddpm_step(mo, 500, x, ac, seed=1),
             DDPMScheduler, diffusers and DDDPM, 1000, 500),
            ("ddim", lambda b: O.ddim_step(mo, 501, x, ac, prev_timestep=481, backend=b),
             lambda: RS.ddim_step(mo, 501, x, ac, prev_timestep=481), DDIMScheduler, diffusers and DDDIM, 50, 501),
        ]
        for kind, op, oracle, ours, theirs, n_steps, t in cases:
            for b in backends:
                entries.append((f"genfast {kind}_step [{b}]", kind, lambda b=b, op=op: op(b)))
            entries.append((f"genfast {kind}_step [reference]", kind, oracle))
            for cls, label in ((ours, f"genfast.samplers.{ours.__name__}.step"),
                               (theirs, f"diffusers {getattr(diffusers, '__version__', '')} {ours.__name__}.step")):
                if cls:
                    sched = cls(clip_sample=False)
                    sched.set_timesteps(n_steps, device=device)
                    entries.append((label, kind, lambda sched=sched, t=t: sched.step(mo, t, x)))
        # interleave: two passes, keep the faster median of each (shared machines drift)
        times = {}
        for name, _, fn in list(entries):  # a backend that fails is reported and left out
            try:
                fn()
            except Exception as exc:
                print(f"skipped {name}: {type(exc).__name__}: {str(exc)[:300]}")
                entries = [e for e in entries if e[0] != name]
        for _ in range(2):
            for name, _, fn in entries:
                t = time_ms(fn, device, min_time)
                times[name] = min(times.get(name, float("inf")), t)
        for kind in ("ddpm", "ddim"):
            names = [n for n, k, _ in entries if k == kind]
            ref = times.get(f"genfast {kind}_step [reference]", float("nan"))
            peer = next((times[n] for n in names if n.startswith("diffusers")), None)
            for n in names:
                row = {"shape": "x".join(map(str, shape)), "step": kind, "implementation": n,
                       "median ms": times[n], "GB/s": moved / times[n] / 1e6,
                       "vs reference": ref / times[n],
                       "vs diffusers": (peer / times[n]) if peer else None}
                if copy_gbs:
                    row["% of copy BW"] = 100 * moved / times[n] / 1e6 / copy_gbs
                rows.append(row)
        return rows, copy_gbs

    rows = []
    copy_gbs = None
    for shape in shapes:
        shape_rows, shape_copy = measure(shape)
        rows += shape_rows
        copy_gbs = shape_copy or copy_gbs
    cols = ["shape", "step", "implementation", "median ms", "GB/s", "vs reference", "vs diffusers"]
    if copy_gbs:
        cols.append("% of copy BW")
    notes = ("Ratios are speed-ups (higher is better) over the row's reference / diffusers, all timed in "
             "this run. GB/s counts 4 tensors moved (2 read, 2 written); the DDPM noise is generated in "
             "the kernel, not read.")
    if copy_gbs:
        notes += f" Device copy bandwidth measured in this run: {copy_gbs:.0f} GB/s (read+write)."
    report(f"sampling_step_{device}", f"Fused sampling step ({device})", rows, cols, device=device, notes=notes)


if __name__ == "__main__":
    main()
