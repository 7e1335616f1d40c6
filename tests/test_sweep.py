"""`mjxmbrl sweep`: parsing and validation of W&B sweep files, trial generation, metrics, ranking, and a
2x2 grid end to end through the CLI; plus `mjxmbrl train --section.key=value` (the form `wandb agent` uses).

The installed wandb package holds no sweep-config JSON schema offline (validation lives in the optional
`sweeps` package, `wandb[sweeps]`, which is not installed), so these tests check our validator against
W&B's documented schema instead.
"""

import csv
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from mjxmbrl import cli as cli_module
from mjxmbrl.cli.sweep import (
    SUMMARY_CSV,
    SUMMARY_MD,
    SweepError,
    Trial,
    as_override,
    describe,
    load_sweep,
    parse_sweep,
    plan_sweep,
    ranked,
    run_sweep,
    trial_metric,
    trial_name,
    trial_values,
)
from mjxmbrl.config import LogConfig
from mjxmbrl.run.logging import RunLogger

ROOT = Path(__file__).resolve().parents[1]
GRID = {
    "method": "grid",
    "parameters": {"agent.actor_lr": {"values": [3e-4, 1e-3]}, "train.updates_per_step": {"values": [1, 2]}},
}
TINY = [
    "train.total_env_steps=1600",
    "train.warmup_env_steps=400",
    "train.log_every=400",
    "train.eval_every=800",
    "train.checkpoint_every=1600",
    "train.eval_episodes=2",
    "log.progress=false",
]


