"""``genfast tune``: measure every op's candidate backends at the common shapes ahead of time,
print a table of the winners, and keep them in the tuner's cache (:mod:`genfast.tune`) for the
runs that set ``GENFAST_TUNE=1``."""

from __future__ import annotations

import argparse
import os
import sys

# The common shapes, from benchmarks/bench_*.py (the sizes of the tables in RESULTS.md); --quick
# takes the small ones only (a smoke test, not figures).
_SAMPLING = {"full": ((64, 3, 32, 32), (64, 4, 128, 128)), "quick": ((4, 3, 8, 8),)}
_GIBBS = {"full": ((1000, 784, 256, 1), (1000, 784, 256, 10), (1000, 784, 1024, 10)), "quick": ((16, 20, 12, 2),)}
_VQ = {"full": ((65536, 64, 1024), (262144, 256, 8192)), "quick": ((64, 8, 32),)}
_VQ_CPU_MAX = 65536 * 1024  # N * K: the GPU shape would take minutes per candidate on a CPU
_INVCONV = {"full": ((64, 48, 16, 16), (16, 96, 32, 32)), "quick": ((2, 6, 4, 4),)}
_RANDN = {"full": (1 << 20, 1 << 24), "quick": (1000,)}
OPS = ("ddpm_step", "ddim_step", "solver_step", "gibbs", "vq", "invconv", "randn")


def add_args(p: argparse.ArgumentParser) -> None:
    """The options of ``genfast tune``."""
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated ops to tune (default: {','.join(OPS)})")
    p.add_argument("--dtypes", default="float32", help="comma-separated dtypes: float32, float16, bfloat16")
    p.add_argument("--quick", action="store_true", help="tiny shapes only: a smoke test, not figures")
    p.add_argument("--keep", action="store_true",
                   help="reuse cached measurements (GENFAST_TUNE=1) instead of measuring again (force)")


def register(sub) -> None:
    """Add the ``tune`` subcommand to the CLI's subparsers (one line in genfast/cli/__init__.py)."""
    p = sub.add_parser("tune", help="time every op's backends at the common shapes; print and cache the winners",
                       description=__doc__.split("\n\n")[0].replace("\n", " "))
    add_args(p)
    p.set_defaults(func=run)


def _calls(op, device, dtype, size):
    """(label, thunk) pairs: each thunk calls the public op once with backend="auto"."""
    import torch

    import genfast.ops as O

    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    if op in ("ddpm_step", "ddim_step"):
        out = []
        for shape in _SAMPLING[size]:
            x, eps = rnd(*shape), rnd(*shape)
            ac = torch.linspace(0.9999, 0.01, 1000, dtype=torch.float32).to(device)
            if op == "ddpm_step":
                out.append(("x".join(map(str, shape)),
                            lambda x=x, eps=eps, ac=ac: O.ddpm_step(eps, 500, x, ac, seed=0)))
            else:
                out.append(("x".join(map(str, shape)),
                            lambda x=x, eps=eps, ac=ac: O.ddim_step(eps, 500, x, ac, prev_timestep=480)))
        return out
    if op == "solver_step":
        from genfast.ops.solver import SOLVER_COEFFICIENTS

        out = []
        for shape in _SAMPLING[size]:
            x, eps = rnd(*shape), rnd(*shape)
            coef = torch.zeros(len(SOLVER_COEFFICIENTS), device=device)
            coef[0] = 1.0
            out.append(("x".join(map(str, shape)), lambda x=x, eps=eps, coef=coef: O.solver_step(eps, x, coef)))
        return out
    if op == "gibbs":
        out = []
        for b, v, h, k in _GIBBS[size]:
            v0 = (torch.rand(b, v, generator=g) < 0.5).to(device=device, dtype=dtype)
            w, vb, hb = 0.1 * rnd(h, v), rnd(v), rnd(h)
            out.append((f"B={b} V={v} H={h} k={k}", lambda v0=v0, w=w, vb=vb, hb=hb, k=k:
                        O.gibbs(v0, w, vb, hb, k=k, seed=0)))
        return out
    if op == "vq":
        out = []
        for n, d, k in _VQ[size]:
            if device.type == "cpu" and n * k > _VQ_CPU_MAX:
                continue
            z, cb = rnd(n, d), rnd(k, d)
            out.append((f"N={n} D={d} K={k}", lambda z=z, cb=cb: O.vq_nearest(z, cb)))
        return out
    if op == "invconv":
        out = []
        for shape in _INVCONV[size]:
            x = rnd(*shape)
            w = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=g))[0].to(device)
            out.append(("x".join(map(str, shape)), lambda x=x, w=w: O.invconv1x1(x, w)))
        return out
    if op == "randn":
        return [(f"n={n}", lambda n=n: O.randn((n,), seed=0, dtype=dtype, device=device)) for n in _RANDN[size]]
    raise ValueError(f"genfast tune: --ops: unknown op {op!r}; choose from {OPS}")


def run(args) -> int:
    """Measure, print the table of winners, keep them in the cache. Returns 0."""
    import torch

    from genfast import tune
    from genfast.cli import resolve_device

    device = torch.device(resolve_device(args.device))
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    for o in ops:
        if o not in OPS:
            raise ValueError(f"genfast tune: --ops: unknown op {o!r}; choose from {OPS}")
    dtypes = []
    for name in (d.strip() for d in args.dtypes.split(",") if d.strip()):
        if name not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"genfast tune: --dtypes: {name!r} is not float32, float16 or bfloat16")
        dtypes.append(getattr(torch, name))
    size = "quick" if args.quick else "full"
    previous = os.environ.get("GENFAST_TUNE")
    os.environ["GENFAST_TUNE"] = "1" if args.keep else "force"
    rows = []
    try:
        for op in ops:
            for dtype in dtypes:
                for label, call in _calls(op, device, dtype, size):
                    before = dict(tune.last_times)
                    call()
                    new = {k: v for k, v in tune.last_times.items() if before.get(k) is not v}
                    for times in new.values():
                        best = min(times, key=times.get)
                        torch_t = times.get("torch")
                        ratio = f"{torch_t / times[best]:.2f}" if torch_t else "-"
                        cands = ", ".join(f"{b} {t * 1e3:.3g}" for b, t in sorted(times.items(), key=lambda i: i[1]))
                        rows.append((op, label, str(dtype).replace("torch.", ""), best, ratio, cands))
                    if not new:
                        rows.append((op, label, str(dtype).replace("torch.", ""), "(cached or fixed rule)", "-", ""))
    finally:
        if previous is None:
            os.environ.pop("GENFAST_TUNE", None)
        else:
            os.environ["GENFAST_TUNE"] = previous
    print(f"genfast tune: {tune.device_name(device)}; cache {tune.cache_file(device)}")
    head = ("op", "shape", "dtype", "winner", "torch / winner", "candidates (median ms)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    sys.stdout.flush()
    return 0


__all__ = ["OPS", "add_args", "register", "run"]
