"""The host loop of a training run: run directory, chunks, eval, logging, checkpoints.

Kept apart from `train.py` (the jitted pieces) so the device code stays short
and free of host concerns. `train` reads as its steps:

    _open_run        read (resume) or name and create (fresh) the run directory,
                     join the device mesh, build the components
    _initial_state   restore the newest checkpoint, or initialise (with a transfer section's
                     parts of another run: run/transfer.py), place on the mesh
    _train_chunk     per chunk: run it -> rows per seed -> NaN guard -> eval when due
                     -> log -> checkpoint when due -> stop? (stop_after, Ctrl-C)
    _close_logs      close metrics.jsonl / W&B / progress, draw learning_curve.png
    _finish          export the policy, write summary.json

A full disk (ENOSPC) anywhere ends the run with one `DiskFull` error that names
the path and the free space and says how to continue; what was written stays.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import numpy as np

from mjxmbrl.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    read_yaml,
    save_config,
    seed_values,
)
from mjxmbrl.run.checkpoints import Checkpointer, export_policy
from mjxmbrl.run.chunks import chunk_plan, summarize_chunk
from mjxmbrl.run.curves import plot_learning_curve
from mjxmbrl.run.devices import (
    barrier,
    is_stacked,
    is_writer,
    make_mesh,
    place,
    scalar,
    seed_slice,
    state_shardings,
    to_host,
)
from mjxmbrl.run.disk import DiskFull, atomic_write, disk_full_as_error
from mjxmbrl.run.evaluation import add_eval, make_seed_evaluator
from mjxmbrl.run.logging import (
    MetricsWriter,
    RunLogger,
    read_metrics,
    rewrite_metrics,
    t_interval_half_width,
)
from mjxmbrl.run.transfer import apply_transfer
from mjxmbrl.train import build, init_run_state, make_train_chunk
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


def load_run_config(run_dir: Path, overrides: Sequence[str] = ()) -> Config:
    """The config a run saved, with `overrides` ("section.key=value") applied on top."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory (no config.yaml)")
    return config_from_dict(apply_overrides(read_yaml(path), overrides))


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


@dataclass
class _Run:
    """What the host keeps of one training run between chunks."""

    cfg: Config
    run_dir: Path
    resumed: bool
    mesh: Any
    writer: bool  # process 0 of a multi-host job, or the only process: it alone writes files
    checkpointer: Checkpointer
    plan: dict  # `train.chunk_plan`
    components: Any
    seeds: list
    stacked: bool
    logger: Any = None
    eval_returns: dict = field(default_factory=dict)  # seed -> eval returns so far, for summary.json


@dataclass
class _Clock:
    """Wall time of the run (across resumes) and its training rate without the first, compiling chunk."""

    wall_before: float  # wall time of the run before this process resumed it
    started: float
    train_time: float = 0.0
    train_env_steps: int = 0
    compile_s: Optional[float] = None

    def add_chunk(self, elapsed: float, env_steps: int) -> None:
        if self.compile_s is None:
            self.compile_s = elapsed
        else:
            self.train_time += elapsed
            self.train_env_steps += env_steps

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def rate(self) -> Optional[float]:
        return self.train_env_steps / self.train_time if self.train_time > 0 else None


def _create_run_dir(run_dir: Path, cfg: Config) -> None:
    """Creates the run directory with its config.yaml; a directory that cannot be made is one RunError."""
    try:
        run_dir.mkdir(parents=True)
    except OSError as err:
        where = f" ({err.filename})" if err.filename and Path(err.filename) != run_dir else ""
        raise RunError(f"cannot create run directory {run_dir}: {err.strerror or err}{where}") from None
    try:
        with disk_full_as_error(run_dir / "config.yaml"):
            save_config(cfg, run_dir / "config.yaml")
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # it holds nothing of the run yet
        raise


