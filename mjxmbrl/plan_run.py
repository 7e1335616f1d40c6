"""`mjxmbrl plan CONFIG`: MPC only (no learning) for M episodes in parallel.

The planner plans with the oracle (the true simulator) or with the learned
model of a training run (`planner.source_run`, whose latest checkpoint also
supplies the policy for learned proposals and the learner for terminal
values). Writes to `<log.runs_dir>/<name>/`: config.yaml, plan.json (returns
per episode, mean and std, plan time per agent step) and plan.png (reward
against time for every episode).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional, Tuple

import jax
import numpy as np

from mjxmbrl.config import Config, save_config
from mjxmbrl.envs import make_vector_env
from mjxmbrl.models import make_model
from mjxmbrl.mpc import make_mpc_episodes
from mjxmbrl.planners import PlanParams, make_planner
from mjxmbrl.runner import restore_run
from mjxmbrl.types import MjxmbrlError


def build_planning(cfg: Config, num_envs: int):
    """(env, planner, plan_params) for closed-loop MPC with cfg.planner over cfg.model."""
    env = make_vector_env(
        cfg.env.name, num_envs, impl=cfg.env.impl, episode_length=cfg.env.episode_length,
        action_repeat=cfg.env.action_repeat, auto_reset=False,
    )
    learner = learner_state = obs_stats = None
    model_params: Any = {}
    source = cfg.planner.source_run
    if source is not None:
        run_cfg, components, ts = restore_run(Path(source), seed_index=0)  # a multi-seed run: its first seed
        if run_cfg.env.name != cfg.env.name or run_cfg.env.action_repeat != cfg.env.action_repeat:
            raise MjxmbrlError(
                f"planner.source_run {source} was trained on {run_cfg.env.name} (action repeat {run_cfg.env.action_repeat}), "
                f"not {cfg.env.name} (action repeat {cfg.env.action_repeat})"
            )
        learner, learner_state, obs_stats = components.learner, ts.learner, ts.obs_stats
    if cfg.model.name == "oracle":
        model = make_model(cfg.model, cfg.env, env.observation_size, env.action_size)
    else:
        if source is None or run_cfg.model.name != cfg.model.name:
            raise MjxmbrlError(
                f"model '{cfg.model.name}' must come from a training run that learned it: set planner.source_run "
                f"to a run trained with model.name={cfg.model.name}"
            )
        model, model_params = components.model, ts.model.params
        if env.observation_size != jax.tree.leaves(model_params["stats"])[0].shape[-1]:
            raise MjxmbrlError("the learned model's observation size does not match the task")
    planner, _, _ = make_planner(cfg.planner, model, cfg.env, env.observation_size, env.action_size, learner)
    pp = PlanParams(
        model=model_params,
        policy=None if learner is None else learner.policy_params(learner_state),
        value=None if learner is None else (learner_state, obs_stats),
        obs_stats=obs_stats,
    )
    return env, planner, pp


def run_plan(cfg: Config, episodes: int, out_dir: Optional[Path] = None) -> Tuple[Path, dict]:
    if episodes <= 0:
        raise MjxmbrlError(f"--episodes must be positive, got {episodes}")
    if cfg.planner.name == "none":
        raise MjxmbrlError("mjxmbrl plan needs a planner: set planner.name (smc, cem, mppi or grad)")
    name = cfg.log.run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-plan-{cfg.env.name}-{cfg.planner.name}-{cfg.model.name}"
    out_dir = out_dir or Path(cfg.log.runs_dir) / name
    if out_dir.exists():
        raise MjxmbrlError(f"output directory {out_dir} already exists; choose another log.run_name")
    env, planner, pp = build_planning(cfg, episodes)
    run = make_mpc_episodes(env, planner)
    out_dir.mkdir(parents=True)
    save_config(cfg, out_dir / "config.yaml")
    tic = time.perf_counter()
    result = jax.block_until_ready(run(jax.random.PRNGKey(cfg.train.seed), pp))
    wall = time.perf_counter() - tic
    returns = np.asarray(result.returns)
    steps = int(np.asarray(result.rewards).shape[0])
    summary = {
        "env": cfg.env.name,
        "action_repeat": cfg.env.action_repeat,
        "planner": cfg.planner.name,
        "model": cfg.model.name,
        "horizon": cfg.planner.horizon,
        "episodes": episodes,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "returns": [float(r) for r in returns],
        "wall_time_s": wall,
        "plan_time_per_step_s": wall / steps,
        "planner_metrics": {k: float(np.asarray(v).mean()) for k, v in result.metrics.items()},
        "device": str(jax.devices()[0]),
    }
    (out_dir / "plan.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(np.asarray(result.rewards), out_dir / "plan.png", f"{cfg.env.name}: {cfg.planner.name} with {cfg.model.name}")
    return out_dir, summary


def _plot(rewards: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.cumsum(rewards, axis=0), alpha=0.7)
    ax.set_xlabel("agent step")
    ax.set_ylabel("cumulative reward")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
