"""train.num_seeds: S seeds vmapped in one program equal the same seeds trained alone; multi-seed runs
(metrics rows per seed, summary over seeds, stacked policy export, eval per seed, exact resume, NaN naming the seed)."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from mjxmbrl.cli.evaluate import evaluate_run
from mjxmbrl.config import ConfigError, load_config
from mjxmbrl.envs import init_stats
from mjxmbrl.run.checkpoints import Checkpointer, load_seed_policy
from mjxmbrl.run.chunks import summarize_chunk
from mjxmbrl.run.devices import seed_slice
from mjxmbrl.run.logging import t_interval_half_width
from mjxmbrl.run.loop import TrainingDiverged, _check_finite, train
from mjxmbrl.train import (
    TRACE_COUNTS,
    build,
    init_run_state,
    init_state,
    make_train_chunk,
)

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["log.wandb=disabled", "log.progress=false"]
TINY = QUIET + ["agent.hidden_sizes=[16]", "agent.batch_size=16", "env.num_envs=4", "train.updates_per_step=1"]


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def test_seeds_vmapped_together_match_seeds_trained_alone():
    """Seeds 5, 6, 7 in one jit(vmap(scan)) program against each seed's own one-seed program.

    Same random streams, so only XLA's batched kernels can differ: every learner
    leaf (params, target params, optimiser states, alpha) after 24 steps (17
    with updates) agrees to rtol 1e-5 / atol 1e-6; measured on a 2-core CPU the
    largest difference was 6e-8 (printed).
    """
    overrides = TINY + ["train.seed=5", "train.warmup_env_steps=32"]
    together_cfg = load_config(ROOT / "configs/debug.yaml", overrides + ["train.num_seeds=3"])
    alone_cfg = load_config(ROOT / "configs/debug.yaml", overrides)
    together = build(together_cfg)
    alone = build(alone_cfg)
    TRACE_COUNTS.clear()
    chunk_together = make_train_chunk(together, 12)
    ts = init_run_state(together)
    assert ts.env_steps.shape == (3,) and ts.replay.data.obs.shape[0] == 3 and ts.replay.data.obs.shape[2] == 4
    for _ in range(2):
        ts, metrics = chunk_together(ts)
    assert TRACE_COUNTS["train_chunk"] == 1  # one trace for all seeds
    assert metrics["train/learning"].shape == (3, 12) and float(np.asarray(metrics["train/learning"]).sum()) == 3 * 12  # second chunk: all steps learn

    chunk_alone = make_train_chunk(alone, 12)
    worst = 0.0
    for i, seed in enumerate((5, 6, 7)):
        single = init_state(alone, jax.random.PRNGKey(seed))
        for _ in range(2):
            single, single_metrics = chunk_alone(single)
        mine = seed_slice(jax.device_get(ts), i)
        np.testing.assert_array_equal(np.asarray(mine.replay.data.obs[:8]), np.asarray(single.replay.data.obs[:8]))
        for (path, x), (_, y) in zip(_leaves(mine.agent.learner), _leaves(single.agent.learner)):
            x, y = np.asarray(x), np.asarray(y)
            assert np.allclose(x, y, rtol=1e-5, atol=1e-6), (seed, jax.tree_util.keystr(path), np.abs(x - y).max())
            worst = max(worst, float(np.abs(x.astype(np.float64) - y).max()) if x.size else 0.0)
        initial = jax.tree.leaves(init_state(alone, jax.random.PRNGKey(seed)).agent.learner.actor_params)[0]
        assert not np.allclose(np.asarray(jax.tree.leaves(single.agent.learner.actor_params)[0]), np.asarray(initial))
    print(f"largest |together - alone| over all learner leaves: {worst:.3g}")
    assert TRACE_COUNTS["train_chunk"] == 2

    # Seeds really differ from one another.
    a, b = seed_slice(ts.agent.learner.actor_params, 0), seed_slice(ts.agent.learner.actor_params, 1)
    assert not np.allclose(np.asarray(jax.tree.leaves(a)[0]), np.asarray(jax.tree.leaves(b)[0]))

    # A NaN in seed index 1 (seed 6) shows up in that seed's row only, and the guard names the seed.
    critic = ts.agent.learner.critic_params
    poisoned = jax.tree.map(lambda x: x.at[1].set(np.nan), critic)
    ts = ts.replace(agent=ts.agent.replace(learner=ts.agent.learner.replace(critic_params=poisoned)))
    ts, metrics = chunk_together(ts)
    host = jax.device_get(metrics)
    rows = [summarize_chunk(seed_slice(host, i)) for i in range(3)]
    assert [r["train/params_finite"] for r in rows] == [True, False, True]
    with pytest.raises(TrainingDiverged, match=r"in seed 6 at env step 144"):
        _check_finite(rows, [5, 6, 7], 144, Checkpointer(ROOT / "no-such-dir", 1))


def test_seeds_vmap_with_a_world_model_a_planner_and_normalized_obs():
    """The seed vmap wraps the whole train step: learned model, CEM acting with p_plan, obs statistics."""
    cfg = load_config(
        ROOT / "configs/debug.yaml",
        QUIET + [
            "model.name=mlp", "model.hidden_sizes=[16]", "model.batch_size=16", "model.seq_len=4",
            "train.warmup_env_steps=16", "agent.batch_size=8", "agent.hidden_sizes=[16]", "planner.name=cem",
            "planner.num_samples=8", "planner.iterations=2", "planner.horizon=3", "planner.proposal=policy",
            "planner.p_plan=0.5", "env.normalize_obs=true", "train.num_seeds=2",
        ],
    )
    components = build(cfg)
    ts, metrics = make_train_chunk(components, 6)(init_run_state(components))
    host = jax.device_get(metrics)
    rows = [summarize_chunk(seed_slice(host, i)) for i in range(2)]
    for row in rows:
        assert row["train/params_finite"] and np.isfinite(row["model/loss"]) and 0.0 < row["train/planned_fraction"] < 1.0
    assert rows[0]["model/loss"] != rows[1]["model/loss"]
    assert np.asarray(ts.agent.model.params["stats"].obs.count).shape == (2,)
    assert np.asarray(ts.agent.obs_stats.count).tolist() == [48.0, 48.0]  # 6 steps x 8 envs, per seed
    assert ts.carry["planner"]["mean"].shape[:2] == (2, 8)  # warm-start plans per seed and env


def test_num_seeds_and_devices_are_checked_at_config_time():
    with pytest.raises(ConfigError, match=r"train.num_seeds must be >= 1, got 0"):
        load_config(ROOT / "configs/debug.yaml", ["train.num_seeds=0"])
    with pytest.raises(ConfigError, match=r"train.devices must be >= 0"):
        load_config(ROOT / "configs/debug.yaml", ["train.devices=-1"])
    with pytest.raises(ConfigError, match=r"train.devices=3 does not divide env.num_envs=8"):
        load_config(ROOT / "configs/debug.yaml", ["train.devices=3"])


def test_t_interval_half_width():
    # t_{0.975, 2} = 4.302653 (tables); std of [1, 2, 3] with ddof 1 is 1; 4.302653 / sqrt(3) = 2.484138.
    assert t_interval_half_width([1.0, 2.0, 3.0]) == pytest.approx(2.484138, abs=1e-6)
    assert t_interval_half_width([4.0]) is None


RUN = TINY + [
    "train.num_seeds=2",
    "train.seed=3",
    "train.total_env_steps=96",
    "train.warmup_env_steps=32",
    "train.log_every=16",
    "train.eval_every=32",
    "train.checkpoint_every=32",
    "train.eval_episodes=2",
]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return train(load_config(ROOT / "configs/debug.yaml", RUN + [f"log.runs_dir={runs}", "log.run_name=straight"]))


def test_multi_seed_run_writes_per_seed_rows_summary_and_policy(straight_run):
    rows = [json.loads(line) for line in (straight_run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["env_steps"], r["seed"]) for r in rows] == [(16 * (i // 2 + 1), 3 + i % 2) for i in range(12)]
    evals = {s: [r["eval/return"] for r in rows if r["seed"] == s and "eval/return" in r] for s in (3, 4)}
    assert len(evals[3]) == len(evals[4]) == 3 and evals[3] != evals[4]

    summary = json.loads((straight_run / "summary.json").read_text())
    assert summary["seed"] == 3 and summary["seeds"] == [3, 4] and summary["env_steps"] == 96
    assert summary["per_seed"] == [
        {"seed": s, "final_eval_return": evals[s][-1], "best_eval_return": max(evals[s])} for s in (3, 4)
    ]
    finals = [evals[3][-1], evals[4][-1]]
    assert summary["final_eval_return"] == pytest.approx(np.mean(finals))
    assert summary["best_eval_return"] == pytest.approx(np.mean([max(evals[3]), max(evals[4])]))
    assert summary["final_eval_return_std"] == pytest.approx(np.std(finals, ddof=1))
    # two seeds: t_{0.975, 1} = 12.7062; half-width = 12.7062 * std / sqrt(2)
    assert summary["final_eval_return_ci95"] == pytest.approx(12.7062047 * np.std(finals, ddof=1) / np.sqrt(2), rel=1e-6)

    params, extra, meta = load_seed_policy(straight_run / "policy", like_extra={"obs_stats": init_stats(6)})
    assert meta["seeds"] == [3, 4] and meta["stacked"] is True
    assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves(params))
    assert extra["obs_stats"].mean.shape == (2, 6)

    both = evaluate_run(straight_run, episodes=2)
    assert [p["seed"] for p in both["per_seed"]] == [3, 4] and len(both["returns"]) == 4
    assert both["return_mean"] == pytest.approx(np.mean([np.mean(p["returns"]) for p in both["per_seed"]]))
    one = evaluate_run(straight_run, episodes=2, seed_index=1)
    assert one["train_seeds"] == [4] and one["per_seed"][0]["returns"] == both["per_seed"][1]["returns"]
    assert json.loads((straight_run / "eval.json").read_text())["train_seeds"] == [4]


def test_multi_seed_resume_is_bit_exact(straight_run, tmp_path):
    split_cfg = load_config(ROOT / "configs/debug.yaml", RUN + [f"log.runs_dir={tmp_path}", "log.run_name=split"])
    split = train(split_cfg, stop_after=48)
    assert json.loads((split / "summary.json").read_text())["env_steps"] == 48
    train(resume_dir=split)

    like = jax.eval_shape(lambda: init_run_state(build(split_cfg)))
    a, meta_a = Checkpointer(straight_run / "checkpoints", 3).restore(like)
    b, meta_b = Checkpointer(split / "checkpoints", 3).restore(like)
    assert meta_a["env_steps"] == meta_b["env_steps"] == 96 and meta_a["seeds"] == [3, 4]
    assert a.agent.learner.log_alpha.shape == (2,)
    for (path, x), (_, y) in zip(_leaves(a), _leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))
    rows_a = (straight_run / "metrics.jsonl").read_text().splitlines()
    rows_b = (split / "metrics.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if not k.startswith("time/") and k != "train/env_steps_per_s"}
    assert [strip(r) for r in rows_a] == [strip(r) for r in rows_b]


def test_run_if_stays_a_cond_under_the_seed_vmap_and_keeps_each_seeds_schedule():
    """Under vmap a cond on a batched predicate becomes a select that runs the update at every step (POLO's
    targets at every step instead of every Z-th); the seed vmap's pmax keeps the cond, and a seed that is
    not ready still keeps its state."""
    import jax.numpy as jnp

    from mjxmbrl.agents.base import SEED_AXIS, run_if

    def update(key, state):
        return state * 2.0 + key, {"loss": state.sum()}

    def step(ready, key, state):
        return run_if(ready, update, key, state)

    ready, keys, states = jnp.array([True, False, True]), jnp.ones(3), jnp.arange(6.0).reshape(3, 2)
    stacked = jax.vmap(step, axis_name=SEED_AXIS)
    new, metrics = stacked(ready, keys, states)
    np.testing.assert_array_equal(new, [[1.0, 3.0], [2.0, 3.0], [9.0, 11.0]])  # seed 1 skipped
    np.testing.assert_array_equal(metrics["loss"], [1.0, 0.0, 9.0])
    for s in range(3):  # each seed as it would run alone
        alone = step(ready[s], keys[s], states[s])
        np.testing.assert_array_equal(new[s], alone[0])
    assert "cond[" in str(jax.make_jaxpr(stacked)(ready, keys, states))
    assert "cond[" not in str(jax.make_jaxpr(jax.vmap(step))(ready, keys, states))  # what an unnamed vmap does
