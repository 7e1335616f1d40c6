"""POLO (Lowrey et al. 2019, arXiv:1811.01848): the value ensemble with randomized priors (Eq. 5), the
trajectory-optimised N-step targets (Eq. 7) from restored simulator snapshots, and the agent through
`mjxmbrl train`. (The log-sum-exp aggregate of Eq. 6 is tested in tests/test_ops.py.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmbrl.agents import EXPLORE
from mjxmbrl.agents.polo import make_nstep_target
from mjxmbrl.config import ConfigError, load_config
from mjxmbrl.envs.snapshots import restore, snapshot
from mjxmbrl.envs.wrappers import make_vector_env
from mjxmbrl.learners.polo_value import make_prior_value_ensemble
from mjxmbrl.models import make_model
from mjxmbrl.train import build, init_state

ROOT = Path(__file__).resolve().parents[1]
TASK = "PointMass"  # DM Control point mass: the cheapest MJX task with 2-D actions
TINY = [
    f"env.name={TASK}", "env.num_envs=2", "agent.name=polo", "agent.num_values=3", "agent.batch_size=4",
    "agent.target_horizon=2", "agent.target_samples=4", "model.name=oracle", "planner.name=mppi",
    "planner.horizon=3", "planner.num_samples=6", "planner.value=optimistic",
]


def test_prior_stays_fixed_while_the_trainable_part_fits_its_targets():
    ens = make_prior_value_ensemble(obs_size=4, num_values=3, hidden_sizes=(16, 16), target_noise=0.0, weight_decay=0.0, lr=1e-2)
    state = ens.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (32, 4))
    targets = jnp.stack([jnp.sin(obs[:, 0]), jnp.cos(obs[:, 1]), obs[:, 2]])  # a different target per member [3, 32]
    prior0, params0 = state.prior, state.params
    update = jax.jit(ens.update)
    losses = []
    for i in range(200):
        state, metrics = update(jax.random.PRNGKey(i), state, obs, targets)
        losses.append(float(metrics["learner/value_loss"]))
    for a, b in zip(jax.tree.leaves(prior0), jax.tree.leaves(state.prior)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params0), jax.tree.leaves(state.params)))
    assert losses[-1] < 0.1 * losses[0]
    # members differ (their priors and targets do), and member(k) is row k of values
    values = ens.values(state, obs)
    np.testing.assert_allclose(ens.member(state, 1, obs), values[1], rtol=1e-5, atol=1e-6)
    assert float(jnp.mean(jnp.abs(values[0] - values[1]))) > 0.1


def test_value_inputs_pick_what_the_members_read():
    """With input_dims the members read those observation entries only, prior and trainable part alike."""
    ens = make_prior_value_ensemble(obs_size=4, num_values=3, hidden_sizes=(16, 16), input_dims=(0, 1))
    state = ens.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, 4))
    moved = obs.at[:, 2:].add(5.0)  # the velocities change, the positions do not
    np.testing.assert_array_equal(ens.values(state, obs), ens.values(state, moved))
    np.testing.assert_array_equal(ens.member(state, 2, obs), ens.member(state, 2, moved))
    assert float(jnp.max(jnp.abs(ens.values(state, obs.at[:, 0].add(1.0)) - ens.values(state, obs)))) > 1e-3
    state, _ = ens.update(jax.random.PRNGKey(2), state, obs, jnp.zeros((3, 8)))  # trains on [K, n] targets
    assert jax.tree.leaves(state.params)[0].shape[0] == 3


def test_prior_decides_the_value_far_from_the_data():
    """Untrained states keep the members' disagreement (the optimism POLO explores with)."""
    ens = make_prior_value_ensemble(obs_size=2, num_values=6, hidden_sizes=(32, 32), target_noise=0.0, prior_scale=3.0, lr=1e-2)
    state = ens.init(jax.random.PRNGKey(0))
    seen = jax.random.uniform(jax.random.PRNGKey(1), (64, 2), minval=-0.2, maxval=0.2)
    update = jax.jit(ens.update)
    for i in range(300):
        state, _ = update(jax.random.PRNGKey(i), state, seen, jnp.zeros((6, 64)))
    unseen = jnp.full((1, 2), 3.0)
    spread_seen = float(jnp.mean(jnp.std(ens.values(state, seen), axis=0)))
    spread_unseen = float(jnp.std(ens.values(state, unseen)))
    assert spread_unseen > 5 * spread_seen


