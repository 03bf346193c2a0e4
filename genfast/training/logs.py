"""Training logs: ``metrics.csv`` (one row per step), ``loss.png`` and, optionally, TensorBoard.

The plot uses matplotlib when it is installed and Pillow otherwise (a plain line chart of every
column whose name contains "loss", against the step, on a shared axis).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

__all__ = ["MetricsLog", "plot_losses"]


class MetricsLog:
    """Appends rows to ``out/metrics.csv`` and redraws ``out/loss.png`` every ``plot_every`` rows.

    Args:
        out: the run's folder (created).
        append: keep the rows of a previous run (resuming); the columns are the union.
        tensorboard: also write TensorBoard scalars under ``out/tensorboard``.
        plot_every: rows between redraws of ``loss.png`` (and at :meth:`close`).
        upto: with ``append``, drop the old rows after this step (written after the checkpoint a
            resumed run starts from, before the process was killed).

    Raises:
        ValueError: ``tensorboard`` without the tensorboard package.
    """

    def __init__(self, out: Path, *, append: bool = False, tensorboard: bool = False, plot_every: int = 200,
                 upto: int | None = None):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "metrics.csv"
        self.rows: list[dict] = []
        if append and self.path.is_file():
            with self.path.open(newline="") as f:
                for r in csv.DictReader(f):
                    row = {k: _num(v) for k, v in r.items()}
                    if isinstance(row.get("step"), float):
                        row["step"] = int(row["step"])
                    if upto is None or not isinstance(row.get("step"), int) or row["step"] <= upto:
                        self.rows.append(row)
        self.plot_every = plot_every
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
            self.tb = SummaryWriter(str(self.out / "tensorboard"))
        self._dirty = 0

    def add(self, step: int, values: dict) -> None:
        """One row: ``step`` and named floats."""
        self.rows.append({"step": step, **values})
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        self._dirty += 1
        if self._dirty >= self.plot_every:
            self.flush()

    def flush(self) -> None:
        """Write the CSV and the plot."""
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            for r in self.rows:
                w.writerow({k: r.get(k, "") for k in cols})
        if self.rows:
            plot_losses(self.rows, self.out / "loss.png")
        self._dirty = 0

    def close(self) -> None:
        """Final flush."""
        self.flush()
        if self.tb is not None:
            self.tb.close()


def _num(v):
    try:
        return float(v) if v not in ("", None) else ""
    except ValueError:
        return v


def plot_losses(rows: list[dict], path: Path) -> Path:
    """Draw every ``*loss*`` column of ``rows`` against ``step`` into ``path`` (PNG)."""
    keys = [k for k in rows[0] if "loss" in k or k in ("bits_per_dim", "recon_error")]
    for r in rows:
        keys += [k for k in r if ("loss" in k) and k not in keys]
    series = {k: [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
              for k in keys}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for k, pts in series.items():
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k, lw=1)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path
    except ImportError:
        pass
    from PIL import Image, ImageDraw

    w, h, pad = 600, 400, 40
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    pts_all = [p for pts in series.values() for p in pts]
    if pts_all:
        x0, x1 = min(p[0] for p in pts_all), max(p[0] for p in pts_all)
        y0, y1 = min(p[1] for p in pts_all), max(p[1] for p in pts_all)
        x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
        colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
        draw.rectangle([pad, pad, w - pad, h - pad], outline="black")
        for i, (k, pts) in enumerate(series.items()):
            c = colours[i % len(colours)]
            xy = [(pad + (p[0] - x0) / (x1 - x0) * (w - 2 * pad), h - pad - (p[1] - y0) / (y1 - y0) * (h - 2 * pad))
                  for p in pts]
            if len(xy) > 1:
                draw.line(xy, fill=c, width=1)
            draw.text((pad + 5, pad + 5 + 12 * i), k, fill=c)
        draw.text((pad, h - pad + 5), f"step {x0:g} .. {x1:g}; y {y0:.3g} .. {y1:.3g}", fill="black")
    img.save(path)
    return path
