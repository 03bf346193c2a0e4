"""Triton kernels of genfast's ops (imported lazily by genfast.ops; never at ``import genfast``).

On a CPU-only machine they run in Triton's interpreter with ``TRITON_INTERPRET=1``. The package
exports no names of its own: each kernel module lists its launchers in its ``__all__``.
"""

__all__: list[str] = []
