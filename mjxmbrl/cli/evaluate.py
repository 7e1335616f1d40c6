"""`mjxmbrl eval RUN_DIR [planner.KEY=VALUE ...]`: evaluate a run's exported policy, or its agent (planner
included) from the newest checkpoint, optionally with another planner than it trained with."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional, Sequence, Tuple

import jax
import numpy as np

from mjxmbrl.agents import EVAL, POLICY, build_agent
from mjxmbrl.config import parse_override, seed_values
from mjxmbrl.envs import init_stats
from mjxmbrl.replay import make_replay
from mjxmbrl.rollout import (
    agent_actor,
    make_episode_runner,
    make_eval_env,
    policy_actor,
)
from mjxmbrl.run.checkpoints import load_seed_policy
from mjxmbrl.run.devices import is_stacked, scalar, seed_slice
from mjxmbrl.run.loop import RunError, load_run_config, restore_run


# What an evaluation may change: the planner holds no trained parameters, so a checkpoint acts with any planner
# settings (more candidates, iterations or another horizon than in training); every other section shapes the
# trained state or the task.
EVAL_OVERRIDE_SECTIONS = ("planner",)


def eval_config(run_dir: Path, overrides: Sequence[str] = ()) -> Tuple[object, str]:
    """(the run's config with `overrides` applied, the tag that names this evaluation's files).

    The tag is "" without overrides (eval.json, videos/eval-<env_steps>.mp4) and "-planner-<key=value_...>"
    with them, so an evaluation with another planner never replaces the run's own.
    """
    if not overrides:
        return load_run_config(run_dir), ""
    for text in overrides:
        section, key, _ = parse_override(text)
        if section not in EVAL_OVERRIDE_SECTIONS:
            raise RunError(
                f"eval override '{text}': only planner.* may change at evaluation (the planner holds no trained "
                f"parameters; {section}.{key} shapes what the run trained or the task)"
            )
    return load_run_config(run_dir, overrides), "-planner-" + re.sub(r"[^A-Za-z0-9.=_-]+", "", "_".join(o.split(".", 1)[1] for o in overrides))


def _what_to_evaluate(run_dir: Path, cfg, agent, obs_size: int):
    """(actor, params, env_steps, source): the exported policy of an agent that acts with its policy alone,
    else the agent itself (planner included) from the newest checkpoint; params stacked over seeds if the run is."""
    policy_dir = run_dir / "policy"
    if policy_dir.exists() and agent.eval_modes == (EVAL,) and agent.policy is not None:
        params, extra, meta = load_seed_policy(policy_dir, like_extra={"obs_stats": init_stats(obs_size)})
        actor = policy_actor(agent.policy, cfg.env.normalize_obs)
        return actor, (params, extra["obs_stats"]), int(meta.get("env_steps", -1)), "policy export"
    _, _, ts = restore_run(run_dir)
    return agent_actor(agent, EVAL), (ts.agent, ts.env_steps), scalar(ts.env_steps), "latest checkpoint"


def evaluate_run(
    run_dir: Path,
    episodes: int = 10,
    seed: int = 0,
    video: bool = False,
    video_episodes: int = 1,
    width: int = 320,
    height: int = 240,
    seed_index: Optional[int] = None,
    overrides: Sequence[str] = (),
) -> dict:
    """Runs `episodes` deterministic episodes of the run's policy; writes eval.json.

    A multi-seed run (train.num_seeds > 1) has one policy per seed: every seed
    is evaluated on the same episodes (the same eval `seed`), or only the one at
    `seed_index`. `return_mean`/`return_std`/`returns` pool the evaluated seeds'
    episodes; `per_seed` has each seed's own.

    With `video`, also writes RUN_DIR/videos/eval-<env_steps>.mp4 of the first
    `video_episodes` of those episodes (see mjxmbrl/video.py).

    `overrides` (planner.KEY=VALUE) evaluate a planning agent's checkpoint with another planner, e.g. the
    paper's candidates where training used fewer; eval-planner-<overrides>.json (and video) then hold the result.
    """
    if episodes <= 0:
        raise RunError(f"--episodes must be positive, got {episodes}")
    cfg, tag = eval_config(run_dir, overrides)
    seeds, stacked = seed_values(cfg.train), is_stacked(cfg)
    if seed_index is not None and not 0 <= seed_index < len(seeds):
        raise RunError(f"--seed-index {seed_index} is out of range: {run_dir} trained {len(seeds)} seed(s), indices 0..{len(seeds) - 1}")
    indices = [seed_index] if seed_index is not None else list(range(len(seeds)))
    if video:
        from mjxmbrl.cli.video import check_renderable

        check_renderable(cfg.env.name)  # before anything is computed or written
        if not 0 < video_episodes <= episodes or width <= 0 or height <= 0:
            raise RunError(
                f"--video-episodes must be in [1, --episodes={episodes}] and --width, --height positive; "
                f"got {video_episodes}, {width}, {height}"
            )
    env = make_eval_env(cfg.env, episodes)
    agent = build_agent(cfg, make_replay(2 * cfg.env.num_envs, cfg.env.num_envs, env.observation_size, env.action_size))
    actor, params, env_steps, source = _what_to_evaluate(run_dir, cfg, agent, env.observation_size)
    if tag and source == "policy export":
        raise RunError(f"{run_dir} acts with its policy alone ({cfg.agent.name}): planner overrides would change nothing")
    if video:  # the same episodes, in a rollout that also keeps the first call's simulator states to film
        from mjxmbrl.cli.video import EvalVideo

        recorder = EvalVideo(run_dir, cfg, actor, episodes, video_episodes, width, height, base_env=env.env)
        evaluate = recorder.evaluate
    else:
        evaluate = make_episode_runner(env, *actor)
    policy_only = make_episode_runner(env, *agent_actor(agent, POLICY)) if POLICY in agent.eval_modes else None
    per_seed = []
    for i in indices:  # the video (below) shows the first evaluated seed
        seed_params = seed_slice(params, i) if stacked else params
        seed_returns = np.asarray(evaluate(jax.random.PRNGKey(seed), seed_params).returns)
        row = {"seed_index": i, "seed": seeds[i], "return_mean": float(seed_returns.mean()),
               "return_std": float(seed_returns.std()), "returns": [float(r) for r in seed_returns]}
        if policy_only is not None:  # an agent that plans: its amortized policy alone too (Byravan et al. Fig. 2)
            row["policy_return_mean"] = float(np.asarray(policy_only(jax.random.PRNGKey(seed), seed_params).returns).mean())
        per_seed.append(row)
    returns = np.asarray([r for p in per_seed for r in p["returns"]])
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
        **({"overrides": list(overrides)} if overrides else {}),
        "per_seed": per_seed,
    }
    if policy_only is not None:
        summary["policy_return_mean"] = float(np.mean([p["policy_return_mean"] for p in per_seed]))
    if video:
        summary.update(recorder.write(env_steps, tag))
    (run_dir / f"eval{tag}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
