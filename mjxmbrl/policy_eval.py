"""`mjxmbrl eval RUN_DIR`: evaluate a run's exported policy (or its latest checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from mjxmbrl.checkpoint import load_policy
from mjxmbrl.envs import init_stats, make_vector_env
from mjxmbrl.evaluate import make_evaluator
from mjxmbrl.learners import make_learner
from mjxmbrl.runner import RunError, load_run_config, restore_run


def _policy_from_checkpoint(run_dir: Path):
    _, components, ts = restore_run(run_dir)
    return components.learner.policy_params(ts.learner), ts.obs_stats, int(ts.env_steps)


def evaluate_run(run_dir: Path, episodes: int = 10, seed: int = 0) -> dict:
    """Runs `episodes` deterministic episodes of the run's policy; writes eval.json."""
    if episodes <= 0:
        raise RunError(f"--episodes must be positive, got {episodes}")
    cfg = load_run_config(run_dir)
    probe = make_vector_env(cfg.env.name, num_envs=1, impl=cfg.env.impl, episode_length=cfg.env.episode_length)
    learner = make_learner(cfg.agent, probe.observation_size, probe.action_size, cfg.train.total_env_steps)
    policy_dir = run_dir / "policy"
    if policy_dir.exists():
        params, extra, meta = load_policy(policy_dir, like_extra={"obs_stats": init_stats(probe.observation_size)})
        obs_stats = extra["obs_stats"]
        env_steps, source = int(meta.get("env_steps", -1)), "policy export"
    else:
        params, obs_stats, env_steps = _policy_from_checkpoint(run_dir)
        source = "latest checkpoint"
    evaluate = make_evaluator(cfg.env, learner, episodes)
    result = evaluate(jax.random.PRNGKey(seed), params, obs_stats)
    returns = np.asarray(result.returns)
    summary = {
        "run_dir": str(run_dir),
        "source": source,
        "env_steps": env_steps,
        "episodes": episodes,
        "seed": seed,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "returns": [float(r) for r in returns],
    }
    (run_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
