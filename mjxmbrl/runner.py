"""The host loop of a training run: run directory, chunks, eval, logging, checkpoints.

Kept apart from `train.py` (the jitted pieces) so the device code stays short
and free of host concerns. Between jitted chunks the host fetches one chunk's
metrics, evaluates when due, logs, checkpoints, and watches for Ctrl-C and
non-finite values.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import Optional

import jax
import numpy as np

from mjxmbrl.checkpoint import Checkpointer, export_policy
from mjxmbrl.config import Config, config_from_dict, config_to_dict, read_yaml, save_config
from mjxmbrl.logging import MetricsWriter, RunLogger, read_metrics, rewrite_metrics
from mjxmbrl.plotting import plot_learning_curve
from mjxmbrl.train import build, chunk_plan, init_state, make_train_chunk, summarize_chunk
from mjxmbrl.types import MjxmbrlError

EXIT_INTERRUPTED = 130


class RunError(MjxmbrlError):
    """A run directory that cannot be started or resumed."""


class TrainingDiverged(MjxmbrlError):
    """A loss or parameter went NaN/inf; the last good checkpoint is kept."""


class Interrupted(MjxmbrlError):
    exit_code = EXIT_INTERRUPTED


def new_run_dir(cfg: Config) -> Path:
    name = cfg.log.run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.env.name}-{cfg.agent.name}-s{cfg.train.seed}"
    run_dir = Path(cfg.log.runs_dir) / name
    if run_dir.exists():
        raise RunError(f"run directory {run_dir} already exists; resume it with `mjxmbrl train --resume {run_dir}` or choose another log.run_name")
    return run_dir


def load_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory (no config.yaml)")
    return config_from_dict(read_yaml(path))


def restore_run(run_dir: Path):
    """(config, built components, TrainState of the newest checkpoint) of a training run directory."""
    cfg = load_run_config(run_dir)
    components = build(cfg)
    like = jax.eval_shape(lambda: init_state(components))
    ts, _ = Checkpointer(Path(run_dir) / "checkpoints", cfg.train.keep_checkpoints).restore(like)
    return cfg, components, ts


def eval_key(seed: int, chunk_index: int) -> jax.Array:
    """Evaluation keys never touch the training key stream, so eval cannot change training."""
    return jax.random.fold_in(jax.random.PRNGKey(seed ^ 0x5EED), chunk_index)


class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current chunk; a second one aborts."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            self.requested = True
            signal.signal(signal.SIGINT, self._previous)
            print("\ninterrupt: finishing the current chunk and saving a checkpoint (Ctrl-C again to abort)", flush=True)

        self._previous = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)
        return False


def _non_finite(row: dict) -> list:
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if row.get("train/params_finite") is False:
        bad.append("learner or model parameters")
    return bad


def _trim_metrics(run_dir: Path, env_steps: int) -> None:
    """On resume, rows logged after the checkpoint are moved aside, not lost."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    rows = read_metrics(path)
    later = [r for r in rows if r["env_steps"] > env_steps]
    if later:
        aside = MetricsWriter(run_dir / "metrics.after-last-checkpoint.jsonl")
        for r in later:
            aside.write(r)
        aside.close()
        rewrite_metrics(path, [r for r in rows if r["env_steps"] <= env_steps])


