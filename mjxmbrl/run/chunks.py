"""The host side of a jitted chunk: its sizes, and the reduction of its stacked metrics to one log row."""

from __future__ import annotations

import math

import numpy as np

from mjxmbrl.config import Config
from mjxmbrl.types import Metrics


def summarize_chunk(metrics: Metrics) -> dict:
    """Host-side reduction of one chunk's stacked metrics to one log row."""
    m = {k: np.asarray(v) for k, v in metrics.items()}
    row = {"train/reward": float(m["train/reward"].mean())}
    episodes = float(m["train/episodes"].sum())
    if episodes > 0:
        row["train/episode_return"] = float(m["train/episode_return_sum"].sum() / episodes)
    learning = m["train/learning"]
    model_learning = m["train/model_learning"]
    for key, values in m.items():
        if key.startswith("learner/") and learning.sum() > 0:
            row[key] = float((values * learning).sum() / learning.sum())
        if key.startswith("model/") and model_learning.sum() > 0:
            row[key] = float((values * model_learning).sum() / model_learning.sum())
    # Planner metrics average over the steps that planned (`train/planning`, where an agent skips unneeded plans).
    planning = m.get("train/planning")
    for key, values in m.items():
        if key.startswith("planner/") and planning is not None:
            if planning.sum() > 0:
                row[key] = float((values * planning).sum() / planning.sum())
        elif key.startswith("planner/") or key == "train/planned_fraction":
            row[key] = float(values.mean())
    # The env's own metrics (train.log_env_metrics): their value at the chunk's last step, the row's env_steps.
    for key, values in m.items():
        if key.startswith("env/"):
            row[key] = float(values[-1])
    if m["train/invalid_transitions"].sum() > 0:
        row["train/invalid_transitions"] = float(m["train/invalid_transitions"].sum())
    row["train/params_finite"] = bool(m["train/params_finite"].all())
    return row


def chunk_plan(cfg: Config) -> dict:
    """Sizes of the host loop, all in whole chunks so resume points line up."""
    per_step = cfg.env.num_envs * cfg.env.action_repeat
    steps_per_chunk = max(1, math.ceil(cfg.train.log_every / per_step))
    chunk_env_steps = steps_per_chunk * per_step
    total_chunks = max(1, math.ceil(cfg.train.total_env_steps / chunk_env_steps))
    return {
        "steps_per_chunk": steps_per_chunk,
        "chunk_env_steps": chunk_env_steps,
        "total_chunks": total_chunks,
        "eval_every_chunks": max(1, math.ceil(cfg.train.eval_every / chunk_env_steps)),
        "checkpoint_every_chunks": max(1, math.ceil(cfg.train.checkpoint_every / chunk_env_steps)),
    }