def _open_run(cfg: Optional[Config], resume_dir: Optional[str | Path]) -> _Run:
    """Reads (resume) or names (fresh) the run directory, joins the device mesh, builds the components.

    A fresh run's directory is created only after every check has passed.
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
    if resume_dir is None:
        barrier("mjxmbrl-run-dir-checked")  # every process has seen the directory absent before 0 creates it
        if writer:
            _create_run_dir(run_dir, cfg)
        checkpointer = Checkpointer(run_dir / "checkpoints", cfg.train.keep_checkpoints)
    return _Run(cfg, run_dir, resume_dir is not None, mesh, writer, checkpointer, plan, components,
                seed_values(cfg.train), is_stacked(cfg))


def _initial_state(run: _Run):
    """(TrainState placed on the mesh, its shardings, the checkpoint's metadata or {} for a fresh run).

    On resume, metrics rows logged after the checkpoint are moved aside first.
    """
    shape = jax.eval_shape(lambda: init_run_state(run.components))
    shardings = state_shardings(shape, run.mesh, run.cfg.env.num_envs, run.stacked)
    if run.resumed:
        ts, meta = run.checkpointer.restore(shape)
        ts = place(ts, shardings)
        if run.writer:
            _trim_metrics(run.run_dir, scalar(ts.env_steps))
        barrier("mjxmbrl-metrics-trimmed")  # the others read the history below
        return ts, shardings, meta
    if jax.process_count() == 1:
        ts = apply_transfer(run.cfg, init_run_state(run.components), restore_run, run.stacked)
        return place(ts, shardings), shardings, {}
    if run.cfg.transfer.source_run is not None:
        raise ConfigError("transfer.source_run is read on one host: a multi-host run cannot load it yet")
    return jax.jit(lambda: init_run_state(run.components), out_shardings=shardings)(), shardings, {}


def _eval_history(run: _Run) -> dict:
    """seed -> the eval returns a resumed run logged before (empty lists for a fresh run)."""
    history = read_metrics(run.run_dir / "metrics.jsonl") if run.resumed else []
    default_seed = run.cfg.train.seed
    eval_returns = {s: [] for s in run.seeds}
    for r in history:
        if "eval/return" in r and r.get("seed", default_seed) in eval_returns:
            eval_returns[r.get("seed", default_seed)].append(r["eval/return"])
    return eval_returns


def _open_logger(run: _Run, env_steps: int, wandb_id: Optional[str]):
    """metrics.jsonl, W&B and progress on the writing process (which also names the run directory); nothing elsewhere."""
    if not run.writer:
        return _NoLogger()
    plan = run.plan
    logger = RunLogger.from_config(
        run.cfg.log, run.run_dir, plan["total_chunks"] * plan["chunk_env_steps"], env_steps, config_to_dict(run.cfg), wandb_id
    )
    print(f"run directory: {run.run_dir}" + (f" | seeds {run.seeds[0]}..{run.seeds[-1]}" if run.stacked else "")
          + (f" | {run.mesh.size} devices" if run.mesh.size > 1 else ""), flush=True)
    return logger


def _save_checkpoint(run: _Run, ts, wall: float) -> None:
    host = to_host(ts)  # a collective across processes; only process 0 writes
    if run.writer:
        run.checkpointer.save(
            scalar(host.env_steps),
            host,
            {"config": config_to_dict(run.cfg), "env_steps": scalar(host.env_steps), "seeds": run.seeds,
             "wall_time_s": wall, "wandb_id": run.logger.run_id},
        )


def _chunk_rows(run: _Run, metrics) -> list:
    """One summary row per seed from a chunk's host metrics (stacked [S, ...] with several seeds)."""
    if run.stacked:
        return [summarize_chunk(seed_slice(metrics, i)) for i in range(len(run.seeds))]
    return [summarize_chunk(metrics)]


def _train_chunk(run: _Run, clock: _Clock, chunk, evaluate_seeds, chunk_index: int, ts, stop: _StopFlag,
                 stop_after: Optional[int]):
    """Runs one chunk, then: rows per seed -> NaN guard -> eval when due -> log -> checkpoint when due.

    Returns (ts, stopped_early): True when `stop_after` ends the run before its last
    chunk; a Ctrl-C raises Interrupted once the chunk is checkpointed.
    """
    plan = run.plan
    tic = time.perf_counter()
    ts, metrics = chunk(ts)
    metrics = jax.device_get(metrics)  # device -> host once per chunk
    rows = _chunk_rows(run, metrics)
    elapsed = time.perf_counter() - tic
    clock.add_chunk(elapsed, plan["chunk_env_steps"])
    env_steps = scalar(ts.env_steps)
    _check_finite(rows, run.seeds, env_steps, run.checkpointer)
    last_chunk = chunk_index + 1 == plan["total_chunks"]
    wants_stop = stop.requested or (stop_after is not None and env_steps >= stop_after)
    rows = [
        {"env_steps": env_steps, "seed": seed, **row, "train/env_steps_per_s": plan["chunk_env_steps"] / elapsed}
        for seed, row in zip(run.seeds, rows)
    ]
    if (chunk_index + 1) % plan["eval_every_chunks"] == 0 or last_chunk:
        add_eval(rows, evaluate_seeds(chunk_index, ts), run.eval_returns)
    wall = clock.wall()
    for row in rows:
        row["time/wall_s"] = wall
    run.logger.log_seeds(rows)
    if (chunk_index + 1) % plan["checkpoint_every_chunks"] == 0 or last_chunk or wants_stop:
        _save_checkpoint(run, ts, wall)
    if wants_stop and not last_chunk:
        if stop.requested:
            raise Interrupted(f"interrupted at env step {env_steps}; checkpoint saved, continue with `mjxmbrl train --resume {run.run_dir}`")
        return ts, True
    return ts, False


def _close_logs(run: _Run, failing: bool = False) -> None:
    """Closes the logger and draws learning_curve.png. While another error is on its way
    (`failing`), a full disk here is left unsaid: the first error is the one to report."""
    try:
        run.logger.close()
        if run.writer and (run.run_dir / "metrics.jsonl").exists():
            plot_learning_curve(run.run_dir / "metrics.jsonl", run.run_dir / "learning_curve.png", run.run_dir.name)
    except DiskFull:
        if not failing:
            raise


def _summary(run: _Run, host, clock: _Clock, wall: float, stopped_early: bool) -> dict:
    """summary.json: the run, its eval returns over seeds, and how fast it went."""
    cfg, rate = run.cfg, clock.rate()
    return {
        "env": cfg.env.name,
        "agent": cfg.agent.name,
        "seed": cfg.train.seed,
        "seeds": run.seeds,
        "env_steps": scalar(host.env_steps),
        "finished": not stopped_early,
        **_seed_summary(run.seeds, run.eval_returns),
        "wall_time_s": wall,
        "compile_and_first_chunk_s": clock.compile_s,
        "env_steps_per_s": rate,  # env steps of one seed per second: the run's progress rate
        "env_steps_per_s_all_seeds": rate * len(run.seeds) if rate is not None else None,
        "devices": int(run.mesh.size),
        "processes": jax.process_count(),
    }


def _finish(run: _Run, ts, clock: _Clock, stopped_early: bool) -> Path:
    """Exports the policy and writes summary.json (process 0 only); returns the run directory."""
    wall = clock.wall()
    host = to_host(ts)
    if not run.writer:
        return run.run_dir
    agent = run.components.agent
    policy_params = agent.policy_params(host.agent)
    if policy_params is not None:  # an MPC-only agent has no policy to export
        export_policy(
            run.run_dir / "policy",
            policy_params,
            {"obs_stats": agent.obs_stats(host.agent)},
            # stacked: every array has a leading seed axis, index i is seeds[i]
            {"config": config_to_dict(run.cfg), "env_steps": scalar(host.env_steps), "seeds": run.seeds, "stacked": run.stacked},
        )
    summary = _summary(run, host, clock, wall, stopped_early)
    atomic_write(run.run_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return run.run_dir


def _after_disk_full(run: _Run) -> str:
    latest = run.checkpointer.latest_step()
    if latest is None:
        return f"no checkpoint was saved yet: free some space, remove {run.run_dir} and start the run again"
    return f"free some space, then continue from env step {latest} with `mjxmbrl train --resume {run.run_dir}`"


def _train_run(run: _Run, stop_after: Optional[int]) -> Path:
    """Places the state, runs the chunks left, closes the logs and finishes the run."""
    ts, shardings, meta = _initial_state(run)
    chunk = make_train_chunk(run.components, run.plan["steps_per_chunk"], shardings)
    evaluate_seeds = make_seed_evaluator(run.components, run.cfg)
    run.eval_returns = _eval_history(run)
    start_chunk = scalar(ts.env_steps) // run.plan["chunk_env_steps"]
    run.logger = _open_logger(run, scalar(ts.env_steps), meta.get("wandb_id"))
    clock = _Clock(wall_before=float(meta.get("wall_time_s", 0.0)), started=time.perf_counter())
    stopped_early = False
    try:
        with _StopFlag() as stop:
            for chunk_index in range(start_chunk, run.plan["total_chunks"]):
                ts, stopped_early = _train_chunk(run, clock, chunk, evaluate_seeds, chunk_index, ts, stop, stop_after)
                if stopped_early:
                    break
    except BaseException:
        _close_logs(run, failing=True)
        raise
    _close_logs(run)
    return _finish(run, ts, clock, stopped_early)


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
    process 0 alone writes the run directory. A full disk ends the run with
    one DiskFull error that says how to continue; what was written stays.
    """
    run = _open_run(cfg, resume_dir)
    try:
        return _train_run(run, stop_after)
    except DiskFull as err:
        raise DiskFull(f"{err}; {_after_disk_full(run)}") from None