def pointmass_states(at_target: bool):
    """(env, jitted step, 6 states [6, ...] of one trajectory) of the point mass, from its random reset or,
    at_target, from beside the target at the origin, where its reward is not 0 (from the reset it is 0)."""
    env = make_vector_env(TASK, 1, impl="jax", auto_reset=False)
    step = jax.jit(env.step_one)
    state = env.reset_one(jax.random.PRNGKey(0))
    if at_target:
        state = state.replace(data=state.data.replace(qpos=jnp.array([0.004, -0.003])))
    states = []
    for i in range(6):
        state = step(state, jnp.array([jnp.sin(i), jnp.cos(i)]))
        states.append(state)
    return env, step, jax.tree.map(lambda *x: jnp.stack(x), *states)


@pytest.fixture(scope="module")
def pointmass():
    return pointmass_states(at_target=False)


@pytest.fixture(scope="module")
def pointmass_at_target():
    return pointmass_states(at_target=True)


def test_restored_snapshot_steps_exactly_like_the_recorded_state(pointmass):
    env, step, states = pointmass
    one = jax.tree.map(lambda x: x[3], states)
    restored = restore(env.reset_one(jax.random.PRNGKey(9)), snapshot(one), one.obs)
    action = jnp.array([0.7, -0.4])
    a, b = step(one, action), step(restored, action)
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.reward, b.reward)


ENSEMBLE_KEY, TARGET_KEY = jax.random.PRNGKey(3), jax.random.PRNGKey(4)


def target_ensemble(env):
    """The 3-member value ensemble (and its state) that every target test scores with."""
    ens = make_prior_value_ensemble(env.observation_size, 3, (16, 16))
    return ens, ens.init(ENSEMBLE_KEY)


def nstep_targets(pointmass, *overrides):
    """Eq. 7 targets y [K = 3, n = 6] of the pointmass states under TINY + overrides: the same 3-member
    ensemble and the same target key every call, so calls differ only in their settings (and so draw the
    same candidates when target_samples is the same)."""
    env, _, states = pointmass
    ens, values_state = target_ensemble(env)
    cfg = load_config(None, [*TINY, *overrides])
    target = jax.jit(make_nstep_target(cfg, ens, make_model(cfg.model, cfg.env)))
    template = env.reset_one(jax.random.PRNGKey(0))
    return np.asarray(target(TARGET_KEY, values_state, template, snapshot(states), states.obs))


