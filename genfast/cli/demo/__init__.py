"""``genfast demo``: every model family's demo stage in turn, then one table to read at a glance.

The stages live in this package, one module each beside this runner, apart from the argparse
modules of :mod:`genfast.cli.families`; the digits data and the Frechet digit distance are built
once, before the stages. The contract of a stage module (every module here whose name does not
start with ``_``; nobody needs to be told):

``NAME: str``
    The stage's name in the table and in ``--only`` (the family's first command-line name).
``FAMILY: str``
    The module of :mod:`genfast.cli.families` it shows: ``--only`` takes any of that family's
    names too, and the stage is left out when that family failed to load.
``ORDER: int``
    Position in ``genfast demo``, ascending (ddpm is 10; leave gaps: 20, 30, ...).
``BUDGET_S: float``
    Seconds of wall time this stage may use on the 2-core CPU machine, everything included. The
    sum over all stages must stay within :data:`DEMO_TOTAL_BUDGET_S` (a test checks it). The
    runner does not stop a stage: use ``ctx.time_left()`` to size the work and leave margin.
``FIGURES: dict[str, str]`` (optional)
    What each kind of figure the stage prints means ("bits/dim": "..."): printed under the final
    table, so that every figure in it is explained; the Frechet digit distance is explained once
    by the runner (:func:`explain_fdd`), not by the stages.
``run(ctx: DemoContext) -> list[dict]``
    Does the stage's work and returns the rows of the final table, each a dict with ``what``
    (str, short: "DDIM 50 steps, 64 samples"), ``figure`` (str, the number a person reads),
    ``time_s`` (float seconds), and optionally ``ok`` (True/False when the row has a target) and
    ``stage`` (default ``NAME``). An exception becomes a "FAILED" row and makes ``genfast demo``
    exit with status 1; the other stages still run.

Training within a time budget: a stage trains at least a floor of steps that gives a meaningful
model (``min_steps`` of the engine), even when the budget runs out first on a busy or slow
machine, and reports the overrun (:meth:`DemoContext.training_row`) instead of showing the
figures of an untrained model.

:class:`DemoContext` documents what a stage gets (``out_dir``, ``device``, ``seed``, ``quick``,
``budget_s``, ``time_left()``, ``log``, ``progress``, ``data``, ``metric``, ``backends``). Test a
stage with ``genfast.cli.main(["demo", "--quick", "--only", NAME, "--out", str(tmp_path),
"--no-progress"]) == 0``, with ``GENFAST_CACHE`` pointed at a temporary folder.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

__all__ = ["DEMO_TOTAL_BUDGET_S", "DemoContext", "DemoData", "discover_stages", "explain_fdd", "format_table",
           "run_demo"]

# `make demo` must finish within 15 min on the 2-core CPU machine, set-up and build (about
# 3 min) included; 9 min for all stages leaves room for a slow machine.
DEMO_TOTAL_BUDGET_S = 540.0
# samples per Frechet digit distance in most stages (the floor and ceiling of the explanation)
FDD_SAMPLES = 64
# A stage is over its budget past this factor (timings on a shared machine vary by some percent).
OVER_FACTOR = 1.1


def explain_fdd(metric=None, n: int = FDD_SAMPLES) -> str:
    """The Frechet digit distance spelled out, with its floor and ceiling at ``n`` samples when
    ``metric`` (a :class:`genfast.metrics.DigitMetric`) is given."""
    text = (
        "FDD = Frechet digit distance (lower is better): FID's recipe (Heusel et al. 2017) with a small digit "
        "classifier, trained on the train split, in place of Inception: Gaussians are fitted to the classifier's "
        "penultimate-layer features of the samples and of the test split, and FDD is the Frechet distance "
        "between the two. A finite sample's distance is biased upwards, so each figure comes with its floor "
        "and ceiling at the same sample count: floor = real train digits (the best a model can reach), "
        "ceiling = uniform noise (a useless model); 'Nx floor' = FDD / floor."
    )
    if metric is not None:
        text += (f" At {n} samples: floor {metric.floor(n):.1f}, ceiling {metric.ceiling(n):.0f} (classifier test "
                 f"accuracy {100 * metric.accuracy:.1f}%).")
    return text


@dataclass
class DemoData:
    """The bundled digits, split once: ``train`` and ``test`` are ``(images [N, 1, 8, 8] float32
    in [-1, 1], labels [N] int64)`` (see :func:`genfast.data.load_digits`)."""

    train: tuple
    test: tuple


@dataclass
class DemoContext:
    """What a demo stage gets (the contract is in this package's docstring).

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
    overruns: list = field(default_factory=list, repr=False)

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

    def fit_budget(self, planned_s: float, floor: int, quick_steps: int = 3) -> dict:
        """The ``fit`` keywords of a time-budgeted training of this stage: ``planned_s`` seconds and at
        least ``floor`` steps (the engine's ``min_steps``; ``quick_steps`` steps under :attr:`quick`),
        batches of 128, the stage's seed and progress bars (report it with :meth:`training_row`)."""
        return {"steps": quick_steps if self.quick else None, "time_budget_s": planned_s, "min_steps": floor,
                "batch_size": 128, "seed": self.seed, "progress": self.show_progress}

    def training_row(self, what: str, info: dict, *, planned_s: float, floor: int, figure: str) -> dict:
        """The table row of a training run that had ``planned_s`` seconds and a floor of ``floor``
        steps (``info``: what ``fit`` returned, with ``steps`` and ``seconds``; ``what``: the row's
        text, where ``{steps}`` stands for the steps taken).

        When the floor outlasted the plan (a busy or slow machine), the overrun is logged at once,
        kept in :attr:`overruns` (the runner names it in the stage's total) and written in the
        row: the figures that follow are those of a model trained ``floor`` steps, not of one cut
        short by the clock.

        Returns:
            ``{"what": what, "figure": figure (+ the overrun), "time_s": seconds}``.
        """
        steps, seconds = int(info["steps"]), float(info["seconds"])
        what = what.format(steps=steps)
        row = {"what": what, "figure": figure, "time_s": seconds}
        if not self.quick and steps <= floor and seconds > OVER_FACTOR * planned_s:
            over = seconds - planned_s
            self.overruns.append(f"{what.split(' (')[0]}: floor of {floor} steps, {over:.0f} s over")
            self.log(f"budget overrun: the floor of {floor} training steps took {seconds:.0f} s, {over:.0f} s more "
                     f"than the {planned_s:.0f} s planned (a busy or slow machine); the figures that follow are "
                     f"those of a {floor}-step model, and the stage runs over its budget")
            row["figure"] += f"; OVER plan by {over:.0f} s (floor of {floor} steps)"
        return row

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


def format_table(rows: list[dict], notes: list[str] | None = None) -> str:
    """Formats demo rows as a plain-text table (columns stage, what, figure, ok, time).

    Args:
        rows: dicts with ``stage``, ``what``, ``figure``, ``time_s`` and optionally ``ok``.
        notes: lines printed under the table (what its figures mean).

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
    return "\n".join([fmt(header), sep] + [fmt(b) for b in body] + ([sep, *notes] if notes else []))


def _legend(stages, metric, has_ok: bool) -> list[str]:
    """The footer of the final table: the Frechet digit distance in one line, then what each
    stage's own figures mean (its ``FIGURES``), the target column and the budget."""
    lines = ["Reading the figures:"]
    fdd = "FDD: Frechet digit distance (explained at the top), lower is better"
    if metric is not None:
        fdd += (f"; at {FDD_SAMPLES} samples from floor {metric.floor(FDD_SAMPLES):.1f} (real digits) to ceiling "
                f"{metric.ceiling(FDD_SAMPLES):.0f} (uniform noise); each row gives its own at its sample count")
    lines.append("  " + fdd)
    seen = set()
    for mod in stages:
        for key, meaning in getattr(mod, "FIGURES", {}).items():
            if key not in seen:
                seen.add(key)
                lines.append(f"  {key}: {meaning}")
    if has_ok:
        lines.append("  target: 'met' or 'MISSED' against the target the row names")
    lines.append(f"  time: wall seconds; 'OVER' in a stage total: more than {OVER_FACTOR:g}x its budget (a busy or "
                 "slow machine: training still runs its floor of steps, and takes longer)")
    return [_wrap(line, indent="      ") for line in lines]


def discover_stages() -> tuple[list[ModuleType], dict[str, str]]:
    """Imports every stage module of this package.

    Returns:
        ``(stages, errors)``: the stage modules sorted by ``(ORDER, NAME)``, and module name ->
        why, for each module that failed to import or lacks part of the contract.
    """
    stages, errors = [], {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            mod = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as exc:  # one broken stage must not break the demo's other stages
            errors[info.name] = f"import failed: {type(exc).__name__}: {exc}"
            continue
        missing = [a for a in ("NAME", "FAMILY", "ORDER", "BUDGET_S", "run") if not hasattr(mod, a)]
        if missing:
            errors[info.name] = f"missing {', '.join(missing)}"
            continue
        stages.append(mod)
    return sorted(stages, key=lambda m: (m.ORDER, m.NAME)), errors


def _stages(families: dict[str, ModuleType], family_errors: dict[str, str], only: list[str] | None):
    stages, errors = discover_stages()
    # a stage whose family failed to load already has its failed row
    stages = [m for m in stages if m.FAMILY not in family_errors]
    errors = {k: v for k, v in errors.items() if k not in family_errors}
    if only:
        def family_of(name):
            mod = families.get(name)
            return mod.__name__.rsplit(".", 1)[-1] if mod is not None else None

        unknown = [n for n in only if n not in {m.NAME for m in stages} and family_of(n) is None]
        if unknown:
            raise ValueError(
                f"--only: unknown stage(s) {', '.join(unknown)}; known: {', '.join(m.NAME for m in stages)}"
            )
        wanted = set(only) | {family_of(n) for n in only}
        stages = [m for m in stages if m.NAME in wanted or m.FAMILY in wanted]
        errors = {k: v for k, v in errors.items() if k in wanted}
    return stages, errors


def run_demo(args, families: dict[str, ModuleType], errors: dict[str, str]) -> int:
    """Runs the demo: shared set-up, every stage in order, the final table.

    Args:
        args: the parsed ``genfast demo`` options (``out``, ``only``, ``quick``, ``device``,
            ``seed``, ``progress``).
        families: command-line name -> family module (:func:`genfast.cli.families.discover`).
        errors: family modules that failed to load -> why (each becomes a failed row, and their
            stages are left out).

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
    stages, stage_errors = _stages(families, errors, only)
    total_budget = sum(float(m.BUDGET_S) for m in stages)
    print(
        f"genfast demo: {len(stages)} stage(s) [{', '.join(m.NAME for m in stages)}], budget "
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
    for name, why in stage_errors.items():
        rows.append({"stage": name, "what": "demo stage module", "figure": f"FAILED: {why}", "time_s": 0.0})
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
        n = FDD_SAMPLES
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
        print(_wrap(explain_fdd(metric, n)), flush=True)
    except Exception as exc:
        traceback.print_exc()
        metric = None
        print(_wrap(explain_fdd()), flush=True)
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

    for mod in stages:
        name, budget = mod.NAME, float(mod.BUDGET_S)
        ctx.stage, ctx.budget_s, ctx._start, ctx.overruns = name, budget, time.perf_counter(), []
        print(f"\n== stage {name} (budget {budget:.0f} s) ==", flush=True)
        try:
            stage_rows = list(mod.run(ctx) or [])
        except Exception as exc:
            traceback.print_exc()  # the table keeps one line; the traceback says where
            stage_rows = [{"what": "stage", "figure": f"FAILED: {type(exc).__name__}: {exc}", "ok": False}]
            failed = True
        spent = time.perf_counter() - ctx._start
        for r in stage_rows:
            r.setdefault("stage", name)
            if args.quick and r.get("ok") is not None and not str(r.get("figure", "")).startswith("FAILED"):
                r["ok"] = None  # tiny models: targets are judged on the full settings only
            rows.append(r)
        figure = f"budget {budget:.0f} s"
        if spent > budget * OVER_FACTOR and not args.quick:
            figure += f" (OVER by {spent - budget:.0f} s" + (f"; {'; '.join(ctx.overruns)})" if ctx.overruns else ")")
        rows.append({"stage": name, "what": "stage total", "figure": figure, "time_s": spent})

    total = time.perf_counter() - t_demo
    rows.append({"stage": "total", "what": "", "figure": f"budget {total_budget:.0f} s", "time_s": total})
    notes = _legend(stages, metric, any(r.get("ok") is not None for r in rows))
    if args.quick:
        notes.append(_wrap("  quick settings: tiny models trained a few steps, so the figures are far from their "
                           "targets, which are not judged", indent="      "))
    print("\n" + format_table(rows, notes), flush=True)
    return 1 if failed else 0


def _wrap(text: str, width: int = 100, indent: str = "") -> str:
    import textwrap

    return textwrap.fill(text, width=width, subsequent_indent=indent, break_on_hyphens=False)
