"""Plots of groups of runs (`mjxmbrl plot`, `mjxmbrl reproduce`), from their metrics.jsonl.

`plot_groups` (`mjxmbrl plot`) groups runs by config and draws per group the
mean over seeds with a 95% CI or std band; `plot_panels` does the same in one
subplot per task (`mjxmbrl reproduce`). `seed_series` reads one run's curve
per seed, from separate runs or from the `seed` field of a multi-seed run.
The y-axis spans the seeds' values (`value_limits`); a wider band is cut at it.
One run's own learning curve is `mjxmbrl.run.curves.plot_learning_curve`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mjxmbrl.run.curves import finite, new_figure, save_figure
from mjxmbrl.run.logging import (
    EVAL_RETURN_KEYS,
    METRICS_FILE,
    read_metrics,
    t_interval_half_width,
)
from mjxmbrl.types import MjxmbrlError

# ---- seeds and groups of runs (`mjxmbrl plot`, `mjxmbrl reproduce`) ---------------------

SEED_KEY = "seed"
BANDS = ("ci95", "std")
# Config entries that tell seeds of one setting apart rather than settings: removed before grouping.
SEED_CONFIG_KEYS = (("train", "seed"), ("train", "num_seeds"))


class PlotError(MjxmbrlError):
    """Runs that cannot be plotted as asked (no such metric, not a run directory, unknown band)."""


def _run_config(run_dir: Path) -> Dict[str, Any]:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise PlotError(f"{path} is not a config mapping")
    return raw


def seed_series(run_dir: str | Path, metric: str) -> Dict[int, Tuple[List[float], List[float]]]:
    """{seed: (env_steps, values)} of `metric` in one run directory, rows in file order.

    A row's seed is its `seed` field when it has one (a run training several seeds
    in one program writes one row per seed), else the run's config `train.seed`
    (0 without a config.yaml). Non-finite values are left out.
    """
    run_dir = Path(run_dir)
    default_seed = int((_run_config(run_dir).get("train") or {}).get("seed", 0))
    out: Dict[int, Tuple[List[float], List[float]]] = {}
    for row in read_metrics(run_dir / METRICS_FILE):
        value, steps = row.get(metric), row.get("env_steps")
        if not (finite(value) and finite(steps)):
            continue
        seed = row.get(SEED_KEY, default_seed)
        xs, ys = out.setdefault(int(seed), ([], []))
        xs.append(float(steps))
        ys.append(float(value))
    return out


def aggregate_seeds(curves: Sequence[Tuple[Sequence[float], Sequence[float]]], band: str = "ci95"):
    """Mean over seeds at every env step any seed logged, with a band.

    curves: one (env_steps, values) per seed. Returns (steps, mean, lo, hi, n): at each
    step, the mean over the n seeds that logged it and mean -/+ the band, where
    `std` is the sample std (ddof 1) and `ci95` the Student-t 95% half-width
    t(0.975, n-1) * std / sqrt(n); with n = 1 the band is empty (lo = hi = mean).
    """
    if band not in BANDS:
        raise PlotError(f"unknown band '{band}' (valid: {', '.join(BANDS)})")
    at: Dict[float, List[float]] = {}
    for xs, ys in curves:
        for x, y in zip(xs, ys):
            at.setdefault(float(x), []).append(float(y))
    steps = sorted(at)
    means, lo, hi, counts = [], [], [], []
    for x in steps:
        vals = at[x]
        n = len(vals)
        mean = sum(vals) / n
        half = 0.0
        if n > 1:
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
            half = std if band == "std" else t_interval_half_width(vals)
        means.append(mean)
        lo.append(mean - half)
        hi.append(mean + half)
        counts.append(n)
    return steps, means, lo, hi, counts


def _group_config(raw: Dict[str, Any]) -> Dict[str, Any]:
    cfg = {section: dict(values or {}) for section, values in raw.items() if section != "log"}
    for section, key in SEED_CONFIG_KEYS:
        cfg.get(section, {}).pop(key, None)
    return cfg


def _flatten(cfg: Dict[str, Any]) -> Dict[str, Any]:
    return {f"{section}.{key}": value for section, values in cfg.items() for key, value in values.items()}


def group_runs(run_dirs: Sequence[str | Path]) -> List[Tuple[str, List[Path]]]:
    """Runs grouped by their config.yaml less the seed and the log section: [(label, run_dirs)], in first-seen order.

    The label lists the config entries that differ between groups (just the env
    and agent when there is one group). A run without config.yaml is a group of its own.
    """
    groups: Dict[str, Tuple[Dict[str, Any], List[Path]]] = {}
    for run_dir in map(Path, run_dirs):
        raw = _run_config(run_dir)
        cfg = _group_config(raw) if raw else {"run": {"dir": str(run_dir)}}
        key = json.dumps(cfg, sort_keys=True, default=str)
        groups.setdefault(key, (cfg, []))[1].append(run_dir)
    flat = [_flatten(cfg) for cfg, _ in groups.values()]
    keys = sorted(set().union(*flat)) if flat else []
    differing = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat}) > 1]
    out = []
    for (cfg, dirs), f in zip(groups.values(), flat):
        if "run.dir" in f:
            label = Path(f["run.dir"]).name
        elif differing:
            shown = [k for k in differing if k != "run.dir"]
            label = ", ".join(f"{k}={f.get(k)}" for k in shown[:3]) + (f" (+{len(shown) - 3} more)" if len(shown) > 3 else "")
        else:
            label = f"{f.get('env.name', '?')} {f.get('agent.name', '')}".strip()
        out.append((label or dirs[0].name, dirs))
    return out


def _group_curves(runs, metric: str) -> List[Tuple[List[float], List[float]]]:
    """One (env_steps, values) per seed over the group's runs (a seed of each run counts once).

    `runs`: run directories, or the curves themselves as {metric: [(env_steps, values), ...]}.
    """
    if isinstance(runs, dict):
        return [(list(xs), list(ys)) for xs, ys in runs.get(metric, ())]
    return [curve for run_dir in runs for curve in seed_series(Path(run_dir), metric).values()]


def value_limits(curves: Sequence[Tuple[Sequence[float], Sequence[float]]], extra: Sequence[float] = (),
                 margin: float = 0.05) -> Optional[Tuple[float, float]]:
    """y-axis limits that span every seed's values (and `extra`, e.g. reference lines), widened by `margin`.

    With 2-3 seeds a Student-t 95% band is wider than the data (t(0.975, 1) = 12.7), and autoscaling to
    it flattens the curves; the band is then cut at these limits. None when there is no finite value.
    """
    values = [float(v) for _, ys in curves for v in ys if finite(v)] + [float(v) for v in extra if finite(v)]
    if not values:
        return None
    lo, hi = min(values), max(values)
    pad = margin * (hi - lo) if hi > lo else max(abs(hi), 1.0) * margin
    return lo - pad, hi + pad


def _draw_group(ax, curves, band: str, color: str, label: str, dotted: bool = False) -> None:
    steps, means, lo, hi, counts = aggregate_seeds(curves, band)
    n = max(counts)
    what = ("mean ± 95% CI" if band == "ci95" else "mean ± std") if n > 1 else "no band"
    style = dict(linestyle=":", marker="s", markersize=2, linewidth=1.6) if dotted else dict(marker="o", markersize=3, linewidth=1.8)
    ax.plot(steps, means, color=color, label=f"{label} ({n} seed{'s' if n != 1 else ''}, {what})", **style)
    if n > 1:
        ax.fill_between(steps, lo, hi, color=color, alpha=0.08 if dotted else 0.2, linewidth=0)


def _require_metric(run_dirs: Sequence[Path], metric: str) -> str:
    """`metric`, or for an eval return the key older runs logged it under; PlotError when no run logs it."""
    candidates = [metric] + ([k for k in EVAL_RETURN_KEYS if k != metric] if metric in EVAL_RETURN_KEYS else [])
    for key in candidates:
        if any(seed_series(d, key) for d in run_dirs):
            return key
    raise PlotError(f"no run logs metric '{metric}' (looked in {', '.join(str(d) for d in run_dirs)})")


def plot_groups(
    run_dirs: Sequence[str | Path],
    out_png: str | Path,
    metric: str = "eval/return",
    band: str = "ci95",
    title: Optional[str] = None,
) -> Path:
    """`mjxmbrl plot`: runs grouped by config, per group the mean of `metric` over seeds with a band; returns `out_png`.

    Seeds come from separate runs of one config or from the `seed` field of one
    run's rows. Raises PlotError when no run logs `metric`.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise PlotError("plot needs at least one run directory")
    if band not in BANDS:
        raise PlotError(f"unknown band '{band}' (valid: {', '.join(BANDS)})")
    metric = _require_metric(run_dirs, metric)
    fig, ax = new_figure(title or metric)
    ax.set_ylabel(metric)
    drawn_curves = []
    for i, (label, dirs) in enumerate(group_runs(run_dirs)):
        curves = _group_curves(dirs, metric)
        color = f"C{i % 10}"
        if not curves:
            ax.plot([], [], color=color, linestyle=":", label=f"{label} (no '{metric}' rows)")
            continue
        _draw_group(ax, curves, band, color, label)
        drawn_curves += curves
    limits = value_limits(drawn_curves)
    if limits:
        ax.set_ylim(*limits)
    ax.legend(loc="best", fontsize=7)
    return save_figure(fig, out_png)


