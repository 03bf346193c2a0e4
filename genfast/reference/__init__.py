"""The oracles: one plain-PyTorch module per genfast op, with the public op's signature, written
to be read rather than to be fast. Every backend of every op is tested against them, and they are
public so that anyone writing a kernel of their own can test it the same way
(:mod:`genfast.testing` holds the tolerance rule and the input strategies).

========================  ===========================================================================
module                    oracle of
========================  ===========================================================================
``sampling_step``         ``genfast.ops.ddpm_step`` / ``ddim_step`` (``compute_dtype=``)
``solver_step``           ``genfast.ops.solver_step`` (``compute_dtype=``)
``vq``                    ``genfast.ops.vq_nearest`` / ``vq_quantize`` (float64 distances; exact ties
                          to the lowest index, as ``torch.argmin``)
``invconv``               ``genfast.ops.invconv1x1`` / ``actnorm_invconv`` and the LU algebra
``gibbs``                 ``genfast.ops.gibbs`` (and its half-steps, for teacher-forced comparison)
``random``                ``genfast.ops.randn`` / ``rand``: the Philox4x32-10 stream in integer
                          arithmetic, bit for bit
========================  ===========================================================================

They compute in float32 for float32 / float16 / bfloat16 inputs and in float64 for float64
inputs, so float64 copies of the inputs give the float64 oracle. The sampling steps also take
``compute_dtype=``, which gives "plain PyTorch in the low dtype" of flash-attention's rule; for
the others a test writes that plain computation itself (``torch.einsum`` for the 1x1
convolution). The
submodules are imported by name (``from genfast.reference import vq``); this package imports
nothing eagerly.
"""

import importlib as _importlib

__all__ = ["gibbs", "invconv", "random", "sampling_step", "solver_step", "vq"]


def __getattr__(name):
    """``genfast.reference.<oracle>`` imports that oracle module on first use."""
    if name in __all__:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
