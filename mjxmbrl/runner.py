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
from mjxmbrl.config import Config, ConfigError, config_from_dict, config_to_dict, read_yaml, save_config
from mjxmbrl.logging import MetricsWriter, RunLogger, read_metrics, rewrite_metrics
from mjxmbrl.parallel import (
    barrier, is_stacked, is_writer, make_mesh, place, scalar, seed_slice, seed_values, state_shardings,
    t_interval_half_width, to_host,
)
from mjxmbrl.plotting import plot_learning_curve
from mjxmbrl.train import build, chunk_plan, init_run_state, make_train_chunk, summarize_chunk
from mjxmbrl.types import MjxmbrlError

EXIT_INTERRUPTED = 130


class RunError(MjxmbrlError):
    """A run directory that cannot be started or resumed."""


class TrainingDiverged(MjxmbrlError):
    """A loss or parameter went NaN/inf; the last good checkpoint is kept."""


class Interrupted(MjxmbrlError):
    exit_code = EXIT_INTERRUPTED


def new_run_dir(cfg: Config) -> Path:
    seeds = f"s{cfg.train.seed}" if cfg.train.num_seeds == 1 else f"s{cfg.train.seed}-{cfg.train.seed + cfg.train.num_seeds - 1}"
    name = cfg.log.run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.env.name}-{cfg.agent.name}-{seeds}"
    run_dir = Path(cfg.log.runs_dir) / name
    if run_dir.exists():
        raise RunError(f"run directory {run_dir} already exists; resume it with `mjxmbrl train --resume {run_dir}` or choose another log.run_name")
    return run_dir


def load_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory (no config.yaml)")
    return config_from_dict(read_yaml(path))


def restore_run(run_dir: Path, seed_index: Optional[int] = None):
    """(config, built components, TrainState of the newest checkpoint) of a training run directory.

    A multi-seed run's state is stacked [num_seeds, ...]; `seed_index` picks one
    seed's state (index i is seed train.seed + i). On a one-seed run only index 0 exists.
    """
    cfg = load_run_config(run_dir)
    num = cfg.train.num_seeds
    if seed_index is not None and not 0 <= seed_index < num:
        raise RunError(f"seed index {seed_index} is out of range: {run_dir} trained {num} seed(s), indices 0..{num - 1}")
    components = build(cfg)
    like = jax.eval_shape(lambda: init_run_state(components))
    ts, _ = Checkpointer(Path(run_dir) / "checkpoints", cfg.train.keep_checkpoints).restore(like)
    if seed_index is not None and is_stacked(cfg):
        ts = seed_slice(ts, seed_index)
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


def _check_finite(rows: list, seeds: list, env_steps: int, checkpointer: Checkpointer) -> None:
    """Stops the run at the first seed whose chunk has a non-finite metric or parameter, naming the seed."""
    for seed, row in zip(seeds, rows):
        bad = _non_finite(row)
        if bad:
            last = checkpointer.latest_step()
            kept = f"last good checkpoint (env step {last}) kept in {checkpointer.directory}" if last is not None else "no checkpoint had been saved yet"
            raise TrainingDiverged(f"non-finite {', '.join(bad)} in seed {seed} at env step {env_steps}; training stopped, {kept}")


class _NoLogger:
    """What processes other than 0 of a multi-host job log: nothing."""

    run_id = None

    def log_seeds(self, rows):
        return rows

    def close(self):
        pass


def _make_seed_evaluator(components, cfg):
    """(chunk_index, ts) -> per-seed eval returns [S, M] and lengths [S, M]; eval keys per seed."""
    seeds = seed_values(cfg.train)
    stacked = is_stacked(cfg)
    evaluate = jax.jit(jax.vmap(components.evaluate)) if stacked else components.evaluate

    def run(chunk_index: int, ts):
        keys = [np.asarray(eval_key(s, chunk_index)) for s in seeds]
        params = components.learner.policy_params(ts.learner)
        result = evaluate(np.stack(keys) if stacked else keys[0], params, ts.obs_stats)
        returns, lengths = np.asarray(result.returns), np.asarray(result.lengths)
        return returns.reshape(len(seeds), -1), lengths.reshape(len(seeds), -1)

    return run


