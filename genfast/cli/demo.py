"""``genfast demo``: every model family's demo stage in turn, then one table to read at a glance.

Each family module (see :mod:`genfast.cli.families`) contributes a stage with its own time
budget; the digits data and the Frechet digit distance are built once, before the stages.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

__all__ = ["DEMO_TOTAL_BUDGET_S", "DemoContext", "DemoData", "format_table", "run_demo"]

# `make demo` must finish within 15 min on the 2-core CPU machine, set-up and build (about
# 3 min) included; 9 min for all stages leaves room for a slow machine.
DEMO_TOTAL_BUDGET_S = 540.0


@dataclass
class DemoData:
    """The bundled digits, split once: ``train`` and ``test`` are ``(images [N, 1, 8, 8] float32
    in [-1, 1], labels [N] int64)`` (see :func:`genfast.data.load_digits`)."""

    train: tuple
    test: tuple


@dataclass
class DemoContext:
    """What a demo stage gets (see :mod:`genfast.cli.families` for the contract).

    Attributes:
        out_dir: folder for the stage's files (PNG grids, checkpoints).
        device: ``torch.device`` to run on.
        seed: seed for everything random in the stage.
        quick: tiny settings (tests, ``--quick``): the stage must finish in seconds.
        budget_s: this stage's wall-time budget in seconds.
        stage: the stage's name (the family's first name), used by :meth:`log`.
        show_progress: whether :meth:`progress` draws bars.
    """

    out_dir: Path
    device: object
    seed: int = 0
    quick: bool = False
    budget_s: float = 0.0
    stage: str = ""
    show_progress: bool = True
    _data: DemoData | None = field(default=None, repr=False)
    _metric: object = field(default=None, repr=False)
    _backends: dict | None = field(default=None, repr=False)
    _start: float = field(default_factory=time.perf_counter, repr=False)

    def log(self, msg: str) -> None:
        """Prints ``[stage] msg`` at once (above any progress bar)."""
        from tqdm.auto import tqdm

        tqdm.write(f"[{self.stage}] {msg}", file=sys.stdout)
        sys.stdout.flush()

    def progress(self, iterable=None, **kwargs):
        """A tqdm progress bar (``tqdm.auto.tqdm(iterable, **kwargs)``), silent when progress is off."""
        from tqdm.auto import tqdm

        kwargs.setdefault("dynamic_ncols", True)
        kwargs.setdefault("leave", False)
        return tqdm(iterable, disable=not self.show_progress, **kwargs)

    def time_left(self) -> float:
        """Seconds left of this stage's budget (negative once over)."""
        return self.budget_s - (time.perf_counter() - self._start)

    @property
    def data(self) -> DemoData:
        """The digits' train and test splits (loaded on first use)."""
        if self._data is None:
            from genfast.data import load_digits

            self._data = DemoData(load_digits("train"), load_digits("test"))
        return self._data

    @property
    def metric(self):
        """The shared :class:`genfast.metrics.DigitMetric` of the digits (built on first use)."""
        if self._metric is None:
            from genfast.metrics import DigitMetric

            self._metric = DigitMetric.from_data(
                self.data.train, self.data.test, seed=self.seed, progress=self.show_progress
            )
        return self._metric

    @property
    def backends(self) -> dict:
        """:func:`genfast.ops.backends`: backend name -> whether it can run here."""
        if self._backends is None:
            import genfast.ops

            self._backends = dict(genfast.ops.backends())
        return self._backends


def _fmt_time(s: float) -> str:
    return f"{s:.1f} s" if s < 600 else f"{s / 60:.1f} min"


def format_table(rows: list[dict]) -> str:
    """Formats demo rows as a plain-text table (columns stage, what, figure, ok, time).

    Args:
        rows: dicts with ``stage``, ``what``, ``figure``, ``time_s`` and optionally ``ok``.

    Returns:
        The table, lines joined by newlines.
    """
    has_ok = any(r.get("ok") is not None for r in rows)
    header = ["stage", "what", "figure"] + (["target"] if has_ok else []) + ["time"]
    body = []
    for r in rows:
        line = [str(r.get("stage", "")), str(r.get("what", "")), str(r.get("figure", ""))]
        if has_ok:
            ok = r.get("ok")
            line.append("" if ok is None else ("met" if ok else "MISSED"))
        t = r.get("time_s")
        line.append("" if t is None else _fmt_time(float(t)))
        body.append(line)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    right = {len(header) - 1}

    def fmt(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), sep] + [fmt(b) for b in body])


