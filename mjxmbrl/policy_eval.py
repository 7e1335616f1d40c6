"""`mjxmbrl eval RUN_DIR`: evaluate a run's exported policy (or its latest checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import jax
import numpy as np

from mjxmbrl.checkpoint import load_seed_policy
from mjxmbrl.envs import init_stats, make_vector_env
from mjxmbrl.evaluate import make_evaluator
from mjxmbrl.learners import make_learner
from mjxmbrl.parallel import is_stacked, scalar, seed_slice, seed_values
from mjxmbrl.runner import RunError, load_run_config, restore_run


def _policy_from_checkpoint(run_dir: Path):
    _, components, ts = restore_run(run_dir)
    return components.learner.policy_params(ts.learner), ts.obs_stats, scalar(ts.env_steps)


def evaluate_run(
    run_dir: Path,
    episodes: int = 10,
    seed: int = 0,
    video: bool = False,
    video_episodes: int = 1,
    width: int = 320,
    height: int = 240,
    seed_index: Optional[int] = None,
) -> dict:
    """Runs `episodes` deterministic episodes of the run's policy; writes eval.json.

    A multi-seed run (train.num_seeds > 1) has one policy per seed: every seed
    is evaluated on the same episodes (the same eval `seed`), or only the one at
    `seed_index`. `return_mean`/`return_std`/`returns` pool the evaluated seeds'
    episodes; `per_seed` has each seed's own.

    With `video`, also writes RUN_DIR/videos/eval-<env_steps>.mp4 of the first
    `video_episodes` of those episodes (see mjxmbrl/video.py).
    """
    if episodes <= 0:
        raise RunError(f"--episodes must be positive, got {episodes}")
    cfg = load_run_config(run_dir)
    seeds, stacked = seed_values(cfg.train), is_stacked(cfg)
    if seed_index is not None and not 0 <= seed_index < len(seeds):
        raise RunError(f"--seed-index {seed_index} is out of range: {run_dir} trained {len(seeds)} seed(s), indices 0..{len(seeds) - 1}")
    indices = [seed_index] if seed_index is not None else list(range(len(seeds)))
    if video:
        from mjxmbrl.video import check_renderable

        check_renderable(cfg.env.name)  # before anything is computed or written
        if not 0 < video_episodes <= episodes or width <= 0 or height <= 0:
            raise RunError(
                f"--video-episodes must be in [1, --episodes={episodes}] and --width, --height positive; "
                f"got {video_episodes}, {width}, {height}"
            )
    probe = make_vector_env(cfg.env.name, num_envs=1, impl=cfg.env.impl, episode_length=cfg.env.episode_length)
    learner = make_learner(cfg.agent, probe.observation_size, probe.action_size, cfg.train.total_env_steps)
    policy_dir = run_dir / "policy"
    if policy_dir.exists():
        params, extra, meta = load_seed_policy(policy_dir, like_extra={"obs_stats": init_stats(probe.observation_size)})
        obs_stats = extra["obs_stats"]
        env_steps, source = int(meta.get("env_steps", -1)), "policy export"
    else:
        params, obs_stats, env_steps = _policy_from_checkpoint(run_dir)
        source = "latest checkpoint"
    if video:  # the same episodes, in a rollout that also keeps the first call's simulator states to film
        from mjxmbrl.video import EvalVideo

        recorder = EvalVideo(run_dir, cfg, learner, episodes, video_episodes, width, height, base_env=probe.env)
        evaluate = recorder.evaluate
    else:
        evaluate = make_evaluator(cfg.env, learner, episodes)
    per_seed = []
    for i in indices:
        seed_params, seed_stats = (seed_slice(params, i), seed_slice(obs_stats, i)) if stacked else (params, obs_stats)
        seed_returns = np.asarray(evaluate(jax.random.PRNGKey(seed), seed_params, seed_stats).returns)
        per_seed.append({"seed_index": i, "seed": seeds[i], "return_mean": float(seed_returns.mean()),
                         "return_std": float(seed_returns.std()), "returns": [float(r) for r in seed_returns]})
    returns = np.asarray([r for p in per_seed for r in p["returns"]])
    if stacked:  # the video (below) shows the first evaluated seed's policy
        params, obs_stats = seed_slice(params, indices[0]), seed_slice(obs_stats, indices[0])
    summary = {
        "run_dir": str(run_dir),
        "source": source,
        "env_steps": env_steps,
        "episodes": episodes,
        "seed": seed,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "returns": [float(r) for r in returns],
        "train_seeds": [seeds[i] for i in indices],
        "per_seed": per_seed,
    }
    if video:
        summary.update(recorder.write(env_steps))
    (run_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
