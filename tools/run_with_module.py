"""Run pytest with ``genfast._C`` taken from another build (a sanitizer build of ``make sanitize``).

Usage: ``python tools/run_with_module.py BUILD_DIR [pytest arguments]``. The package's Python
sources are this checkout's; the editable install's path hook (which maps ``genfast._C`` to the
regular build) is removed first, and a package folder of links (the sources plus
``BUILD_DIR/_C*.so``) goes first on ``sys.path``. ``genfast._C_cuda`` is left out.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Link the package together, check that ``genfast._C`` is the one asked for, run pytest."""
    build = Path(sys.argv[1]).resolve()
    so = sorted(build.glob("_C.*.so"))
    if not so:
        raise SystemExit(f"no _C module in {build}")
    pkg = build / "pkg" / "genfast"
    pkg.mkdir(parents=True, exist_ok=True)
    for link in pkg.iterdir():
        link.unlink()
    for src in (ROOT / "genfast").iterdir():
        if src.name.endswith(".so") or src.name == "__pycache__":
            continue
        (pkg / src.name).symlink_to(src)
    (pkg / so[0].name).symlink_to(so[0])
    sys.meta_path[:] = [f for f in sys.meta_path if "skbc" not in repr(f).lower() and "editable" not in repr(f).lower()]
    sys.path.insert(0, str(pkg.parent))
    import genfast._C

    assert Path(genfast._C.__file__).resolve() == so[0], genfast._C.__file__
    print(f"genfast._C from {so[0]}", flush=True)
    import pytest

    return pytest.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