def _stages(families: dict[str, ModuleType], only: list[str] | None) -> list[tuple[str, ModuleType]]:
    seen, out = set(), []
    for mod in families.values():
        if id(mod) in seen or not hasattr(mod, "demo_stage"):
            continue
        seen.add(id(mod))
        out.append((mod.NAMES[0], mod))
    if only:
        unknown = [n for n in only if n not in families]
        if unknown:
            raise ValueError(
                f"--only: unknown stage(s) {', '.join(unknown)}; known: {', '.join(n for n, _ in out)}"
            )
        wanted = {id(families[n]) for n in only}
        out = [(n, m) for n, m in out if id(m) in wanted]
    return sorted(out, key=lambda nm: (getattr(nm[1], "DEMO_ORDER", 1000), nm[0]))


def run_demo(args, families: dict[str, ModuleType], errors: dict[str, str]) -> int:
    """Runs the demo: shared set-up, every stage in order, the final table.

    Args:
        args: the parsed ``genfast demo`` options (``out``, ``only``, ``quick``, ``device``,
            ``seed``, ``progress``).
        families: command-line name -> family module (:func:`genfast.cli.families.discover`).
        errors: family modules that failed to load -> why (each becomes a failed row).

    Returns:
        Exit status: 0 when every stage ran, 1 when one failed.
    """
    import torch

    from genfast.cli import resolve_device

    t_demo = time.perf_counter()
    only = None
    if args.only is not None:
        # an empty or blank --only names no stage: an error, not "run everything"
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        if not only:
            raise ValueError(f"--only: no stage named in {args.only!r}; give a comma-separated list such as "
                             "ddpm,glow (or leave --only out to run every stage)")
    device = resolve_device(args.device)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = _stages(families, only)
    total_budget = sum(float(getattr(m, "DEMO_BUDGET_S", 0.0)) for _, m in stages)
    print(
        f"genfast demo: {len(stages)} stage(s) [{', '.join(n for n, _ in stages)}], budget "
        f"{total_budget:.0f} s of {DEMO_TOTAL_BUDGET_S:.0f} s; device {device}, "
        f"{torch.get_num_threads()} CPU threads; outputs in {out_dir.resolve()}"
        + ("; quick settings" if args.quick else ""),
        flush=True,
    )
    rows: list[dict] = []
    failed = False
    for name, why in errors.items():
        if only is None:
            rows.append({"stage": name, "what": "family module", "figure": f"FAILED: {why}", "time_s": 0.0})
            failed = True

    ctx = DemoContext(
        out_dir=out_dir,
        device=device,
        seed=args.seed,
        quick=args.quick,
        stage="setup",
        show_progress=args.progress,
    )
    t0 = time.perf_counter()
    try:
        metric = ctx.metric
        n = 64
        rows.append(
            {
                "stage": "setup",
                "what": "digit classifier + data",
                "figure": f"test acc {100 * metric.accuracy:.1f}%; FDD@{n}: floor {metric.floor(n):.1f}, "
                f"ceiling {metric.ceiling(n):.0f}",
                "time_s": time.perf_counter() - t0,
            }
        )
        ctx.log(f"backends here: {', '.join(k for k, v in ctx.backends.items() if v)}")
    except Exception as exc:
        traceback.print_exc()
        rows.append(
            {
                "stage": "setup",
                "what": "digit classifier + data",
                "figure": f"FAILED: {exc}",
                "time_s": time.perf_counter() - t0,
            }
        )
        failed = True
        stages = []

    for name, mod in stages:
        budget = float(getattr(mod, "DEMO_BUDGET_S", 0.0))
        ctx.stage, ctx.budget_s, ctx._start = name, budget, time.perf_counter()
        print(f"\n== stage {name} (budget {budget:.0f} s) ==", flush=True)
        try:
            stage_rows = list(mod.demo_stage(ctx) or [])
        except Exception as exc:
            traceback.print_exc()  # the table keeps one line; the traceback says where
            stage_rows = [{"what": "stage", "figure": f"FAILED: {type(exc).__name__}: {exc}", "ok": False}]
            failed = True
        spent = time.perf_counter() - ctx._start
        for r in stage_rows:
            r.setdefault("stage", name)
            rows.append(r)
        over = spent > budget * 1.1 and not args.quick
        rows.append(
            {
                "stage": name,
                "what": "stage total",
                "figure": f"budget {budget:.0f} s" + (" (OVER)" if over else ""),
                "time_s": spent,
            }
        )

    total = time.perf_counter() - t_demo
    rows.append({"stage": "total", "what": "", "figure": f"budget {total_budget:.0f} s", "time_s": total})
    print("\n" + format_table(rows), flush=True)
    return 1 if failed else 0