def cli(*args, timeout=600, env_extra=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "mjxmbrl.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


def error_line(proc):
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def write(tmp_path, raw, name="sweep.yaml") -> Path:
    folder = tmp_path / "sweeps"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


# ---- parsing -------------------------------------------------------------------------


def test_shipped_debug_grid_is_a_2x2_grid_on_the_debug_config():
    sweep = load_sweep(ROOT / "configs/sweeps/debug_grid.yaml")
    assert sweep.method == "grid" and sweep.name == "debug-grid"
    assert (sweep.metric, sweep.goal) == ("eval/return", "maximize")
    assert sweep.command_config == "configs/debug.yaml"
    assert sweep.command_overrides == ()  # log.wandb=online is for the online agent only
    assert any("log.wandb=online" in n for n in sweep.notes)
    values = trial_values(sweep)
    assert len(values) == 4 and len({tuple(sorted(v.items())) for v in values}) == 4


def test_parse_defaults_and_inferred_distributions():
    sweep = parse_sweep(
        {
            "method": "random",
            "run_cap": 3,
            "parameters": {
                "train.seed": {"value": 3},
                "agent.batch_size": {"values": [32, 64]},
                "train.updates_per_step": {"min": 1, "max": 4},
                "agent.tau": {"min": 0.001, "max": 0.01},
            },
            "program": "unused.py",
            "project": "p",
            "entity": "e",
            "description": "d",
            "early_terminate": {"type": "hyperband", "min_iter": 3},
        },
        "configs/sweeps/my-sweep.yaml",
    )
    assert sweep.name == "my-sweep"  # the file's stem when the sweep has no name
    assert (sweep.metric, sweep.goal) == ("eval/return", "maximize")  # no metric section: our default
    assert [p.distribution for p in sweep.params] == ["constant", "categorical", "int_uniform", "uniform"]
    assert (sweep.project, sweep.entity, sweep.description) == ("p", "e", "d")
    assert any("early_terminate" in n for n in sweep.notes)
    # W&B's default goal for a metric given without one is minimize.
    assert parse_sweep({**GRID, "metric": {"name": "eval/return"}}).goal == "minimize"


def test_grid_is_the_cartesian_product_in_order_and_run_cap_cuts_it():
    values = trial_values(parse_sweep(GRID))
    assert values == [
        {"agent.actor_lr": 3e-4, "train.updates_per_step": 1},
        {"agent.actor_lr": 3e-4, "train.updates_per_step": 2},
        {"agent.actor_lr": 1e-3, "train.updates_per_step": 1},
        {"agent.actor_lr": 1e-3, "train.updates_per_step": 2},
    ]
    assert len(trial_values(parse_sweep({**GRID, "run_cap": 3}))) == 3
    # int_uniform takes min..max inclusive; q_uniform takes min, min+q, ... below max (as W&B's grid controller).
    sweep = parse_sweep(
        {
            "method": "grid",
            "parameters": {
                "train.updates_per_step": {"min": 1, "max": 3},
                "agent.tau": {"distribution": "q_uniform", "min": 0.1, "max": 0.4, "q": 0.1},
            },
        }
    )
    assert sweep.params[0].grid_values() == [1, 2, 3]
    assert sweep.params[1].grid_values() == [0.1, 0.2, 0.3]
    assert len(trial_values(sweep)) == 9


def test_random_draws_are_seeded_and_follow_each_distribution():
    spec = {
        "method": "random",
        "run_cap": 400,
        "parameters": {
            "a.int": {"min": 2, "max": 5},
            "a.uni": {"min": -1.0, "max": 1.0},
            "a.q": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
            "a.logv": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "a.qlogv": {"distribution": "q_log_uniform_values", "min": 16, "max": 512, "q": 16},
            "a.log": {"distribution": "log_uniform", "min": 0.0, "max": 1.0},
            "a.norm": {"distribution": "normal", "mu": 5.0, "sigma": 0.1},
            "a.lognorm": {"distribution": "log_normal", "mu": 0.0, "sigma": 0.5},
            "a.cat": {"values": ["x", "y", "z"], "probabilities": [0.5, 0.5, 0.0]},
            "a.const": {"value": [64, 64]},
        },
    }
    sweep = parse_sweep(spec)
    draws = trial_values(sweep, seed=7)
    assert draws == trial_values(sweep, seed=7) and draws != trial_values(sweep, seed=8)
    col = {k: [d[k] for d in draws] for k in draws[0]}
    assert set(col["a.int"]) == {2, 3, 4, 5} and all(type(v) is int for v in col["a.int"])
    assert all(-1.0 <= v <= 1.0 for v in col["a.uni"])
    assert set(col["a.q"]) <= {0, 2, 4, 6, 8, 10} and all(type(v) is int for v in col["a.q"])
    assert all(1e-4 <= v <= 1e-2 for v in col["a.logv"])
    # log-uniform: about half the draws below the geometric mean 1e-3
    assert 0.4 < np.mean(np.array(col["a.logv"]) < 1e-3) < 0.6
    assert all(v % 16 == 0 and 16 <= v <= 512 for v in col["a.qlogv"])
    assert all(1.0 <= v <= math.e for v in col["a.log"])
    assert abs(np.mean(col["a.norm"]) - 5.0) < 0.05
    assert all(v > 0 for v in col["a.lognorm"])
    assert set(col["a.cat"]) == {"x", "y"}  # probability 0 is never drawn
    assert all(v == [64, 64] for v in col["a.const"])


def test_as_override_takes_both_forms_only():
    assert as_override("--agent.actor_lr=0.001") == "agent.actor_lr=0.001"
    assert as_override("agent.hidden_sizes=[64, 64]") == "agent.hidden_sizes=[64, 64]"
    assert as_override("--log.wandb_group=") == "log.wandb_group="
    for bad in ("--foo", "--foo=1", "--agent.actor_lr", "-agent.actor_lr=1", "configs/debug.yaml", "--.x=1"):
        assert as_override(bad) is None, bad


def test_trial_names_show_the_varying_values_and_keep_clashing_keys_apart():
    assert trial_name(3, {"agent.actor_lr": 1e-3, "train.seed": 0}, ["agent.actor_lr"]) == "trial-003-actor_lr_0.001"
    name = trial_name(0, {"agent.batch_size": 32, "model.batch_size": 64}, ["agent.batch_size", "model.batch_size"])
    assert name == "trial-000-agent.batch_size_32-model.batch_size_64"
    assert trial_name(1, {"agent.hidden_sizes": [64, 64]}, ["agent.hidden_sizes"]) == "trial-001-hidden_sizes_64x64"
    assert trial_name(2, {"train.seed": 1}, []) == "trial-002"


# ---- every bad input: one clear SweepError, nothing written -----------------------------

BAD = [
    ({**GRID, "method": "bayes"}, "only grid and random run locally"),
    ({**GRID, "method": "hyperopt"}, "only grid and random run locally"),
    ({"parameters": GRID["parameters"]}, "method is missing"),
    ({**GRID, "method": "random"}, "method random needs run_cap"),
    ({**GRID, "run_cap": 0}, "run_cap must be a positive integer"),
    ({**GRID, "controller": {"type": "local"}}, "unknown sweep key 'controller'"),
    ({**GRID, "paramters": {}}, "unknown sweep key 'paramters' (did you mean 'parameters'?)"),
    ({"method": "grid"}, "parameters must be a non-empty mapping"),
    ({"method": "grid", "parameters": {}}, "parameters must be a non-empty mapping"),
    ({"method": "grid", "parameters": {"agent.actor_lr": {"values": []}}}, "values is an empty list"),
    ({"method": "grid", "parameters": {"agent.actor_lr": {"values": 0.1}}}, "values must be a list"),
    ({"method": "grid", "parameters": {"agent.actor_lr": {"distribution": "categorical"}}}, "needs values"),
    ({"method": "grid", "parameters": {"agent.actor_lr": {}}}, "needs value, values, or min and max"),
    ({"method": "grid", "parameters": {"agent.actor_lr": {"q": 2}}}, "needs value, values, or min and max"),
    ({"method": "grid", "parameters": {"agent.actor_lr": 0.1}}, "needs a mapping"),
    ({"method": "grid", "parameters": {"agent.actor_lr": {"value": 1, "values": [1]}}}, "both value and values"),
    ({"method": "grid", "parameters": {"agent.actor_lr": {"valeus": [1]}}}, "unknown key 'valeus' (did you mean 'values'?)"),
    ({"method": "grid", "parameters": {"actor_lr": {"value": 1}}}, "must be a dotted config key"),
    ({"method": "grid", "parameters": {"agent": {"parameters": {"actor_lr": {"value": 1}}}}}, "nested parameters"),
    ({"method": "grid", "parameters": {"log.run_name": {"values": ["a", "b"]}}}, "cannot be swept"),
    ({"method": "grid", "parameters": {"log.runs_dir": {"values": ["a", "b"]}}}, "cannot be swept"),
    ({"method": "random", "run_cap": 2, "parameters": {"agent.tau": {"min": 0.1, "max": 0.2, "distribution": "unifrom"}}},
     "unknown distribution 'unifrom' (did you mean 'uniform'?)"),
    ({"method": "random", "run_cap": 2, "parameters": {"agent.tau": {"a": 1, "b": 2, "distribution": "beta"}}},
     "unknown key 'a'"),
    ({"method": "random", "run_cap": 2, "parameters": {"agent.tau": {"min": 0.1, "max": 0.2, "distribution": "inv_log_uniform_values"}}},
     "not supported locally"),
    ({"method": "random", "run_cap": 2, "parameters": {"agent.tau": {"min": 0.0, "max": 0.2, "distribution": "log_uniform_values"}}},
     "needs min > 0"),
    ({"method": "random", "run_cap": 2, "parameters": {"agent.tau": {"min": 0.3, "max": 0.2}}}, "must be below max"),
    ({"method": "random", "run_cap": 2, "parameters": {"agent.tau": {"min": 0.1, "max": 0.2, "q": 0.1}}},
     "'q' is not used by distribution 'uniform'"),
    ({"method": "random", "run_cap": 2, "parameters": {"agent.tau": {"min": "a", "max": 0.2}}}, "min must be a number"),
    ({"method": "random", "run_cap": 2, "parameters": {"train.seed": {"min": 1, "max": 2.5, "distribution": "int_uniform"}}},
     "int_uniform needs integer min and max"),
    ({"method": "random", "run_cap": 2, "parameters": {"agent.tau": {"distribution": "normal", "sigma": -1}}}, "sigma must be >= 0"),
    ({"method": "random", "run_cap": 2, "parameters": {"a.b": {"values": [1, 2], "probabilities": [0.5, 0.6]}}},
     "probabilities must sum to 1"),
    ({"method": "grid", "parameters": {"a.b": {"values": [1, 2], "probabilities": [0.5, 0.5]}}}, "probabilities are for method random"),
    ({"method": "grid", "parameters": {"agent.tau": {"min": 0.1, "max": 0.2}}}, "'agent.tau' is uniform (use method: random)"),
    ({**GRID, "metric": {"goal": "maximize"}}, "metric must be a mapping with a name"),
    ({**GRID, "metric": {"name": "eval/return", "goal": "max"}}, "metric goal 'max' is not one of maximize, minimize"),
    ({**GRID, "metric": {"name": "eval/return", "gaol": "maximize"}}, "unknown metric key 'gaol'"),
    ({**GRID, "command": "mjxmbrl train"}, "command must be a list"),
    ({**GRID, "command": ["${env}", "python", "main.py", "${args}"]}, "command must run `mjxmbrl train`"),
    ({**GRID, "command": ["mjxmbrl", "train", "--stop-after", "5", "${args}"]}, "command element '--stop-after'"),
    ({**GRID, "name": 3}, "name must be a non-empty string"),
    ({**GRID, "early_terminate": "hyperband"}, "early_terminate must be a mapping"),
    ([1, 2], "a sweep file must be a mapping"),
]


@pytest.mark.parametrize("raw, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_sweep_files_are_rejected_before_anything_runs(tmp_path, raw, message):
    path = write(tmp_path, raw)
    runs = tmp_path / "runs"
    with pytest.raises(SweepError) as err:
        plan_sweep(load_sweep(path), overrides=[f"log.runs_dir={runs}"])
    assert message in str(err.value)
    assert not runs.exists()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"agent.actor_lrr": {"values": [1e-3]}}, "unknown config key 'agent.actor_lrr' (did you mean 'actor_lr'?)"),
        ({"trian.seed": {"value": 1}}, "unknown config section 'trian' (did you mean 'train'?)"),
        ({"train.seed": {"values": [1, "abc"]}}, "trial 1 (train.seed=abc): train.seed: expected int"),
        ({"agent.batch_size": {"values": [32, 0]}}, "agent.batch_size must be positive"),
        ({"env.name": {"values": ["toy_reach", "toy_rech"]}}, "unknown env 'toy_rech'. Did you mean 'toy_reach'?"),
    ],
)
def test_trial_configs_are_built_and_checked_before_anything_runs(tmp_path, params, message):
    path = write(tmp_path, {"method": "grid", "parameters": params})
    runs = tmp_path / "runs"
    with pytest.raises(SweepError) as err:
        plan_sweep(load_sweep(path), overrides=[f"log.runs_dir={runs}"])
    assert message in str(err.value)
    assert not runs.exists()


