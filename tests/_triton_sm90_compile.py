"""Compile every Triton kernel of genfast for a Hopper GPU (sm_90) on a machine without one.

Run as a script in a process *without* ``TRITON_INTERPRET`` (tests/test_triton_compile.py does
that). The interpreter accepts code that the compiler rejects (globals that are not
``tl.constexpr``, ``.to`` on an integer argument that Triton specialises to the constant 1, ...):
this catches those on the CPU-only CI. Each ``kernel[grid](...)`` launch of the public ops is
replaced by ``triton.compile`` of that launch's signature for ``GPUTarget("cuda", 90, 32)``
(through PTX to a cubin with the ptxas bundled with Triton); nothing runs, outputs are
meaningless. Prints one line per distinct compiled specialisation and ``OK <count>`` at the end.
"""

from __future__ import annotations

import os
import sys

os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
          torch.int64: "i64", torch.int32: "i32", torch.uint8: "u8", torch.int8: "i8", torch.bool: "i1"}
_seen: set = set()


def _compile_only(self, grid):
    def launch(*args, **kwargs):
        names = self.arg_names
        values = dict(zip(names, args))
        values.update(kwargs)
        signature, constexprs = {}, {}
        dns = set(self.do_not_specialize or ())
        for i, p in enumerate(self.params):
            v = values[p.name]
            if p.is_constexpr or v is None:
                signature[p.name] = "constexpr"
                constexprs[p.name] = v
            elif isinstance(v, torch.Tensor):
                signature[p.name] = "*" + _TYPES[v.dtype]
            elif isinstance(v, bool):
                signature[p.name] = "i1"
            elif isinstance(v, int):
                if v == 1 and p.name not in dns and i not in dns:  # Triton specialises 1 to a constant
                    signature[p.name] = "constexpr"
                    constexprs[p.name] = 1
                else:
                    signature[p.name] = "i32" if -(2**31) <= v < 2**31 else "i64"
            elif isinstance(v, float):
                signature[p.name] = "fp32"
            else:
                raise TypeError(f"{self.fn.__name__}: unhandled argument {p.name}={v!r}")
        key = (self.fn.__name__, tuple(sorted(signature.items())), tuple(sorted(constexprs.items())))
        if key not in _seen:
            _seen.add(key)
            options = {o: kwargs[o] for o in ("num_warps", "num_stages") if o in kwargs}
            triton.compile(ASTSource(fn=self, signature=signature, constexprs=constexprs), target=TARGET,
                           options=options)
            print(self.fn.__name__, {k: v for k, v in constexprs.items()})

    return launch


