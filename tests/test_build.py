"""The package's build and import contract."""

import os
import shutil
import subprocess
import sys

import pytest
import torch


def test_import_loads_nothing_compiled():
    code = ("import sys, genfast; "
            "bad = [m for m in ('genfast._C', 'genfast._C_cuda', 'triton', 'genfast.ops') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cpu_module_built_with_openmp():
    from genfast import _C

    cfg = _C.build_config()
    assert cfg["openmp"] is True


@pytest.mark.skipif(shutil.which("nvcc") is None or os.environ.get("GENFAST_CUDA") == "OFF",
                    reason="nvcc not on PATH (the CUDA module is built only where nvcc is found)")
def test_cuda_module_built_when_nvcc_present():
    """CI compiles the CUDA sources: with nvcc present the CUDA module must exist and import,
    even on a machine without a GPU (it links the static CUDA runtime)."""
    from genfast import _C_cuda

    cfg = _C_cuda.build_config()
    archs = cfg["archs"].split(",")
    if torch.cuda.is_available():  # built for this card (a GPU run may build for its card alone)
        major, minor = torch.cuda.get_device_capability()
        assert f"{major}{minor}" in archs or f"{major}{minor}a" in archs, archs
    else:  # the default: Ampere and Hopper
        assert "80" in archs and "90" in archs, archs