def train(
    cfg: Optional[Config] = None,
    *,
    resume_dir: Optional[str | Path] = None,
    stop_after: Optional[int] = None,
) -> Path:
    """Trains a fresh run from `cfg`, or resumes `resume_dir`; returns the run directory.

    `stop_after` (env steps) checkpoints and stops at the first chunk boundary at
    or past it, as a preempted job would; `--resume` then continues bit for bit.
    """
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        cfg = load_run_config(run_dir)
        checkpointer = Checkpointer(run_dir / "checkpoints", cfg.train.keep_checkpoints)
        if checkpointer.latest_step() is None:
            raise RunError(f"cannot resume {run_dir}: it has no checkpoint")
    else:
        run_dir = new_run_dir(cfg)

    plan = chunk_plan(cfg)
    components = build(cfg)  # bad env/agent names fail here, before anything is written
    if resume_dir is None:
        run_dir.mkdir(parents=True)
        save_config(cfg, run_dir / "config.yaml")
        checkpointer = Checkpointer(run_dir / "checkpoints", cfg.train.keep_checkpoints)
    ts = init_state(components)
    wall_before = 0.0
    wandb_id = None
    if resume_dir is not None:
        ts, meta = checkpointer.restore(ts)
        wall_before = float(meta.get("wall_time_s", 0.0))
        wandb_id = meta.get("wandb_id")
        _trim_metrics(run_dir, int(ts.env_steps))

    chunk = make_train_chunk(components, plan["steps_per_chunk"])
    history = read_metrics(run_dir / "metrics.jsonl") if resume_dir else []
    eval_returns = [r["eval/return"] for r in history if "eval/return" in r]
    start_chunk = int(ts.env_steps) // plan["chunk_env_steps"]
    logger = RunLogger.from_config(
        cfg.log, run_dir, plan["total_chunks"] * plan["chunk_env_steps"], int(ts.env_steps), config_to_dict(cfg), wandb_id
    )
    print(f"run directory: {run_dir}", flush=True)

    def save(ts, wall):
        checkpointer.save(
            int(ts.env_steps),
            ts,
            {"config": config_to_dict(cfg), "env_steps": int(ts.env_steps), "wall_time_s": wall, "wandb_id": logger.run_id},
        )

    started = time.perf_counter()
    train_time, train_env_steps, compile_s = 0.0, 0, None
    stopped_early = False
    try:
        with _StopFlag() as stop:
            for chunk_index in range(start_chunk, plan["total_chunks"]):
                tic = time.perf_counter()
                ts, metrics = chunk(ts)
                row = summarize_chunk(metrics)  # device -> host once per chunk
                elapsed = time.perf_counter() - tic
                if compile_s is None:
                    compile_s = elapsed
                else:
                    train_time += elapsed
                    train_env_steps += plan["chunk_env_steps"]
                env_steps = int(ts.env_steps)
                bad = _non_finite(row)
                if bad:
                    last = checkpointer.latest_step()
                    kept = f"last good checkpoint (env step {last}) kept in {checkpointer.directory}" if last is not None else "no checkpoint had been saved yet"
                    raise TrainingDiverged(f"non-finite {', '.join(bad)} at env step {env_steps}; training stopped, {kept}")
                last_chunk = chunk_index + 1 == plan["total_chunks"]
                wants_stop = stop.requested or (stop_after is not None and env_steps >= stop_after)
                row = {"env_steps": env_steps, **row, "train/env_steps_per_s": plan["chunk_env_steps"] / elapsed}
                if (chunk_index + 1) % plan["eval_every_chunks"] == 0 or last_chunk:
                    result = components.evaluate(
                        eval_key(cfg.train.seed, chunk_index),
                        components.learner.policy_params(ts.learner),
                        ts.obs_stats,
                    )
                    returns = np.asarray(result.returns)
                    row["eval/return"] = float(returns.mean())
                    row["eval/return_std"] = float(returns.std())
                    row["eval/episode_length"] = float(np.asarray(result.lengths).mean())
                    eval_returns.append(row["eval/return"])
                wall = wall_before + time.perf_counter() - started
                row["time/wall_s"] = wall
                logger.log(row)
                if (chunk_index + 1) % plan["checkpoint_every_chunks"] == 0 or last_chunk or wants_stop:
                    save(ts, wall)
                if wants_stop and not last_chunk:
                    stopped_early = True
                    if stop.requested:
                        raise Interrupted(
                            f"interrupted at env step {env_steps}; checkpoint saved, continue with `mjxmbrl train --resume {run_dir}`"
                        )
                    break
    finally:
        logger.close()
        if (run_dir / "metrics.jsonl").exists():
            plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", run_dir.name)

    wall = wall_before + time.perf_counter() - started
    export_policy(
        run_dir / "policy",
        components.learner.policy_params(ts.learner),
        {"obs_stats": ts.obs_stats},
        {"config": config_to_dict(cfg), "env_steps": int(ts.env_steps)},
    )
    summary = {
        "env": cfg.env.name,
        "agent": cfg.agent.name,
        "seed": cfg.train.seed,
        "env_steps": int(ts.env_steps),
        "finished": not stopped_early,
        "final_eval_return": eval_returns[-1] if eval_returns else None,
        "best_eval_return": max(eval_returns) if eval_returns else None,
        "wall_time_s": wall,
        "compile_and_first_chunk_s": compile_s,
        "env_steps_per_s": train_env_steps / train_time if train_time > 0 else None,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return run_dir