def test_nstep_target_with_n_1_is_reward_plus_discounted_member_value(pointmass_at_target):
    env, step, states = pointmass_at_target
    y = nstep_targets(pointmass_at_target, "agent.target_horizon=1", "agent.target_samples=1", "planner.discount=0.9")
    assert y.shape == (3, 6)
    nxt = jax.vmap(lambda s: step(s, jnp.zeros(2)))(states)  # the one candidate: the zero plan
    assert float(jnp.abs(nxt.reward).min()) > 0.1  # the reward term is tested too
    ens, values_state = target_ensemble(env)
    expected = nxt.reward[None] + 0.9 * ens.values(values_state, nxt.obs)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_reward_scale_scales_the_reward_in_the_nstep_target(pointmass_at_target):
    """agent.reward_scale = c: with N = 1 and one sample the target is c r + gamma V_k(s_1)."""
    env, step, states = pointmass_at_target
    y = nstep_targets(pointmass_at_target, "agent.target_horizon=1", "agent.target_samples=1", "planner.discount=0.9",
                      "agent.reward_scale=0.25")
    nxt = jax.vmap(lambda s: step(s, jnp.zeros(2)))(states)
    ens, values_state = target_ensemble(env)
    assert float(jnp.abs(nxt.reward).min()) > 0.1  # the reward term is not vanishing
    expected = 0.25 * nxt.reward[None] + 0.9 * ens.values(values_state, nxt.obs)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_reward_scale_with_the_temperature_scaled_alike_plans_the_same_actions():
    """MPC alone (no value) with reward_scale c and temperature c T weighs MPPI's candidates as with 1 and T:
    the same actions and effective sample size, and the best planned return is c times the task's (on
    cartpole balance, which starts upright where its reward is near 1: the point mass's is 0 away from its target)."""
    def act(*overrides):
        cfg = load_config(None, [*TINY, "env.name=CartpoleBalance", "planner.value=none", "log.wandb=disabled",
                                 "log.progress=false", *overrides])
        components = build(cfg)
        ts = init_state(components)
        return components.agent.act(jax.random.PRNGKey(5), ts.agent, ts.carry, ts.env_state,
                                    jnp.asarray(0, jnp.int32), EXPLORE)

    base, _, _, base_metrics = act("planner.temperature=0.5")
    scaled, _, _, scaled_metrics = act("planner.temperature=0.125", "agent.reward_scale=0.25")
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(base), rtol=1e-4, atol=1e-5)
    assert float(np.abs(base_metrics["planner/return_max"]).min()) > 1e-3
    np.testing.assert_allclose(np.asarray(scaled_metrics["planner/return_max"]),
                               0.25 * np.asarray(base_metrics["planner/return_max"]), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(scaled_metrics["planner/ess"]), np.asarray(base_metrics["planner/ess"]),
                               rtol=1e-4)  # the same weighting over the candidates


def test_nstep_target_optimises_over_candidates(pointmass):
    """More candidates and N > 1 can only find a better (never worse) return than the zero plan alone."""
    out = {samples: nstep_targets(pointmass, "agent.target_horizon=3", "planner.discount=0.9",
                                  f"agent.target_samples={samples}")
           for samples in (1, 64)}
    assert np.all(out[64] >= out[1] - 1e-6)
    assert float(np.mean(out[64] - out[1])) > 0


def test_shared_candidate_targets_equal_per_member_mppi_on_the_zero_plan(pointmass):
    """One round (members share the rollouts) and two rounds (per-member MPPI) score the same zero plan
    when there is one candidate: the shared path's rollout, discounting and terminal values agree."""
    out = {rounds: nstep_targets(pointmass, "agent.target_horizon=3", "agent.target_samples=1", "planner.discount=0.9",
                                 f"agent.target_iterations={rounds}")
           for rounds in (1, 2)}
    assert out[1].shape == out[2].shape == (3, 6)
    np.testing.assert_allclose(out[1], out[2], rtol=1e-5, atol=1e-6)
    assert float(np.std(out[1], axis=0).mean()) > 0  # the members' values differ


def test_mean_selected_targets_score_one_candidate_per_state_with_each_member(pointmass):
    """agent.target_select=mean: the ensemble mean picks one candidate per state, every member scores it
    with its own value. So no member's target exceeds its own max (member), some fall below it, and the
    members' mean target is at least the mean score of the zero plan (candidate 0 of the same draw)."""
    out = {(samples, select): nstep_targets(pointmass, "agent.target_horizon=3", "planner.discount=0.9",
                                            f"agent.target_samples={samples}", f"agent.target_select={select}")
           for samples, select in ((64, "member"), (64, "mean"), (1, "member"))}
    own, mean, zero_plan = out[64, "member"], out[64, "mean"], out[1, "member"]
    assert np.all(mean <= own + 1e-6)
    assert np.any(mean < own - 1e-4)  # the members disagree on their best candidate
    assert np.all(mean.mean(axis=0) >= zero_plan.mean(axis=0) - 1e-6)
    assert np.all(mean.mean(axis=0) <= own.mean(axis=0) + 1e-6)


