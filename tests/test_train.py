"""End-to-end: SAC learns the toy task without recompiling; exact resume on CPU."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from mjxmbrl.config import load_config
from mjxmbrl.rollout import make_episode_runner, make_eval_env, policy_actor
from mjxmbrl.run.checkpoints import Checkpointer
from mjxmbrl.run.chunks import summarize_chunk
from mjxmbrl.run.evaluation import eval_key
from mjxmbrl.run.loop import train
from mjxmbrl.train import TRACE_COUNTS, build, init_state, make_train_chunk

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["log.wandb=disabled", "log.progress=false"]


def random_policy_return(cfg) -> float:
    """Mean eval return of uniform random actions: the bar learning must clear."""
    def random_policy(params, obs, key, deterministic):
        return jax.random.uniform(key, obs.shape[:-1] + (2,), minval=-1, maxval=1)

    run = make_episode_runner(make_eval_env(cfg.env, 32), *policy_actor(random_policy, False))
    return float(np.mean(run(eval_key(0, 0), (None, None)).returns))


def test_sac_learns_toy_reach_without_recompiling(tmp_path):
    cfg = load_config(ROOT / "configs/debug.yaml", QUIET + [f"log.runs_dir={tmp_path}", "log.run_name=learn"])
    TRACE_COUNTS.clear()
    run = train(cfg)
    summary = json.loads((run / "summary.json").read_text())
    baseline = random_policy_return(cfg)
    # One trace for the whole run: every chunk has the same shapes.
    assert TRACE_COUNTS["train_chunk"] == 1
    assert summary["final_eval_return"] >= baseline + 15.0, (summary, baseline)
    assert summary["final_eval_return"] >= 30.0, summary


def _leaves(state):
    return jax.tree_util.tree_flatten_with_path(state)[0]


SMALL_MODEL = ["model.name=mlp", "model.hidden_sizes=[16]", "model.batch_size=16", "model.seq_len=4"]


@pytest.mark.parametrize("normalize_obs,model", [(False, []), (True, SMALL_MODEL)], ids=["plain", "normalized+model"])
def test_resume_is_bit_exact(tmp_path, normalize_obs, model):
    overrides = QUIET + model + [
        f"log.runs_dir={tmp_path}",
        "train.total_env_steps=3200",
        "train.warmup_env_steps=400",
        "train.log_every=400",
        "train.eval_every=800",
        "train.checkpoint_every=800",
        "train.eval_episodes=2",
        f"env.normalize_obs={str(normalize_obs).lower()}",
    ]
    straight = train(load_config(ROOT / "configs/debug.yaml", overrides + ["log.run_name=straight"]))
    split_cfg = load_config(ROOT / "configs/debug.yaml", overrides + ["log.run_name=split"])
    split = train(split_cfg, stop_after=1600)
    assert json.loads((split / "summary.json").read_text())["env_steps"] == 1600
    train(resume_dir=split)

    components = build(split_cfg)
    like = init_state(components)
    a, meta_a = Checkpointer(straight / "checkpoints", 3).restore(like)
    b, meta_b = Checkpointer(split / "checkpoints", 3).restore(like)
    assert meta_a["env_steps"] == meta_b["env_steps"] == 3200
    for (path, x), (_, y) in zip(_leaves(a), _leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))
    # The comparison is not vacuous: replay holds data and params moved from init.
    assert int(a.replay.size) > 0
    init_leaf = jax.tree.leaves(like.agent.learner)[0]
    assert not np.array_equal(np.asarray(jax.tree.leaves(a.agent.learner)[0]), np.asarray(init_leaf))
    if model:  # the world model trained in the same jitted step and resumed with it
        assert float(a.agent.model.params["stats"].obs.count) > 0
        assert not np.array_equal(np.asarray(jax.tree.leaves(a.agent.model.params["net"])[0]), np.asarray(jax.tree.leaves(like.agent.model.params["net"])[0]))
    rows_a = [json.loads(l) for l in (straight / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(l) for l in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in rows_a] == [r["env_steps"] for r in rows_b]
    assert [r.get("eval/return") for r in rows_a] == [r.get("eval/return") for r in rows_b]


def test_chunk_is_traced_once_per_shape(tmp_path):
    # batch 8 <= one step of the 8 envs, so every step learns.
    cfg = load_config(ROOT / "configs/debug.yaml", QUIET + ["train.warmup_env_steps=0", "agent.batch_size=8"])
    components = build(cfg)
    chunk = make_train_chunk(components, 4)
    ts = init_state(components)
    TRACE_COUNTS.clear()
    for _ in range(3):
        ts, metrics = chunk(ts)
    assert TRACE_COUNTS["train_chunk"] == 1
    assert int(ts.env_steps) == 3 * 4 * cfg.env.num_envs
    assert int(ts.updates) == 3 * 4 * cfg.train.updates_per_step


def test_non_finite_model_loss_is_reported_under_model(tmp_path):
    """A NaN in the world model shows up as a non-finite model/ metric, which stops the run."""
    from mjxmbrl.run.loop import _non_finite

    cfg = load_config(ROOT / "configs/debug.yaml", QUIET + SMALL_MODEL + ["train.warmup_env_steps=0", "agent.batch_size=8"])
    components = build(cfg)
    ts = init_state(components)
    net = jax.tree.map(lambda x: x * np.nan, ts.agent.model.params["net"])
    ts = ts.replace(agent=ts.agent.replace(model=ts.agent.model.replace(params={**ts.agent.model.params, "net": net})))
    ts, metrics = make_train_chunk(components, 6)(ts)
    row = summarize_chunk(metrics)
    assert not np.isfinite(row["model/loss"])
    assert row["train/params_finite"] is False
    assert "model/loss" in _non_finite(row)
    assert np.isfinite(row["learner/critic_loss"])  # the agent itself is fine


def test_planner_acts_in_training_with_p_plan_mixing(tmp_path):
    """Byravan et al. Alg. 1: each env takes the planner's action with probability p_plan; the replay records which."""
    cfg = load_config(
        ROOT / "configs/debug.yaml",
        QUIET + SMALL_MODEL + [
            "train.warmup_env_steps=16", "agent.batch_size=8", "planner.name=cem", "planner.num_samples=8",
            "planner.iterations=2", "planner.horizon=3", "planner.proposal=policy", "planner.p_plan=0.5",
            "env.num_envs=16",
        ],
    )
    components = build(cfg)
    ts = init_state(components)
    ts, metrics = make_train_chunk(components, 10)(ts)
    row = summarize_chunk(metrics)
    planned = np.asarray(ts.replay.data.extras["planned"][: int(ts.replay.size)])
    assert planned[0].sum() == 0  # warmup steps are random, never planned
    after = planned[1:].mean()
    assert 0.3 < after < 0.7, after  # 9 steps x 16 envs at p_plan = 0.5
    assert "planner/return_max" in row and np.isfinite(row["planner/return_max"])
    assert row["train/planned_fraction"] == pytest.approx(planned.mean(), abs=1e-6)