def _seed_summary(seeds: list, eval_returns: dict) -> dict:
    """final/best eval return as the mean over seeds, their spread, and the per-seed values."""
    per_seed = [
        {
            "seed": s,
            "final_eval_return": eval_returns[s][-1] if eval_returns[s] else None,
            "best_eval_return": max(eval_returns[s]) if eval_returns[s] else None,
        }
        for s in seeds
    ]
    finals = [p["final_eval_return"] for p in per_seed if p["final_eval_return"] is not None]
    bests = [p["best_eval_return"] for p in per_seed if p["best_eval_return"] is not None]
    std = None
    if finals:
        std = float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0
    return {
        "final_eval_return": float(np.mean(finals)) if finals else None,
        "best_eval_return": float(np.mean(bests)) if bests else None,
        "final_eval_return_std": std,
        "final_eval_return_ci95": t_interval_half_width(finals),
        "per_seed": per_seed,
    }


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
    All `train.num_seeds` seeds train in one jitted program on the device mesh
    of `train.devices`; in a multi-host job every process runs this loop and
    process 0 alone writes the run directory.
    """
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        cfg = load_run_config(run_dir)
    mesh = make_mesh(cfg)  # joins a multi-host job and checks the devices before anything is written
    writer = is_writer()
    if resume_dir is not None:
        checkpointer = Checkpointer(run_dir / "checkpoints", cfg.train.keep_checkpoints)
        if checkpointer.latest_step() is None:
            raise RunError(f"cannot resume {run_dir}: it has no checkpoint")
    else:
        if jax.process_count() > 1 and cfg.log.run_name is None:
            raise ConfigError("a multi-host run needs log.run_name, so that every process names the same run directory")
        run_dir = new_run_dir(cfg)

    plan = chunk_plan(cfg)
    components = build(cfg)  # bad env/agent names fail here, before anything is written
    seeds = seed_values(cfg.train)
    stacked = is_stacked(cfg)
    if resume_dir is None:
        barrier("mjxmbrl-run-dir-checked")  # every process has seen the directory absent before 0 creates it
        if writer:
            run_dir.mkdir(parents=True)
            save_config(cfg, run_dir / "config.yaml")
        checkpointer = Checkpointer(run_dir / "checkpoints", cfg.train.keep_checkpoints)
    shape = jax.eval_shape(lambda: init_run_state(components))
    shardings = state_shardings(shape, mesh, cfg.env.num_envs, stacked)
    wall_before = 0.0
    wandb_id = None
    if resume_dir is not None:
        ts, meta = checkpointer.restore(shape)
        ts = place(ts, shardings)
        wall_before = float(meta.get("wall_time_s", 0.0))
        wandb_id = meta.get("wandb_id")
        if writer:
            _trim_metrics(run_dir, scalar(ts.env_steps))
        barrier("mjxmbrl-metrics-trimmed")  # the others read the history below
    elif jax.process_count() == 1:
        ts = place(init_run_state(components), shardings)
    else:
        ts = jax.jit(lambda: init_run_state(components), out_shardings=shardings)()

    chunk = make_train_chunk(components, plan["steps_per_chunk"], shardings)
    evaluate_seeds = _make_seed_evaluator(components, cfg)
    history = read_metrics(run_dir / "metrics.jsonl") if resume_dir else []
    eval_returns = {s: [] for s in seeds}
    for r in history:
        if "eval/return" in r and r.get("seed", cfg.train.seed) in eval_returns:
            eval_returns[r.get("seed", cfg.train.seed)].append(r["eval/return"])
    start_chunk = scalar(ts.env_steps) // plan["chunk_env_steps"]
    if writer:
        logger = RunLogger.from_config(
            cfg.log, run_dir, plan["total_chunks"] * plan["chunk_env_steps"], scalar(ts.env_steps), config_to_dict(cfg), wandb_id
        )
        print(f"run directory: {run_dir}" + (f" | seeds {seeds[0]}..{seeds[-1]}" if stacked else "")
              + (f" | {mesh.size} devices" if mesh.size > 1 else ""), flush=True)
    else:
        logger = _NoLogger()

    def save(ts, wall):
        host = to_host(ts)  # a collective across processes; only process 0 writes
        if writer:
            checkpointer.save(
                scalar(host.env_steps),
                host,
                {"config": config_to_dict(cfg), "env_steps": scalar(host.env_steps), "seeds": seeds,
                 "wall_time_s": wall, "wandb_id": logger.run_id},
            )

    started = time.perf_counter()
    train_time, train_env_steps, compile_s = 0.0, 0, None
    stopped_early = False
    try:
        with _StopFlag() as stop:
            for chunk_index in range(start_chunk, plan["total_chunks"]):
                tic = time.perf_counter()
                ts, metrics = chunk(ts)
                metrics = jax.device_get(metrics)  # device -> host once per chunk
                rows = [summarize_chunk(seed_slice(metrics, i)) for i in range(len(seeds))] if stacked else [summarize_chunk(metrics)]
                elapsed = time.perf_counter() - tic
                if compile_s is None:
                    compile_s = elapsed
                else:
                    train_time += elapsed
                    train_env_steps += plan["chunk_env_steps"]
                env_steps = scalar(ts.env_steps)
                _check_finite(rows, seeds, env_steps, checkpointer)
                last_chunk = chunk_index + 1 == plan["total_chunks"]
                wants_stop = stop.requested or (stop_after is not None and env_steps >= stop_after)
                rows = [
                    {"env_steps": env_steps, "seed": seed, **row, "train/env_steps_per_s": plan["chunk_env_steps"] / elapsed}
                    for seed, row in zip(seeds, rows)
                ]
                if (chunk_index + 1) % plan["eval_every_chunks"] == 0 or last_chunk:
                    returns, lengths = evaluate_seeds(chunk_index, ts)
                    for i, row in enumerate(rows):
                        row["eval/return"] = float(returns[i].mean())
                        row["eval/return_std"] = float(returns[i].std())
                        row["eval/episode_length"] = float(lengths[i].mean())
                        eval_returns[row["seed"]].append(row["eval/return"])
                wall = wall_before + time.perf_counter() - started
                for row in rows:
                    row["time/wall_s"] = wall
                logger.log_seeds(rows)
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
        if writer and (run_dir / "metrics.jsonl").exists():
            plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", run_dir.name)

    wall = wall_before + time.perf_counter() - started
    host = to_host(ts)
    if not writer:
        return run_dir
    export_policy(
        run_dir / "policy",
        components.learner.policy_params(host.learner),
        {"obs_stats": host.obs_stats},
        # stacked: every array has a leading seed axis, index i is seeds[i]
        {"config": config_to_dict(cfg), "env_steps": scalar(host.env_steps), "seeds": seeds, "stacked": stacked},
    )
    rate = train_env_steps / train_time if train_time > 0 else None
    summary = {
        "env": cfg.env.name,
        "agent": cfg.agent.name,
        "seed": cfg.train.seed,
        "seeds": seeds,
        "env_steps": scalar(host.env_steps),
        "finished": not stopped_early,
        **_seed_summary(seeds, eval_returns),
        "wall_time_s": wall,
        "compile_and_first_chunk_s": compile_s,
        "env_steps_per_s": rate,  # env steps of one seed per second: the run's progress rate
        "env_steps_per_s_all_seeds": rate * len(seeds) if rate is not None else None,
        "devices": int(mesh.size),
        "processes": jax.process_count(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return run_dir
