"""Learning curves of runs from their metrics.jsonl (matplotlib, Agg, no pyplot state).

`plot_learning_curve` draws one run: evaluation return mean with a +-std band
against env steps, plus the training episode return when logged; the run loop
writes it as learning_curve.png. `plot_runs` overlays the evaluation curves of
several runs, one curve each. The figure helpers (`new_figure`, `draw_band`,
`save_figure`) also serve the grouped plots of `mjxmbrl plot` (cli/plotting.py).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mjxmbrl.run.disk import disk_full_as_error
from mjxmbrl.run.logging import EVAL_RETURN_KEYS, METRICS_FILE, read_metrics

EVAL_STD_KEY = "eval/return_std"
TRAIN_RETURN_KEY = "train/episode_return"


def finite(x: Any) -> bool:
    """A real, finite number (not a bool, not a NaN/inf tag)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _series(rows: List[Dict[str, Any]], key: str) -> Tuple[List[float], List[float]]:
    xs, ys = [], []
    for row in rows:
        if finite(row.get(key)) and finite(row.get("env_steps")):
            xs.append(float(row["env_steps"]))
            ys.append(float(row[key]))
    return xs, ys


def _eval_key(rows: List[Dict[str, Any]]) -> Optional[str]:
    for key in EVAL_RETURN_KEYS:
        if any(key in row for row in rows):
            return key
    return None


def eval_curve(rows: List[Dict[str, Any]]):
    """(steps, mean, std or None) of the evaluation rows, or None when there are none."""
    key = _eval_key(rows)
    if key is None:
        return None
    steps, means, stds = [], [], []
    for row in rows:
        if finite(row.get(key)) and finite(row.get("env_steps")):
            steps.append(float(row["env_steps"]))
            means.append(float(row[key]))
            std = row.get(EVAL_STD_KEY)
            stds.append(float(std) if finite(std) else math.nan)
    if not steps:
        return None
    has_std = any(math.isfinite(s) for s in stds)
    return steps, means, (stds if has_std else None)


def new_figure(title: Optional[str]):
    """(Figure, Axes) of one return-vs-env-steps plot, without pyplot's global state."""
    from matplotlib.figure import (
        Figure,  # Agg canvas by default; no global pyplot state
    )

    fig = Figure(figsize=(7, 4.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if title:
        ax.set_title(title)
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    return fig, ax


def draw_band(ax, steps, means, stds, color, label):
    """A mean curve with a +-std band (stds None: no band; a NaN std: no band at that step)."""
    ax.plot(steps, means, color=color, marker="o", markersize=3, linewidth=1.8, label=label)
    if stds is not None:
        lo = [m - s if math.isfinite(s) else m for m, s in zip(means, stds)]
        hi = [m + s if math.isfinite(s) else m for m, s in zip(means, stds)]
        ax.fill_between(steps, lo, hi, color=color, alpha=0.2, linewidth=0)


def save_figure(fig, out_png: Path) -> Path:
    """Writes `fig` to `out_png` atomically (a temporary file, then rename); a full disk is DiskFull."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.stem}.tmp-{os.getpid()}.png")
    try:
        with disk_full_as_error(out_png):
            fig.savefig(tmp, bbox_inches="tight")
            os.replace(tmp, out_png)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out_png


def plot_learning_curve(metrics_jsonl_path: str | Path, out_png: str | Path, title: Optional[str] = None) -> Path:
    """Writes the learning curve of one run to `out_png`; returns its path.

    Eval return (`eval/return` or `eval/return_mean`) with a band of
    `eval/return_std` when logged, and `train/episode_return` when logged.
    A file without such rows gives a plot that says so.
    """
    rows = read_metrics(metrics_jsonl_path)
    fig, ax = new_figure(title)
    curve = eval_curve(rows)
    train_steps, train_returns = _series(rows, TRAIN_RETURN_KEY)
    if train_steps:
        ax.plot(train_steps, train_returns, color="tab:gray", linewidth=1.0, alpha=0.8, label="train episode return")
    if curve is not None:
        steps, means, stds = curve
        draw_band(ax, steps, means, stds, "tab:blue", "eval return" + (" (mean ± std)" if stds is not None else ""))
    if curve is None:
        what = "no evaluation rows" if rows else "no metrics rows"
        ax.text(0.5, 0.5, f"{what} yet", transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.4")
    if curve is not None or train_steps:
        ax.legend(loc="best", fontsize=8)
    return save_figure(fig, out_png)


def plot_runs(run_dirs: Sequence[str | Path], out_png: str | Path, title: Optional[str] = None) -> Path:
    """Overlays the eval curves (mean ± std band) of several run directories; returns `out_png`.

    Each run is labelled by its directory name; runs without evaluation rows
    are listed in the legend as such.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise ValueError("plot_runs needs at least one run directory")
    fig, ax = new_figure(title or "evaluation return")
    colors = [f"C{i % 10}" for i in range(len(run_dirs))]
    plotted = 0
    for run_dir, color in zip(run_dirs, colors):
        curve = eval_curve(read_metrics(run_dir / METRICS_FILE))
        if curve is None:
            ax.plot([], [], color=color, linestyle=":", label=f"{run_dir.name} (no eval rows)")
            continue
        steps, means, stds = curve
        draw_band(ax, steps, means, stds, color, run_dir.name)
        plotted += 1
    if plotted == 0:
        ax.text(0.5, 0.5, "no evaluation rows yet", transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.4")
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, out_png)
