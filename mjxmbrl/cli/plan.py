"""`mjxmbrl plan CONFIG`: MPC only (no learning) for M episodes in parallel.

The planner plans with the oracle (the true simulator) or with the learned
model of a training run (`planner.source_run`, whose latest checkpoint also
supplies the policy for learned proposals and the learner for terminal
values). Without a source run the config's agent is the MPC agent
(agents/mpc.py): `mjxmbrl train` on the same config evaluates the same agent
on the same episodes (the first evaluation uses this command's key). The
episodes are played by the one episode runner (mjxmbrl/rollout.py). Writes to
`<log.runs_dir>/<name>/`: config.yaml, plan.json (returns per episode, mean and
std, plan time per agent step, the env's metrics at each episode's last step,
e.g. AntGTTP's targets achieved) and plan.png (reward against time).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mjxmbrl.agents import EVAL, build_agent, build_parts
from mjxmbrl.agents.mpc import MPCAgentConfig, check_mpc
from mjxmbrl.config import Config, save_config
from mjxmbrl.replay import make_replay
from mjxmbrl.rollout import agent_actor, make_episode_runner, make_eval_env
from mjxmbrl.run.evaluation import eval_key
from mjxmbrl.run.loop import restore_run
from mjxmbrl.types import MjxmbrlError


def _from_source_run(cfg: Config):
    """(config, agent state) of the source run's agent with this config's planner (and oracle, if chosen)."""
    source = cfg.planner.source_run
    run_cfg, _, ts = restore_run(Path(source), seed_index=0)  # a multi-seed run: its first seed
    if run_cfg.env.name != cfg.env.name or run_cfg.env.action_repeat != cfg.env.action_repeat:
        raise MjxmbrlError(
            f"planner.source_run {source} was trained on {run_cfg.env.name} (action repeat {run_cfg.env.action_repeat}), "
            f"not {cfg.env.name} (action repeat {cfg.env.action_repeat})"
        )
    if cfg.model.name != "oracle" and run_cfg.model.name != cfg.model.name:
        raise MjxmbrlError(
            f"model '{cfg.model.name}' must come from a training run that learned it: set planner.source_run "
            f"to a run trained with model.name={cfg.model.name} (or plan with model.name=oracle)"
        )
    if run_cfg.agent.name == "mpc":
        raise MjxmbrlError(f"planner.source_run {source} trained an MPC agent: it has no policy or value to plan with")
    model = cfg.model if cfg.model.name == "oracle" else run_cfg.model
    return dataclasses.replace(run_cfg, env=cfg.env, model=model, planner=cfg.planner), ts.agent, ts.env_steps


def build_planning(cfg: Config, num_envs: int):
    """(env, agent, params) for closed-loop MPC with cfg.planner over cfg.model: `params` are the agent
    runner's (agent state, env steps); without a source run the agent is MPC and its state is fresh."""
    env = make_eval_env(cfg.env, num_envs)
    if cfg.planner.source_run is not None:
        plan_cfg, state, env_steps = _from_source_run(cfg)
    else:
        if cfg.model.name != "oracle":
            raise MjxmbrlError(
                f"model '{cfg.model.name}' must come from a training run that learned it: set planner.source_run "
                f"to a run trained with model.name={cfg.model.name} (or plan with model.name=oracle)"
            )
        if cfg.planner.proposal != "gaussian" or cfg.planner.value != "none":
            what = f"planner.proposal={cfg.planner.proposal}" if cfg.planner.proposal != "gaussian" else f"planner.value={cfg.planner.value}"
            raise MjxmbrlError(f"{what} needs a trained policy: set planner.source_run to a run directory")
        plan_cfg, env_steps = dataclasses.replace(cfg, agent=MPCAgentConfig()), jnp.zeros((), jnp.int32)
        check_mpc(plan_cfg)
        state = None
    sampler = make_replay(2 * plan_cfg.env.num_envs, plan_cfg.env.num_envs, env.observation_size, env.action_size)
    agent = build_agent(plan_cfg, sampler, build_parts(plan_cfg, sampler))
    if state is None:
        state = agent.init(jax.random.PRNGKey(cfg.train.seed))
    return env, agent, (state, env_steps)


def run_plan(cfg: Config, episodes: int, out_dir: Optional[Path] = None) -> Tuple[Path, dict]:
    if episodes <= 0:
        raise MjxmbrlError(f"--episodes must be positive, got {episodes}")
    if cfg.planner.name == "none":
        raise MjxmbrlError("mjxmbrl plan needs a planner: set planner.name (smc, cem, mppi or grad)")
    name = cfg.log.run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-plan-{cfg.env.name}-{cfg.planner.name}-{cfg.model.name}"
    out_dir = out_dir or Path(cfg.log.runs_dir) / name
    if out_dir.exists():
        raise MjxmbrlError(f"output directory {out_dir} already exists; choose another log.run_name")
    env, agent, params = build_planning(cfg, episodes)
    run = make_episode_runner(env, *agent_actor(agent, EVAL), record=lambda state: state.metrics)
    out_dir.mkdir(parents=True)
    save_config(cfg, out_dir / "config.yaml")
    tic = time.perf_counter()
    result = jax.block_until_ready(run(eval_key(cfg.train.seed, 0), params))
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
        "env_metrics_at_end": _at_last_step(result, cfg.env.action_repeat),
        "device": str(jax.devices()[0]),
    }
    (out_dir / "plan.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(np.asarray(result.rewards), out_dir / "plan.png", f"{cfg.env.name}: {cfg.planner.name} with {cfg.model.name}")
    return out_dir, summary


def _at_last_step(result, action_repeat: int) -> dict:
    """{env metric: [its value at each episode's last agent step]} from the runner's trace [T, M]."""
    last = np.clip(np.ceil(np.asarray(result.lengths) / action_repeat).astype(int) - 1, 0, None)  # [M]
    return {k: [float(x) for x in np.take_along_axis(np.asarray(v), last[None], axis=0)[0]]
            for k, v in result.trace.items() if np.ndim(v) == 2}


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