@pytest.mark.parametrize("override, message", [
    ("model.name=mlp", "model.name=oracle"),
    ("planner.name=cem", "planner.name=mppi"),
    ("planner.value=soft", "planner.value must be optimistic"),
    ("agent.kappa=0", "kappa"),
    ("agent.reward_scale=0", "reward_scale must be > 0"),
    ("agent.value_inputs=[0,4]", "distinct indices of the 4 observation entries"),
    ("agent.value_inputs=[1,1]", "distinct indices"),
    ("agent.target_select=max", "target_select must be member"),
    ("agent.target_select=mean agent.target_iterations=2", "needs agent.target_iterations=1"),
])
def test_bad_polo_configs_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*TINY, *override.split()])


def test_optimistic_value_needs_agent_polo():
    with pytest.raises(ConfigError, match="needs agent polo"):
        load_config(None, [f"env.name={TASK}", "agent.name=sac", "model.name=oracle", "planner.name=mppi", "planner.value=optimistic"])


@pytest.mark.slow
def test_polo_trains_and_evaluates_through_the_cli_and_logs_coverage(tmp_path):
    args = [*TINY, "env.name=PointMassMaze", "train.log_env_metrics=true", "train.total_env_steps=40", "train.warmup_env_steps=0", "train.update_every=2", "train.updates_per_step=2",
            "train.log_every=20", "train.eval_every=40", "train.eval_episodes=1", "train.checkpoint_every=40",
            "env.episode_length=20", "log.wandb=disabled", "log.progress=false", f"log.runs_dir={tmp_path}", "log.run_name=polo"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "mjxmbrl.cli", "train", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "polo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in rows] == [20, 40]
    assert all(np.isfinite(r["learner/value_loss"]) for r in rows)
    assert rows[-1]["learner/target_mean"] != 0.0 and "eval/return" in rows[-1]
    # the world's coverage, logged at each chunk's last step: at least the start cell, never less later
    assert 0 < rows[0]["env/coverage"] <= rows[1]["env/coverage"] <= 1
    summary = json.loads((tmp_path / "polo" / "summary.json").read_text())
    assert summary["finished"] and summary["env_steps"] == 40


@pytest.mark.parametrize("name, horizons, repeat", [("polo-horizon", (4, 8, 16, 32), 1), ("polo-inhand", (4, 8, 16), 2)])
def test_horizon_experiments_pair_mpc_alone_with_polo_at_each_horizon(tmp_path, name, horizons, repeat):
    from mjxmbrl.cli.reproduce import plan_runs
    from mjxmbrl.experiments import get_experiment

    e = get_experiment(name)
    for budget in ("small", "paper"):
        planned = plan_runs(e, e.budgets[budget], 1, tmp_path)
        by_cell = {p.cell.id: p.cfg for p in planned}
        for h in horizons:
            mpc = next(cfg for cid, cfg in by_cell.items() if cid.startswith("mpc-") and cid.endswith(f"-h{h}"))
            polo = next(cfg for cid, cfg in by_cell.items() if cid.startswith("polo-") and cid.endswith(f"-h{h}"))
            # the pair differs in the terminal value only: MPC alone plans without it, POLO with the optimistic one
            assert (mpc.planner.horizon, polo.planner.horizon) == (h, h)
            assert (mpc.planner.value, polo.planner.value) == ("none", "optimistic")
            assert mpc.planner.num_samples == polo.planner.num_samples and mpc.env == polo.env
            assert mpc.env.action_repeat == repeat and mpc.train.total_env_steps == e.budgets[budget].total_env_steps
    assert not any(tmp_path.iterdir()), "planning runs writes nothing"
    inhand = get_experiment("polo-inhand")
    assert inhand.metrics[0] == "eval/return" and inhand.budgets["small"].total_env_steps == 2500  # Fig. 3's in-hand life