def main() -> None:
    JITFunction.__getitem__ = _compile_only
    import genfast._backends as B

    B.triton_interpret = lambda: True  # let backend="triton" take the CPU tensors here
    import genfast.ops as O
    import genfast.triton.gibbs as TG
    import genfast.triton.invconv as TI
    import genfast.triton.vq as TV

    TV.triton_interpret = lambda: False
    TG.triton_interpret = lambda: False
    TI.triton_interpret = lambda: False
    g = torch.Generator().manual_seed(0)

    # random: normal and uniform, fp32 / fp16, n = 1 (specialised) and n > 1
    for fn in (O.randn, O.rand):
        for dt in (torch.float32, torch.float16):
            for n in (1, 3000):
                fn((n,), seed=1, dtype=dt, backend="triton")
    # sampling step: DDPM with generated and given noise, learned range, thresholding, clip; DDIM
    ac = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    for dt in (torch.float32, torch.bfloat16):
        for shape in ((1, 1, 1, 1), (2, 3, 8, 8)):
            x = torch.randn(shape, generator=g).to(dt)
            O.ddpm_step(x, 500, x, ac, seed=1, backend="triton")
            O.ddpm_step(x, 500, x, ac, noise=torch.randn_like(x), thresholding=True, backend="triton")
            O.ddpm_step(torch.cat([x, x], 1), 500, x, ac, seed=1, variance_type="learned_range",
                        backend="triton")
            O.ddim_step(x, 501, x, ac, prev_timestep=481, backend="triton")
            O.ddim_step(x, 501, x, ac, prev_timestep=481, eta=0.5, seed=2, clip_sample=True, backend="triton")
    # general solver step: history lengths 0-3, last sample, guidance with rescale, clip and
    # threshold, given and generated noise, one coefficient row and one per batch row
    for dt in (torch.float32, torch.float16):
        for shape in ((1, 1), (3, 2, 8, 8)):
            x = torch.randn(shape, generator=g).to(dt)
            coef = torch.randn(shape[0], 20, generator=g)
            for k in range(4):
                O.solver_step(x, x, coef[:1], history=[x] * k, seed=3, backend="triton")
            O.solver_step(x, x, coef, history=[x], last_sample=x, model_output_uncond=x, guidance_scale=2.0,
                          guidance_rescale=0.5, clip_sample_range=1.0, noise=torch.randn_like(x),
                          return_corrected=True, backend="triton")
            O.solver_step(x, x, coef, thresholding=True, round_converted=False, return_converted=False,
                          backend="triton")
    # gibbs: one chain (B = 1) and several, Bernoulli and Gaussian visible units; both product
    # forms; fp32 / fp16 / bf16 (3, 2 and 1 bfloat16 weight terms)
    for prec in ("bf16x3", "ieee"):
        tb = f"triton:{prec}"
        for dt in (torch.float32, torch.float16, torch.bfloat16) if prec == "bf16x3" else (torch.float32,):
            for b in (1, 5):
                v = (torch.rand(b, 20, generator=g) < 0.5).to(dt)
                w = torch.randn(7, 20, generator=g).to(dt)
                z20, z7 = torch.zeros(20, dtype=dt), torch.zeros(7, dtype=dt)
                O.gibbs(v, w, z20, z7, k=2, seed=1, backend=tb)
                O.gibbs(torch.randn(b, 20).to(dt), w, z20, z7, k=1, seed=1, visible="gaussian", backend=tb)
        one = torch.ones(1, 1)  # B = V = H = k = 1: every integer argument specialised to 1
        O.gibbs(one, one, one[0], one[0], k=1, seed=1, backend=tb)
    # the composed path's fused epilogue: Bernoulli and Gaussian, one element and several
    for b in (1, 5):
        w = torch.randn(7, 20, generator=g)
        z20, z7 = torch.zeros(20), torch.zeros(7)
        O.gibbs((torch.rand(b, 20, generator=g) < 0.5).float(), w, z20, z7, k=2, seed=1, backend="triton:gemm")
        O.gibbs(torch.randn(b, 20), w, z20, z7, k=1, seed=1, visible="gaussian", backend="triton:gemm")
    # vq: l2 and cosine, fp32 / bf16, indices only and the fused quantise with statistics
    for dt in (torch.float32, torch.bfloat16):
        for n in (1, 70):
            z = torch.randn(n, 20, generator=g).to(dt)
            e = torch.randn(33, 20, generator=g).to(dt)
            O.vq_nearest(z, e, backend="triton")
            O.vq_nearest(z, e, backend="triton:ieee")
            O.vq_nearest(z, e, use_cosine_sim=True, backend="triton")
            O.vq_quantize(z, e, return_statistics=True, backend="triton")
    # invconv: with and without bias, fp32 / fp16, one pixel and several; both product forms
    for prec in ("tf32x3", "ieee"):
        tb = f"triton:{prec}"
        for dt in (torch.float32, torch.float16):
            for shape in ((1, 1, 1, 1), (2, 5, 3, 4)):
                c = shape[1]
                x = torch.randn(shape, generator=g).to(dt)
                w = torch.randn(c, c, generator=g).to(dt)
                O.invconv1x1(x, w, backend=tb)
                O.invconv1x1(x, w, torch.randn(c).to(dt), backend=tb)
    # the one-launch parameter fold: widths 16 / 32 / 64 (C = 5, 17, 48), both directions, with
    # and without actnorm
    for c in (5, 17, 48):
        f32 = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
        lo, up, sg, ls, s, b = f32(c, c), f32(c, c), torch.ones(c), f32(c), f32(c), f32(c)
        out = (torch.empty(c, c), torch.empty(c), torch.empty(()), torch.empty((), dtype=torch.int32))
        for reverse in (False, True):
            TI.fold_lu_triton(torch.randperm(c), lo, up, sg, ls, s, b, *out, hw=4, reverse=reverse)
            TI.fold_lu_triton(torch.randperm(c), lo, up, sg, ls, None, None, *out, hw=4, reverse=reverse)
    print("OK", len(_seen))


if __name__ == "__main__":
    sys.exit(main())