def test_bad_base_config_and_overrides_are_rejected(tmp_path):
    runs = f"log.runs_dir={tmp_path / 'runs'}"
    sweep = parse_sweep(GRID)
    with pytest.raises(SweepError, match="sets 'agent.actor_lr', which the sweep varies"):
        plan_sweep(sweep, overrides=[runs, "agent.actor_lr=0.1"])
    with pytest.raises(SweepError, match="log.run_name is set by the sweep"):
        plan_sweep(sweep, overrides=[runs, "log.run_name=x"])
    with pytest.raises(SweepError, match=r"base config \(defaults\): unknown config key 'train.sed'"):
        plan_sweep(sweep, overrides=[runs, "train.sed=1"])
    with pytest.raises(SweepError, match="config file not found"):
        plan_sweep(parse_sweep({**GRID, "command": ["mjxmbrl", "train", "nope.yaml", "${args}"]}), overrides=[runs])
    with pytest.raises(SweepError, match="sweep file not found"):
        load_sweep(tmp_path / "missing.yaml")
    with pytest.raises(SweepError, match="invalid YAML"):
        load_sweep(write(tmp_path, "method: [grid"))
    assert not (tmp_path / "runs").exists()


def test_base_config_from_flag_else_command_else_defaults(tmp_path):
    runs = tmp_path / "runs"
    over = [f"log.runs_dir={runs}"]
    with_command = parse_sweep({**GRID, "name": "s", "command": ["${env}", "mjxmbrl", "train", "configs/debug.yaml", "train.seed=5", "${args}"]})
    plan = plan_sweep(with_command, overrides=over)
    assert plan.base_config == "configs/debug.yaml"
    cfg = plan.trials[0].cfg
    assert cfg.env.num_envs == 8 and cfg.agent.hidden_sizes == (64, 64) and cfg.train.seed == 5  # debug.yaml + command override
    assert (cfg.agent.actor_lr, cfg.train.updates_per_step) == (3e-4, 1)
    assert cfg.log.runs_dir == str(runs / "s") and cfg.log.run_name == "trial-000-actor_lr_0.0003-updates_per_step_1"
    assert cfg.log.wandb_group == "s"
    other = write(tmp_path, {"env": {"num_envs": 2}}, "base.yaml")
    assert plan_sweep(with_command, str(other), over).trials[0].cfg.env.num_envs == 2  # --config wins
    defaults = plan_sweep(parse_sweep({**GRID, "project": "proj", "entity": "me"}), overrides=over)
    assert defaults.base_config is None
    cfg = defaults.trials[3].cfg
    assert cfg.agent.hidden_sizes == (256, 256) and (cfg.log.wandb_project, cfg.log.wandb_entity) == ("proj", "me")
    text = describe(defaults)
    assert "4 trials" in text and "base config defaults" in text and "trial-003-actor_lr_0.001-updates_per_step_2" in text
    assert not runs.exists()


