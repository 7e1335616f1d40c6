"""Grouped learning curves: seeds from separate runs or from the `seed` field, bands, grouping by config, `mjxmbrl plot`."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mjxmbrl.cli.plotting as plotting
from mjxmbrl.cli.plotting import (
    PlotError,
    aggregate_seeds,
    group_runs,
    plot_groups,
    plot_panels,
    seed_series,
    value_limits,
)
from mjxmbrl.config import load_config, save_config
from mjxmbrl.run.logging import MetricsWriter

ROOT = Path(__file__).resolve().parents[1]
T_975_DOF1 = math.tan(math.pi * 0.475)  # Student-t 0.975 quantile, 1 dof (Cauchy: tan(pi (p - 1/2))) = 12.7062


def make_run(directory: Path, overrides, evals, seed_field=False):
    """A run directory with a real config.yaml and metrics rows; evals: {seed: [(env_steps, return), ...]}."""
    directory.mkdir(parents=True)
    save_config(load_config(ROOT / "configs" / "debug.yaml", list(overrides)), directory / "config.yaml")
    with MetricsWriter(directory / "metrics.jsonl") as w:
        for seed, points in evals.items():
            for steps, value in points:
                w.write({"env_steps": steps, "train/loss": 1.0})
                row = {"env_steps": steps, "eval/return": value, "eval/return_std": 0.5}
                if seed_field:
                    row["seed"] = seed
                w.write(row)
    return directory


def is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_aggregate_seeds_exact_numbers():
    # step 100: seeds give 1 and 3 -> mean 2, sample std sqrt(2), 95% CI half-width t(1) * sqrt(2) / sqrt(2) = t(1)
    # step 200: only the first seed -> mean 5, no band
    curves = [([100, 200], [1.0, 5.0]), ([100], [3.0])]
    steps, mean, lo, hi, n = aggregate_seeds(curves, "std")
    assert steps == [100.0, 200.0] and mean == [2.0, 5.0] and n == [2, 1]
    assert lo[0] == pytest.approx(2.0 - math.sqrt(2.0)) and hi[0] == pytest.approx(2.0 + math.sqrt(2.0))
    assert lo[1] == hi[1] == 5.0
    _, _, lo, hi, _ = aggregate_seeds(curves, "ci95")
    assert hi[0] - 2.0 == pytest.approx(T_975_DOF1, rel=1e-9) and 2.0 - lo[0] == pytest.approx(T_975_DOF1, rel=1e-9)
    with pytest.raises(PlotError, match="unknown band"):
        aggregate_seeds(curves, "iqr")


def test_seed_series_reads_the_seed_field_or_the_config_seed(tmp_path):
    separate = make_run(tmp_path / "s3", ["train.seed=3"], {3: [(100, 1.0), (200, 2.0)]})
    assert seed_series(separate, "eval/return") == {3: ([100.0, 200.0], [1.0, 2.0])}
    stacked = make_run(tmp_path / "stacked", ["train.seed=0"], {0: [(100, 1.0)], 1: [(100, 3.0)]}, seed_field=True)
    assert seed_series(stacked, "eval/return") == {0: ([100.0], [1.0]), 1: ([100.0], [3.0])}
    assert seed_series(stacked, "no/such_metric") == {}


def test_two_configs_by_two_seeds_give_two_groups(tmp_path):
    runs = []
    for hidden in ("[32,32]", "[64,64]"):
        for seed in (0, 1):
            runs.append(make_run(
                tmp_path / f"h{hidden[1:3]}-s{seed}",
                [f"agent.hidden_sizes={hidden}", f"train.seed={seed}", f"log.run_name=h-{seed}", f"log.runs_dir={tmp_path}/x{seed}"],
                {seed: [(100, float(seed)), (200, 2.0 + seed)]},
            ))
    groups = group_runs(runs)
    assert [label for label, _ in groups] == ["agent.hidden_sizes=[32, 32]", "agent.hidden_sizes=[64, 64]"]
    assert [[d.name for d in dirs] for _, dirs in groups] == [["h32-s0", "h32-s1"], ["h64-s0", "h64-s1"]]
    out = plot_groups(runs, tmp_path / "plots" / "grouped.png", band="std")
    assert is_png(out) and [p.name for p in (tmp_path / "plots").iterdir()] == ["grouped.png"]
    # one group: seeds from two separate runs and from one run with a seed field are drawn alike
    stacked = make_run(tmp_path / "stacked", ["train.seed=0"], {0: [(100, 0.0)], 1: [(100, 1.0)]}, seed_field=True)
    assert len(group_runs([stacked])) == 1
    assert is_png(plot_groups([stacked], tmp_path / "stacked.png"))
    with pytest.raises(PlotError, match="no run logs metric 'model/loss'"):
        plot_groups(runs, tmp_path / "none.png", metric="model/loss")


def test_plot_panels_with_reference_lines(tmp_path):
    a = make_run(tmp_path / "a", ["train.seed=0"], {0: [(100, 1.0), (200, 2.0)]})
    b = make_run(tmp_path / "b", ["train.seed=1"], {1: [(100, 2.0), (200, 4.0)]})
    out = plot_panels(
        [("task one", [("sac", [a, b])]), ("task two", [("sac", [])])],
        tmp_path / "panels.png",
        reference_lines=[[("paper", 3.0)], []],
    )
    assert is_png(out)


def test_two_seeds_keep_the_axis_on_the_data_not_on_the_band(tmp_path, monkeypatch):
    """A 2-seed t band is 9 std wide each side; the y-axis spans the seeds' values and references instead."""
    assert value_limits([([0, 1], [100.0, 200.0]), ([0, 1], [0.0, float("nan")])], [300.0]) == pytest.approx((-15.0, 315.0))
    assert value_limits([([0], [5.0])]) == pytest.approx((4.75, 5.25))  # a flat curve still gets a range
    assert value_limits([]) is None
    a = make_run(tmp_path / "a", ["train.seed=0"], {0: [(100, 100.0), (200, 200.0)]})
    b = make_run(tmp_path / "b", ["train.seed=1"], {1: [(100, 0.0), (200, 300.0)]})
    saved = {}
    real_save = plotting.save_figure
    monkeypatch.setattr(plotting, "save_figure", lambda fig, out: (saved.setdefault(out.name, fig), real_save(fig, out))[1])
    plot_panels([("task", [("sac", [a, b])])], tmp_path / "panels.png", reference_lines=[[("paper", 350.0)]])
    plot_groups([a, b], tmp_path / "groups.png")
    assert saved["panels.png"].axes[0].get_ylim() == pytest.approx((-17.5, 367.5))
    assert saved["groups.png"].axes[0].get_ylim() == pytest.approx((-15.0, 315.0))


def test_plot_cli_groups_and_rejects_an_unknown_metric(tmp_path):
    runs = [make_run(tmp_path / f"r{s}", [f"train.seed={s}"], {s: [(100, float(s)), (200, 1.0 + s)]}) for s in (0, 1)]
    env = dict(os.environ, JAX_PLATFORMS="cpu")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mjxmbrl.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)

    proc = cli("plot", *runs, "--out", tmp_path / "cli.png")
    assert proc.returncode == 0, proc.stderr
    assert is_png(tmp_path / "cli.png")
    proc = cli("plot", *runs, "--metric", "eval/nope", "--out", tmp_path / "bad.png")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no run logs metric 'eval/nope'" in errors[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "bad.png").exists()
