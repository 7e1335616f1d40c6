"""The CLI through a subprocess: smoke runs and every bad input of the foundation issue.

Each bad input must give one `error:` line on stderr, a non-zero exit, and
leave what was already written untouched.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "train.total_env_steps=1600",
    "train.warmup_env_steps=400",
    "train.log_every=400",
    "train.eval_every=800",
    "train.checkpoint_every=400",
    "train.eval_episodes=2",
    "log.progress=false",
]


def cli(*args, timeout=300, env_extra=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "mjxmbrl.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


def error_line(proc):
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    proc = cli("train", "configs/debug.yaml", *TINY, f"log.runs_dir={runs}", "log.run_name=smoke", "log.wandb=offline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (runs / "train_stdout.txt").write_text(proc.stdout)
    return runs / "smoke"


def test_train_smoke_writes_the_run_directory(finished_run):
    run = finished_run
    for name in ["config.yaml", "metrics.jsonl", "summary.json", "learning_curve.png"]:
        assert (run / name).is_file(), name
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("env_steps" in r for r in rows)
    assert [r["env_steps"] for r in rows] == [400, 800, 1200, 1600]
    assert sum("eval/return" in r for r in rows) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 1600 and summary["finished"]
    assert list((run / "checkpoints").iterdir())
    assert list((run / "wandb").glob("offline-run-*")), "W&B offline run missing"


def test_train_prints_where_the_curve_metrics_checkpoints_are_and_how_to_watch(finished_run):
    out = (finished_run.parent / "train_stdout.txt").read_text()
    for name, path in [("curve", "learning_curve.png"), ("metrics", "metrics.jsonl"), ("checkpoints", "checkpoints")]:
        (line,) = [l for l in out.splitlines() if l.strip().startswith(f"{name}:")]
        assert line.split(":", 1)[1].strip() == str(finished_run / path)
    assert f"mjxmbrl eval {finished_run} --video" in out


def test_eval_command(finished_run):
    proc = cli("eval", finished_run, "--episodes", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert len(result["returns"]) == 3 and result["source"] == "policy export"
    # planner overrides: one clear error for another section, and for an agent that acts by its policy alone
    before = (finished_run / "eval.json").read_text()
    for override, message in (("train.seed=3", "only planner.* may change"), ("planner.name=none", "acts with its policy alone")):
        proc = cli("eval", finished_run, override, "--episodes", "1")
        assert proc.returncode == 1 and message in error_line(proc), proc.stderr[-2000:]
    assert (finished_run / "eval.json").read_text() == before and not list(finished_run.glob("eval-planner-*"))


def test_list_and_plot(finished_run, tmp_path):
    proc = cli("list", "envs")
    assert proc.returncode == 0
    assert "CartpoleSwingup" in proc.stdout and "halfcheetah" in proc.stdout and "toy_reach" in proc.stdout
    assert cli("list", "agents").stdout.startswith("sac")
    models = cli("list", "models").stdout
    assert all(name in models for name in ("mlp", "gru", "ensemble", "rssm", "oracle"))
    assert "Sequential Monte Carlo" in cli("list", "planners").stdout
    out = tmp_path / "curves.png"
    proc = cli("plot", finished_run, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 1000


def test_bench_quick(tmp_path):
    out = tmp_path / "bench.md"
    proc = cli("bench", "sac", "--quick", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio chunk / (env alone + updates alone)" in out.read_text()
    proc = cli("bench", "models", "--quick", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for name in ("mlp", "gru", "ensemble", "rssm"):
        assert f"| {name} |" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["train.total_env_step=10"], "did you mean 'total_env_steps'"),
        (["train.seed=abc"], "train.seed: expected int"),
        (["env.name=CartpoleSwingupp"], "unknown env 'CartpoleSwingupp'"),
        (["agent.name=sacc"], "unknown agent 'sacc'"),
        (["configs/nope.yaml"], "config file not found"),
        (["model.name=rnn"], "unknown model 'rnn'"),
        (["env.name=humanoid", "model.name=mlp"], "env 'humanoid' declares none"),
        (["model.name=rssm", "model.pixels=true"], "pixel observations are not enabled"),
        (["model.name=ensemble", "model.rollout=ts"], "model.rollout: 'ts' is not one of"),
        (["model.name=gru", "model.seq_len=0"], "model.seq_len must be positive"),
        (["model.name=oracle"], "env 'toy_reach' does not run on MJX"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, args, message):
    proc = cli("train", *args, f"log.runs_dir={tmp_path}")
    assert proc.returncode == 1
    assert message in error_line(proc)
    assert not any(tmp_path.iterdir()), "a failed start must not leave a run directory behind"


def test_runs_dir_that_cannot_be_created_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = cli("train", "configs/debug.yaml", f"log.runs_dir={blocker / 'runs'}", "log.run_name=r")
    assert proc.returncode == 1
    assert error_line(proc) == f"error: cannot create run directory {blocker / 'runs' / 'r'}: Not a directory"
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"] and blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_read_only_runs_dir_is_one_clear_error(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        proc = cli("train", "configs/debug.yaml", f"log.runs_dir={read_only / 'runs'}", "log.run_name=r")
    finally:
        read_only.chmod(0o755)
    assert proc.returncode == 1
    assert error_line(proc).startswith(f"error: cannot create run directory {read_only / 'runs' / 'r'}: Permission denied")
    assert list(read_only.iterdir()) == []


ORACLE = ["env.name=CartpoleSwingup", "model.name=oracle"]


@pytest.mark.parametrize(
    "args, message",
    [
        (ORACLE + ["planner.name=cem", "planner.num_samples=10", "planner.elite_fraction=0.01"], "leaves zero elites"),
        (ORACLE + ["planner.name=mppi", "planner.horizon=0"], "planner.horizon must be >= 1"),
        (ORACLE + ["planner.name=smc", "planner.temperature=0"], "planner.temperature must be > 0"),
        (ORACLE + ["planner.name=mppi", "planner.temperature=-1"], "planner.temperature must be > 0"),
        (["env.name=CartpoleSwingup", "planner.name=mppi"], "a planner needs a model"),
        (ORACLE + ["planner.name=astar"], "unknown planner 'astar'"),
        (ORACLE, "needs a planner"),
        (ORACLE + ["planner.name=smc", "planner.proposal=policy"], "needs a trained policy"),
        (["env.name=CartpoleSwingup", "model.name=mlp", "planner.name=cem"], "must come from a training run"),
    ],
)
def test_plan_bad_input_is_one_clear_error(tmp_path, args, message):
    proc = cli("plan", *args, f"log.runs_dir={tmp_path}")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert message in error_line(proc)
    assert not any(tmp_path.iterdir())


def test_plan_rejects_a_source_run_of_another_task(tmp_path, finished_run):
    proc = cli("plan", *ORACLE, "planner.name=mppi", f"planner.source_run={finished_run}", f"log.runs_dir={tmp_path}")
    assert proc.returncode == 1 and "was trained on toy_reach" in error_line(proc)


def test_plan_runs_mpc_episodes_with_the_oracle(tmp_path):
    proc = cli(
        "plan", "env.name=CartpoleBalance", "env.action_repeat=4", "env.episode_length=60", "model.name=oracle",
        "planner.name=mppi", "planner.num_samples=16", "planner.horizon=5", f"log.runs_dir={tmp_path}",
        "log.run_name=p", "--episodes", "2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert len(summary["returns"]) == 2 and summary["return_mean"] > 40  # balanced: ~1 per control step
    assert (tmp_path / "p" / "plan.png").exists() and (tmp_path / "p" / "config.yaml").exists()


def test_plan_with_a_learned_model_policy_and_value_from_a_run(tmp_path):
    """planner.source_run supplies the trained MLP model, the policy proposal and the value."""
    run = tmp_path / "runs" / "with_model"
    proc = cli(
        "train", ROOT / "configs/debug.yaml", "train.total_env_steps=800", "train.warmup_env_steps=200",
        "train.log_every=400", "train.eval_every=800", "train.eval_episodes=2", "model.name=mlp",
        "model.hidden_sizes=[16]", "model.batch_size=16", "model.seq_len=4", f"log.runs_dir={tmp_path / 'runs'}",
        "log.run_name=with_model", "log.wandb=disabled",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = cli(
        "plan", "env.name=toy_reach", "model.name=mlp", "planner.name=smc", "planner.num_particles=16",
        "planner.horizon=4", "planner.proposal=mixture", "planner.value=soft", f"planner.source_run={run}",
        f"log.runs_dir={tmp_path}", "log.run_name=p", "--episodes", "2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert summary["model"] == "mlp" and len(summary["returns"]) == 2
    assert np.isfinite(summary["return_mean"]) and "planner/ess" in summary["planner_metrics"]


def test_model_eval_bad_input(tmp_path, finished_run):
    proc = cli("model-eval", "--env", "humanoid", "--models", "mlp", "--out", tmp_path / "me")
    assert proc.returncode == 1 and "declares none" in error_line(proc)
    proc = cli("model-eval", "--env", "toy_reach", "--models", "lstm", "--out", tmp_path / "me")
    assert proc.returncode == 1 and "unknown model 'lstm'" in error_line(proc)
    proc = cli("model-eval", "--env", "toy_reach", "--policy-fraction", "0.5")
    assert proc.returncode == 1 and "needs a run directory" in error_line(proc)
    assert not (tmp_path / "me").exists()


def test_model_eval_on_a_run(finished_run):
    """The product path end to end at toy sizes: policy + random episodes, every model type, table and plot."""
    out = finished_run / "model_eval_test"
    proc = cli(
        "model-eval", finished_run, "--updates", "20", "--transitions", "200",
        "--settings", ROOT / "tests/data/model_eval_tiny.yaml", "--out", out,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "model_eval.md").read_text()
    for row in ("| no change |", "| linear (least squares) |", "| mlp |", "| gru |", "| ensemble |", "| rssm |"):
        assert row in table
    result = json.loads((out / "model_eval.json").read_text())
    assert set(result["errors"]["mlp"]) == {"1", "5", "10", "25"}
    assert result["errors"]["no change"]["1"] > 0
    assert (out / "model_eval.png").stat().st_size > 1000


def test_existing_run_dir_is_never_overwritten(finished_run):
    before = snapshot(finished_run)
    proc = cli("train", "configs/debug.yaml", *TINY, f"log.runs_dir={finished_run.parent}", "log.run_name=smoke")
    assert proc.returncode == 1
    assert "already exists" in error_line(proc) and "--resume" in error_line(proc)
    assert snapshot(finished_run) == before


def test_resume_without_checkpoint(tmp_path, finished_run):
    run = tmp_path / "nock"
    run.mkdir()
    (run / "config.yaml").write_text((finished_run / "config.yaml").read_text())
    proc = cli("train", "--resume", run)
    assert proc.returncode == 1 and "no checkpoint" in error_line(proc)
    proc = cli("train", "--resume", tmp_path / "missing")
    assert proc.returncode == 1 and "not a run directory" in error_line(proc)


def test_resume_with_corrupt_checkpoint(tmp_path, finished_run):
    run = tmp_path / "corrupt"
    run.mkdir()
    for name in ["config.yaml", "metrics.jsonl"]:
        (run / name).write_bytes((finished_run / name).read_bytes())
    step_dir = run / "checkpoints" / "1600"
    step_dir.mkdir(parents=True)
    (step_dir / "garbage").write_bytes(b"\x00not a checkpoint")
    before = snapshot(run)
    proc = cli("train", "--resume", run)
    assert proc.returncode == 1
    assert "checkpoint" in error_line(proc)
    assert snapshot(run) == before


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    # A huge reward scale overflows the critic target as soon as learning starts (the
    # second chunk); the first chunk's checkpoint must survive.
    proc = cli(
        "train", "configs/debug.yaml", *TINY, "train.warmup_env_steps=800", "agent.reward_scale=1e38", f"log.runs_dir={tmp_path}", "log.run_name=nan", "log.wandb=disabled"
    )
    assert proc.returncode == 1
    line = error_line(proc)
    assert "non-finite learner/critic_loss" in line and "at env step 800" in line
    assert "last good checkpoint (env step 400)" in line
    steps = sorted(int(p.name) for p in (tmp_path / "nan" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [400]
    rows = [json.loads(l) for l in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[0]["env_steps"] == 400


def test_ctrl_c_saves_a_complete_checkpoint_and_exits_130(tmp_path):
    args = ["configs/debug.yaml", "train.total_env_steps=400000", "train.log_every=400", "train.checkpoint_every=400000",
            "train.eval_every=400000", "log.progress=false", "log.wandb=disabled", f"log.runs_dir={tmp_path}", "log.run_name=int"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "mjxmbrl.cli", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "int" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted at env step" in err and "--resume" in err
    steps = [int(p.name) for p in (tmp_path / "int" / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(steps) == 1 and steps[0] % 400 == 0
    rows = metrics.read_text().splitlines()
    assert json.loads(rows[-1])["env_steps"] == steps[0]


def test_plan_reports_env_metrics_at_each_episodes_last_step():
    """plan.json's env_metrics_at_end: the metric at step ceil(length / action repeat) - 1 of each episode."""
    from mjxmbrl.cli.plan import _at_last_step
    from mjxmbrl.rollout import Episodes

    trace = {"targets_achieved": np.arange(12.0).reshape(6, 2), "vector": np.zeros((6, 2, 3))}
    result = Episodes(returns=np.zeros(2), lengths=np.array([6.0, 12.0]), rewards=np.zeros((6, 2)), metrics={},
                      trace=trace)
    assert _at_last_step(result, 2) == {"targets_achieved": [4.0, 11.0]}  # steps 2 and 5; [T, M] metrics only