def test_an_existing_sweep_directory_is_not_overwritten(tmp_path):
    (tmp_path / "runs" / "s" / "trial-000").mkdir(parents=True)
    with pytest.raises(SweepError, match="already exists"):
        plan_sweep(parse_sweep({**GRID, "name": "s"}), overrides=[f"log.runs_dir={tmp_path / 'runs'}"])


# ---- metric, ranking, summary -------------------------------------------------------


def _rows(path: Path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_trial_metric_is_the_final_value_averaged_over_seeds(tmp_path):
    _rows(tmp_path / "one", [{"env_steps": 400, "eval/return": 1.0}, {"env_steps": 800}, {"env_steps": 1200, "eval/return": 3.0}])
    assert trial_metric(tmp_path / "one", "eval/return") == (3.0, 1)
    seeded = [
        {"env_steps": 400, "seed": 0, "eval/return": 1.0},
        {"env_steps": 400, "seed": 1, "eval/return": 5.0},
        {"env_steps": 800, "seed": 0, "eval/return": 2.0},
        {"env_steps": 800, "seed": 1, "eval/return": 6.0},
        {"env_steps": 800, "eval/return": 100.0},  # a row without a seed field in a multi-seed run does not count
    ]
    _rows(tmp_path / "seeds", seeded)
    assert trial_metric(tmp_path / "seeds", "eval/return") == (4.0, 2)
    _rows(tmp_path / "nan", [{"env_steps": 400, "seed": 0, "eval/return": 1.0}, {"env_steps": 400, "seed": 1, "eval/return": "nan"}])
    value, seeds = trial_metric(tmp_path / "nan", "eval/return")
    assert math.isnan(value) and seeds == 2
    assert trial_metric(tmp_path / "one", "eval/length") == (None, 0)
    assert trial_metric(tmp_path / "missing", "eval/return") == (None, 0)


def test_ranking_follows_the_goal_with_missing_values_last():
    metrics = [2.0, None, 5.0, math.nan, -1.0, 5.0, 9.0]
    trials = [Trial(i, f"t{i}", {}, None, metric=m, status="ok") for i, m in enumerate(metrics)]
    trials[6].status = "diverged"  # a diverged trial's partial metric ranks after every finished trial
    assert [t.index for t in ranked(trials, "maximize")] == [2, 5, 0, 4, 1, 3, 6]
    assert [t.index for t in ranked(trials, "minimize")] == [4, 0, 2, 5, 1, 3, 6]


def test_run_sweep_records_divergence_and_ranks_with_a_fake_trainer(tmp_path, capsys):
    """The host loop of a sweep without training: trial order, diverged trials kept, summary files, a missing metric."""
    from mjxmbrl.run.loop import TrainingDiverged

    sweep = parse_sweep({**GRID, "name": "fake", "metric": {"name": "eval/return", "goal": "minimize"}})
    plan = plan_sweep(sweep, overrides=[f"log.runs_dir={tmp_path}"])
    seen = []

    def fake_train(cfg):
        run_dir = Path(cfg.log.runs_dir) / cfg.log.run_name
        seen.append(cfg.log.run_name)
        _rows(run_dir, [{"env_steps": 400, "eval/return": cfg.agent.actor_lr * 1000 + cfg.train.updates_per_step}])
        if len(seen) == 2:
            raise TrainingDiverged("non-finite learner/critic_loss at env step 400")
        return run_dir

    order = run_sweep(plan, fake_train)
    assert seen == [t.name for t in plan.trials]
    assert [t.status for t in plan.trials] == ["ok", "diverged", "ok", "ok"]
    # metrics 1.3, 2.3 (diverged), 2.0, 3.0; minimize, finished trials first
    assert [t.index for t in order] == [0, 2, 3, 1]
    assert [round(t.metric, 6) for t in order] == [1.3, 2.0, 3.0, 2.3]
    with open(tmp_path / "fake" / SUMMARY_CSV) as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == [plan.trials[t.index].name for t in order]
    assert rows[0]["rank"] == "1" and rows[0]["status"] == "ok" and "diverged" in [r["status"] for r in rows]
    assert "| rank | trial | agent.actor_lr | train.updates_per_step | eval/return | seeds | status |" in capsys.readouterr().out

    plan = plan_sweep(parse_sweep({**GRID, "name": "typo", "metric": {"name": "eval/retrun", "goal": "maximize"}}), overrides=[f"log.runs_dir={tmp_path}"])
    with pytest.raises(SweepError, match=r"metric 'eval/retrun' is not in .* \(did you mean 'eval/return'\?\); the sweep stopped after its first trial"):
        run_sweep(plan, fake_train, echo=lambda s: None)
    assert (tmp_path / "typo" / SUMMARY_MD).is_file() and not (tmp_path / "typo" / plan.trials[1].name).exists()


def test_run_logger_passes_the_wandb_group(tmp_path, monkeypatch):
    calls = []

    class FakeRun:
        id = "fake1"
        dir = str(tmp_path / "files")

        def log(self, data, step=None):
            pass

        def finish(self):
            pass

    def fake_init(**kwargs):
        calls.append(kwargs)
        return FakeRun()

    module = types.ModuleType("wandb")
    module.init = fake_init
    monkeypatch.setitem(sys.modules, "wandb", module)
    RunLogger.from_config(LogConfig(wandb="offline", wandb_group="my-sweep", progress=False), tmp_path / "a", 10).close()
    RunLogger.from_config(LogConfig(wandb="offline", progress=False), tmp_path / "b", 10).close()
    assert calls[0]["group"] == "my-sweep" and "group" not in calls[1]


# ---- the CLI -----------------------------------------------------------------------------


def test_train_accepts_wandb_agent_arguments(tmp_path, monkeypatch, capsys):
    """`wandb agent` runs `mjxmbrl train CONFIG --agent.actor_lr=0.001 ...`: each becomes an override."""
    import mjxmbrl.run.loop

    got = {}

    def fake_train(cfg, resume_dir=None, stop_after=None):
        got["cfg"] = cfg
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        summary = {"env_steps": 0, "final_eval_return": None, "best_eval_return": None, "wall_time_s": 0.0}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return run_dir

    monkeypatch.setattr(mjxmbrl.run.loop, "train", fake_train)
    argv = ["train", "configs/debug.yaml", "--agent.actor_lr=0.005", "train.seed=4", "--agent.hidden_sizes=[32, 32]", "--log.progress=False"]
    assert cli_module.main(argv) == 0
    cfg = got["cfg"]
    assert (cfg.agent.actor_lr, cfg.train.seed, cfg.agent.hidden_sizes, cfg.log.progress) == (0.005, 4, (32, 32), False)
    assert cfg.env.num_envs == 8  # debug.yaml still read
    assert "done:" in capsys.readouterr().out


def test_cli_train_dashed_overrides_and_unknown_options(tmp_path, capsys):
    proc = cli("train", "configs/debug.yaml", "--agent.actor_lrr=0.001", f"--log.runs_dir={tmp_path}")
    assert proc.returncode == 1 and "unknown config key 'agent.actor_lrr' (did you mean 'actor_lr'?)" in error_line(proc)
    assert cli_module.main(["train", "configs/debug.yaml", "--train.total_env_steps=0", f"log.runs_dir={tmp_path}"]) == 1
    assert "error: train.total_env_steps must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli_module.main(["train", "configs/debug.yaml", "--frobnicate", "--agent.actor_lr=0.001"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "unrecognized arguments: --frobnicate (overrides look like section.key=value or --section.key=value)" in err
    with pytest.raises(SystemExit) as exit_:
        cli_module.main(["eval", "somewhere", "--agent.actor_lr=0.001"])
    assert exit_.value.code == 2 and "unrecognized arguments: --agent.actor_lr=0.001" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_sweep_bad_input_and_dry_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    bayes = write(tmp_path, {**GRID, "method": "bayes"})
    proc = cli("sweep", bayes, f"log.runs_dir={runs}")
    assert proc.returncode == 1 and "method 'bayes' cannot run locally" in error_line(proc)
    assert cli_module.main(["sweep", str(ROOT / "configs/sweeps/debug_grid.yaml"), "--dry-run", f"--log.runs_dir={runs}"]) == 0
    out = capsys.readouterr().out
    assert "sweep debug-grid: grid, 4 trials" in out and out.count("  trial-00") == 4
    assert not runs.exists()


def test_sweep_end_to_end_2x2_grid_on_the_debug_config(tmp_path):
    """Four tiny trainings in one process. agent.init_alpha and train.seed only change the initial state, so with
    JAX's persistent compilation cache (tests/conftest.py) the four trials compile the train chunk once."""
    runs = tmp_path / "runs"
    sweep_file = write(
        tmp_path,
        {
            "name": "tiny-grid",
            "method": "grid",
            "metric": {"name": "eval/return", "goal": "maximize"},
            "parameters": {"agent.init_alpha": {"values": [0.05, 0.5]}, "train.seed": {"values": [0, 1]}},
            "command": ["${env}", "mjxmbrl", "train", "configs/debug.yaml", "${args}"],
        },
    )
    proc = cli("sweep", sweep_file, *TINY, f"log.runs_dir={runs}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir = runs / "tiny-grid"
    trial_dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [p.name for p in trial_dirs] == [
        "trial-000-init_alpha_0.05-seed_0",
        "trial-001-init_alpha_0.05-seed_1",
        "trial-002-init_alpha_0.5-seed_0",
        "trial-003-init_alpha_0.5-seed_1",
    ]
    finals = {}
    for d in trial_dirs:
        saved = yaml.safe_load((d / "config.yaml").read_text())
        assert saved["log"]["wandb_group"] == "tiny-grid" and saved["train"]["total_env_steps"] == 1600
        assert list((d / "wandb").glob("offline-run-*")), "each trial is an offline W&B run"
        rows = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
        finals[d.name] = [r["eval/return"] for r in rows if "eval/return" in r][-1]
    with open(sweep_dir / SUMMARY_CSV) as f:
        table = list(csv.DictReader(f))
    assert [r["trial"] for r in table] == sorted(finals, key=lambda n: -finals[n])  # best first
    for r in table:
        assert float(r["eval/return"]) == pytest.approx(finals[r["trial"]], rel=1e-5)
        assert r["seeds"] == "1" and r["status"] == "ok"
    assert [r["rank"] for r in table] == ["1", "2", "3", "4"]
    md = (sweep_dir / SUMMARY_MD).read_text()
    assert md.index(table[0]["trial"]) < md.index(table[-1]["trial"])
    assert md.strip().splitlines()[-1] in proc.stdout  # printed too
    with pytest.raises(SweepError, match="already exists"):
        plan_sweep(load_sweep(sweep_file), overrides=[*TINY, f"log.runs_dir={runs}"])
