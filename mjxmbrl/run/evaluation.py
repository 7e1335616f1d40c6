"""Evaluation during training: every seed's agent in each of its evaluation modes, between chunks.

An agent with a planner is evaluated twice on the same episodes: the actor
with its planner (`eval/return`) and its amortized policy alone
(`eval/policy_return`), Byravan et al. 2022 Fig. 2's solid and dotted lines;
an agent without one has `eval/return` only, and an MPC-only agent is the
planner. The episodes come from the one episode runner (mjxmbrl/rollout.py)
with keys of their own (`eval_key`), so evaluating never changes training.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import jax
import numpy as np

from mjxmbrl.agents import EVAL_METRIC_PREFIX
from mjxmbrl.config import seed_values
from mjxmbrl.rollout import agent_actor, make_episode_runner, make_eval_env
from mjxmbrl.run.devices import is_stacked


def eval_key(seed: int, chunk_index: int) -> jax.Array:
    """Evaluation keys never touch the training key stream, so eval cannot change training."""
    return jax.random.fold_in(jax.random.PRNGKey(seed ^ 0x5EED), chunk_index)


def make_seed_evaluator(components, cfg) -> Callable:
    """(chunk_index, ts) -> {metric prefix: (returns [S, M], lengths [S, M])}, one entry per evaluation mode.

    S seeds (vmapped when the run stacks them), M = train.eval_episodes episodes each.
    """
    seeds = seed_values(cfg.train)
    stacked = is_stacked(cfg)
    env = make_eval_env(cfg.env, cfg.train.eval_episodes)
    agent = components.agent
    runners = {}
    for mode in agent.eval_modes:
        run = make_episode_runner(env, *agent_actor(agent, mode))
        runners[EVAL_METRIC_PREFIX[mode]] = jax.jit(jax.vmap(run)) if stacked else run

    def evaluate(chunk_index: int, ts) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        keys = [np.asarray(eval_key(s, chunk_index)) for s in seeds]
        key = np.stack(keys) if stacked else keys[0]
        out = {}
        for prefix, run in runners.items():
            result = run(key, (ts.agent, ts.env_steps))
            returns, lengths = np.asarray(result.returns), np.asarray(result.lengths)
            out[prefix] = returns.reshape(len(seeds), -1), lengths.reshape(len(seeds), -1)
        return out

    return evaluate


def add_eval(rows: list, results: Dict[str, Tuple[np.ndarray, np.ndarray]], eval_returns: dict) -> None:
    """Adds <prefix>return (mean over episodes), its std and the episode length of each mode to each seed's row;
    `eval_returns[seed]` collects eval/return (the actor's) for the run's summary."""
    for prefix, (returns, lengths) in results.items():
        for i, row in enumerate(rows):
            row[f"{prefix}return"] = float(returns[i].mean())
            row[f"{prefix}return_std"] = float(returns[i].std())
            row[f"{prefix}episode_length"] = float(lengths[i].mean())
    for row in rows:
        eval_returns[row["seed"]].append(row["eval/return"])
