"""Python hops from each public genfast.ops function to the compiled CPU module (docs/structure.md).

Runs every op once on small CPU tensors with ``backend="cpu"`` and prints the genfast frames on
the stack when the first ``genfast._C`` function is called: on the eager fast path, and on the
``torch.ops.genfast`` custom-op path (forced by a no-op ``TorchFunctionMode``, as under
``torch.compile`` or ``opcheck``). The C++ hops after the entry point are read from
``csrc/<op>_cpu.cpp`` (docs/structure.md lists them).

Usage: ``python tools/op_hops.py``
"""

from __future__ import annotations

import sys

import torch

import genfast.ops as O

_PKG = "/genfast/"


def _tracer(found: dict, name: str):
    def prof(frame, event, arg):
        if event != "c_call" or name in found:
            return
        owner = getattr(arg, "__self__", None)
        module = getattr(owner, "__name__", "") if owner is not None else ""
        module = module or getattr(arg, "__module__", "") or ""
        if not module.startswith("genfast._C"):
            return
        chain, f = [], frame
        while f is not None:
            if _PKG in f.f_code.co_filename:
                chain.append(f"{f.f_code.co_filename.split(_PKG)[-1]}:{f.f_code.co_name}")
            f = f.f_back
        found[name] = (chain[::-1], f"{module}.{getattr(arg, '__name__', '?')}")

    return prof


class _Passthrough(torch.overrides.TorchFunctionMode):
    """A mode that changes nothing but makes the ops take the custom-op path."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _cases():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g)
    ac = torch.linspace(0.999, 0.01, 100)
    perm, lower, upper = torch.randperm(3, generator=g), torch.randn(3, 3) * 0.1, torch.randn(3, 3) * 0.1
    bits = (torch.rand(4, 6, generator=g) < 0.5).float()
    return {
        "ddpm_step": lambda: O.ddpm_step(x, 50, x, ac, seed=1, backend="cpu"),
        "ddim_step": lambda: O.ddim_step(x, 50, x, ac, prev_timestep=40, backend="cpu"),
        "solver_step": lambda: O.solver_step(x, x, torch.zeros(20), backend="cpu"),
        "rand": lambda: O.rand((4, 5), seed=1, backend="cpu"),
        "randn": lambda: O.randn((4, 5), seed=1, backend="cpu"),
        "vq_nearest": lambda: O.vq_nearest(torch.randn(10, 4), torch.randn(5, 4), backend="cpu"),
        "vq_quantize": lambda: O.vq_quantize(torch.randn(10, 4), torch.randn(5, 4), backend="cpu"),
        "gibbs": lambda: O.gibbs(bits, torch.randn(5, 6), torch.zeros(6), torch.zeros(5), seed=1, backend="cpu"),
        "invconv1x1": lambda: O.invconv1x1(x, torch.randn(3, 3), backend="cpu"),
        "actnorm_invconv": lambda: O.actnorm_invconv(x, perm, lower, upper, torch.ones(3), torch.zeros(3),
                                                     backend="cpu"),
    }


def main() -> None:
    cases = _cases()
    for path in ("eager", "custom-op"):
        found: dict = {}
        for name, run in cases.items():
            run()  # first call: imports and caches
            sys.setprofile(_tracer(found, name))
            try:
                if path == "eager":
                    run()
                else:
                    with _Passthrough():
                        run()
            finally:
                sys.setprofile(None)
        print(f"== {path} path")
        for name in cases:
            chain, entry = found.get(name, ([], "(no genfast._C call)"))
            print(f"{name}: {len(chain)} Python frames, then {entry}")
            print("    " + " -> ".join(chain))


if __name__ == "__main__":
    main()