def plot_panels(
    panels: Sequence[Tuple[str, Sequence[Tuple[str, Sequence[str | Path]]]]],
    out_png: str | Path,
    metric: str = "eval/return",
    band: str = "ci95",
    title: Optional[str] = None,
    reference_lines: Optional[Sequence[Sequence[Tuple[str, float]]]] = None,
    dotted_metrics: Sequence[str] = (),
) -> Path:
    """One subplot per panel (e.g. a task), per labelled group of runs (e.g. a method) the mean over seeds with a band.

    panels: [(panel title, [(label, run_dirs or {metric: [(env_steps, values)] per seed})])]. `reference_lines`, one list per
    panel, adds dashed horizontal lines [(label, value)] (e.g. the paper's numbers).
    `dotted_metrics` are drawn too, dotted in the colour of their group, for the
    groups whose runs log them (Byravan et al. 2022 Fig. 2: the actor solid, its
    amortized policy alone dotted). Panels without data say so.
    """
    from matplotlib.figure import Figure

    if not panels:
        raise PlotError("plot_panels needs at least one panel")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows), dpi=100)
    labels = list(dict.fromkeys(label for _, groups in panels for label, _ in groups))
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for i, (panel_title, groups) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("env steps")
        ax.set_ylabel(metric + "".join(f", {m} dotted" for m in dotted_metrics))
        ax.grid(alpha=0.3)
        refs = list(reference_lines[i]) if reference_lines else []
        for j, (ref_label, value) in enumerate(refs):
            ax.axhline(value, color=f"C{(len(labels) + j) % 10}", linestyle="--", linewidth=1.0, label=ref_label)
        drawn_curves = []
        for label, runs in groups:
            curves = _group_curves(runs, metric)
            if curves:
                _draw_group(ax, curves, band, colors[label], label)
                drawn_curves += curves
            for other in dotted_metrics:
                other_curves = _group_curves(runs, other)
                if other_curves:
                    _draw_group(ax, other_curves, band, colors[label], f"{label}: {other}", dotted=True)
                    drawn_curves += other_curves
        limits = value_limits(drawn_curves, [value for _, value in refs])
        if limits:
            ax.set_ylim(*limits)
        drawn = bool(drawn_curves)
        if not drawn:
            ax.text(0.5, 0.5, f"no '{metric}' rows yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
        if drawn or refs:
            ax.legend(loc="best", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_png)
