"""Planners: exact math helpers, properties, a quadratic toy problem, and closed-loop MPC on MJX."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mjxmbrl.config import EnvConfig
from mjxmbrl.models.base import Model, default_initial_particles
from mjxmbrl.models.oracle import OracleModelConfig
from mjxmbrl.planners.base import PlanParams, make_rollout_core, shift_plan
from mjxmbrl.planners.cem import CEMConfig, elite_update, make_cem
from mjxmbrl.planners.grad import GradConfig, gradient_ascent, make_grad
from mjxmbrl.planners.mppi import MPPIConfig, make_mppi, mppi_weights
from mjxmbrl.planners.smc import (
    SMCConfig,
    effective_sample_size,
    make_smc,
    multinomial_resample,
    resampling_weights,
)


def integrator_model(target=0.5) -> Model:
    """z' = z + a (1-D); reward -(z' - target)^2: the best plan drives z to the target."""

    def initial_state(params, obs, key, belief=None):
        return obs

    return Model(
        name="integrator",
        init=lambda key: {},
        initial_state=initial_state,
        initial_particles=default_initial_particles(initial_state),
        step=lambda params, z, a, key: z + 0.5 * a,
        observation=lambda params, z: z,
        reward=lambda params, z, a, z1: -jnp.sum(jnp.square(z1 - target)),
        termination=None,
        loss=None,
    )


def constant_proposal(value):
    def sample(pp, obs, key, progress=0.0):
        return jnp.full((obs.shape[0], 1), value)

    return sample


# ---- exact numbers -----------------------------------------------------------------


def test_mppi_weights_are_a_stable_softmax_summing_to_one():
    w = np.asarray(mppi_weights(jnp.array([0.0, 1.0, 2.0]), 1.0))
    e = np.exp([0.0, 1.0, 2.0])
    np.testing.assert_allclose(w, e / e.sum(), rtol=1e-6)  # [0.0900, 0.2447, 0.6652]
    big = np.asarray(mppi_weights(jnp.array([1e4, 1e4 + 1.0]), 0.5))
    assert np.all(np.isfinite(big)) and big.sum() == pytest.approx(1.0)


def test_smc_weights_and_effective_sample_size():
    w = resampling_weights(jnp.array([0.0, 0.0, 0.0, 0.0]), 0.01)
    np.testing.assert_allclose(w, 0.25)
    assert float(effective_sample_size(w)) == pytest.approx(4.0)
    w = resampling_weights(jnp.array([0.0, jnp.log(3.0)]), 1.0)  # exp: 1 and 3 -> 1/4, 3/4
    np.testing.assert_allclose(w, [0.25, 0.75], rtol=1e-6)
    assert float(effective_sample_size(w)) == pytest.approx(1.0 / (0.0625 + 0.5625))


def test_resampling_keeps_the_count_and_follows_the_weights():
    weights = jnp.array([0.5, 0.3, 0.2, 0.0])
    idx = np.asarray(multinomial_resample(jax.random.PRNGKey(0), jnp.tile(weights, 2500)))
    assert idx.shape == (10_000,)
    freq = np.bincount(idx % 4, minlength=4) / idx.size
    # binomial std at n = 10k is at most 0.005: 4 sigma bounds
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.2, 0.0], atol=0.02)
    assert freq[3] == 0.0


def test_cem_elite_update_and_zero_noise_returns_initial_mean():
    mu = jnp.array([[0.2], [0.4]])
    samples = jnp.array([[[0.0], [0.0]], [[1.0], [1.0]], [[0.5], [0.5]], [[-1.0], [-1.0]]])
    returns = jnp.array([0.0, 3.0, 2.0, -1.0])
    new_mu, new_sigma = elite_update(mu, jnp.ones((2, 1)), samples, returns, 2, 0.9, 0.5)
    np.testing.assert_allclose(new_mu, 0.1 * mu + 0.9 * 0.75, rtol=1e-6)  # elites 1.0 and 0.5
    np.testing.assert_allclose(new_sigma, 0.5 + 0.5 * 0.25, rtol=1e-6)
    core = make_rollout_core(integrator_model(), 0.99)
    cfg = dataclasses.replace(CEMConfig(), num_samples=16, horizon=4, sigma_init=0.0, warm_start=False)
    planner = make_cem(cfg, core, constant_proposal(0.3), 1)
    action, _, _ = planner.plan(jax.random.PRNGKey(0), planner.init(None), jnp.zeros(1), None, PlanParams(model={}))
    np.testing.assert_allclose(action, [0.3], rtol=1e-6)


def test_shift_plan_advances_the_warm_start_by_one_step():
    plan = jnp.array([[1.0, -1.0], [2.0, -2.0], [3.0, -3.0]])
    np.testing.assert_array_equal(shift_plan(plan), [[2.0, -2.0], [3.0, -3.0], [3.0, -3.0]])
    np.testing.assert_array_equal(shift_plan(plan, jnp.array([9.0, 8.0])), [[2.0, -2.0], [3.0, -3.0], [9.0, 8.0]])


def test_a_predicted_termination_ends_the_return_and_drops_the_terminal_value():
    """score = sum_t gamma^t alive_t r_t + gamma^H alive_H V: the step that terminates still pays its reward."""

    def initial_state(params, obs, key, belief=None):
        return obs

    counter = Model(
        name="counter",
        init=lambda key: {},
        initial_state=initial_state,
        initial_particles=default_initial_particles(initial_state),
        step=lambda params, z, a, key: z + 1.0,
        observation=lambda params, z: z,
        reward=lambda params, z, a, z1: jnp.ones(()),
        termination=lambda params, z, a, z1: (z1[0] >= 3.0).astype(jnp.float32),  # ends on the 3rd step
        loss=None,
    )
    g = 0.9
    value_fn = lambda value_params, obs, key: jnp.full(obs.shape[:1], 100.0)  # noqa: E731
    core = make_rollout_core(counter, g, value_fn=value_fn)
    pp = PlanParams(model={})
    z0 = jnp.array([[0.0], [-10.0]])  # particle 0 terminates at t = 2; particle 1 never within H = 5
    score = np.asarray(core.score(pp, z0, jnp.zeros((2, 5, 1)), jax.random.PRNGKey(0)))
    np.testing.assert_allclose(score[0], 1 + g + g**2, rtol=1e-6)
    np.testing.assert_allclose(score[1], sum(g**t for t in range(5)) + g**5 * 100.0, rtol=1e-6)


def test_gradient_planner_improves_a_quadratic_monotonically():
    target = jnp.linspace(-0.5, 0.5, 8).reshape(1, 4, 2)

    def objective(a):
        return -jnp.sum(jnp.square(a - target), axis=(1, 2))

    start = jnp.zeros((3, 4, 2))
    actions, history = gradient_ascent(objective, start, optax.sgd(0.1), 20)
    history = np.asarray(history)
    assert np.all(np.diff(history) > 0)
    np.testing.assert_allclose(actions, jnp.broadcast_to(target, (3, 4, 2)), atol=0.05)


# ---- planners on the integrator -----------------------------------------------------


@pytest.mark.parametrize("name", ["smc", "cem", "mppi", "grad"])
def test_every_planner_steers_the_integrator_to_its_target(name):
    from mjxmbrl.planners.proposals import gaussian_proposal

    core = make_rollout_core(integrator_model(target=0.8), 0.99)
    proposal = gaussian_proposal(1, 0.5)
    if name == "smc":
        planner = make_smc(dataclasses.replace(SMCConfig(), num_particles=64, horizon=5, temperature=0.1), core, proposal, 1)
    elif name == "cem":
        planner = make_cem(dataclasses.replace(CEMConfig(), num_samples=64, horizon=5), core, proposal, 1)
    elif name == "mppi":
        planner = make_mppi(dataclasses.replace(MPPIConfig(), num_samples=64, horizon=5, noise_sigma=0.5, temperature=0.1, iterations=3), core, 1)
    else:
        planner = make_grad(dataclasses.replace(GradConfig(), num_candidates=8, horizon=5, iterations=30, learning_rate=0.1), core, proposal, 1)
    plan = jax.jit(planner.plan)
    errors = []
    for seed in range(4):  # SMC executes a random survivor's first action: judge the mean over seeds
        z, state = jnp.zeros(1), planner.init(None)
        for t in range(8):
            a, state, metrics = plan(jax.random.PRNGKey(100 * seed + t), state, z, None, PlanParams(model={}))
            z = z + 0.5 * a
        errors.append(abs(float(z[0]) - 0.8))
    assert np.mean(errors) < 0.15, (name, errors)  # from 0.8 away at the start
    assert all(np.isfinite(float(v)) for v in metrics.values())


# ---- closed loop on MJX with the oracle ----------------------------------------------


def _oracle_setup(env_name, action_repeat, num_envs, episode_length=None):
    from mjxmbrl.envs import make_vector_env
    from mjxmbrl.models import make_model

    env_cfg = EnvConfig(name=env_name, action_repeat=action_repeat)
    env = make_vector_env(env_name, num_envs, action_repeat=action_repeat, auto_reset=False, episode_length=episode_length)
    model = make_model(OracleModelConfig(), env_cfg, env.observation_size, env.action_size)
    return env, model


def test_mppi_with_the_oracle_balances_the_cartpole():
    from mjxmbrl.agents.parts import make_planning_actor
    from mjxmbrl.rollout import make_episode_runner

    env, model = _oracle_setup("CartpoleBalance", 4, 2, episode_length=4 * 40)
    core = make_rollout_core(model, 0.99)
    cfg = dataclasses.replace(MPPIConfig(), num_samples=32, horizon=10, noise_sigma=0.5, temperature=0.5)
    actor = make_planning_actor(make_mppi(cfg, core, 1), model, env.observation_size)

    def act(key, pp, carry, state):  # MPC: plan in every env, execute the plan, keep its warm start
        action, carry, planner_state, metrics = actor.plan(key, carry, state, pp, 0.0)
        return action, actor.keep(carry, planner_state, jnp.ones(action.shape[:1], bool)), metrics

    result = make_episode_runner(env, act, actor.init_carry)(jax.random.PRNGKey(0), PlanParams(model={}))
    random_return = _random_return(env, 40)
    planned = np.asarray(result.returns)
    assert np.all(planned > 0.9 * 4 * 40), planned  # near the 1.0-per-control-step maximum
    assert planned.mean() > random_return + 20, (planned, random_return)


def _random_return(env, steps):
    state = env.reset(jax.random.PRNGKey(1))
    total = 0.0
    for t in range(steps):
        a = jax.random.uniform(jax.random.PRNGKey(100 + t), (env.num_envs, env.action_size), minval=-1, maxval=1)
        state = env.step(state, a)
        total += float(state.reward.mean())
    return total


def test_gradient_planning_through_the_differentiable_simulator():
    """Grad-MPC's gradient through MJX (impl=jax) is finite and ascending it raises the predicted return.

    One jitted value-and-gradient, stepped by Adam in Python: tracing and compiling the gradient through
    MJX dominates this test, so it is built once (gradient_ascent's own loop is tested on an analytic
    objective below)."""
    env, model = _oracle_setup("CartpoleSwingup", 1, 1)
    core = make_rollout_core(model, 0.99)
    state = jax.tree.map(lambda x: x[0], env.reset(jax.random.PRNGKey(0)))
    pp = PlanParams(model={})
    z0 = core.initial_particles(pp, state.obs, jax.random.PRNGKey(1), 2, state)
    value_and_grad = jax.jit(jax.value_and_grad(lambda a: jnp.sum(core.score(pp, z0, a, jax.random.PRNGKey(2)))))

    actions = 0.3 * jax.random.normal(jax.random.PRNGKey(3), (2, 3, 1))
    optimizer = optax.adam(0.05)
    opt_state = optimizer.init(actions)
    values = []
    for _ in range(6):
        value, grads = value_and_grad(actions)
        assert np.all(np.isfinite(grads)) and float(jnp.abs(grads).max()) > 0
        values.append(float(value))
        updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grads), opt_state)
        actions = optax.apply_updates(actions, updates)
    assert values[-1] > values[0], values


def test_gradient_planner_drops_nan_gradients():
    """A jnp.where branch that is singular off-branch gives NaN gradients (as simulator rewards can)."""
    target = jnp.full((2, 3, 1), 0.4)

    def objective(a):
        smooth = -jnp.sum(jnp.square(a - target), axis=(1, 2))
        first = a[:, :1]  # only the first step's gradient is poisoned: d/da is NaN for a >= 0
        singular = jnp.sum(jnp.where(first > 5.0, jnp.sqrt(-first), 0.0), axis=(1, 2))
        return smooth + singular

    assert not np.all(np.isfinite(jax.grad(lambda a: jnp.sum(objective(a)))(jnp.full((2, 3, 1), 0.1))))
    actions, history = gradient_ascent(objective, jnp.zeros((2, 3, 1)), optax.sgd(0.1), 10)
    assert np.all(np.isfinite(actions)) and np.all(np.isfinite(history))
    assert float(history[-1]) > float(history[0])


def test_the_oracle_plans_from_a_live_state_right_after_an_auto_reset():
    """The training env's State after an auto-reset holds the new episode with done = 1 and the old
    flags; the oracle must plan from it as from any fresh state, not from a frozen one (reward 0)."""
    from mjxmbrl.envs import make_vector_env
    from mjxmbrl.models.oracle import env_slice, make_oracle_model

    # 3 agent steps per episode (12 control steps, action repeat 4): resets before steps 3 and 6.
    env = make_vector_env("CartpoleBalance", 1, impl="jax", episode_length=12, action_repeat=4, auto_reset=True)
    model = make_oracle_model("CartpoleBalance", "jax", episode_length=12, action_repeat=4)
    cfg = dataclasses.replace(MPPIConfig(), num_samples=8, horizon=2, noise_sigma=0.3, temperature=0.5)
    planner = make_mppi(cfg, make_rollout_core(model, 0.99), 1)
    plan, step = jax.jit(planner.plan), jax.jit(env.step)

    state, pstate = env.reset(jax.random.PRNGKey(0)), planner.init(None)
    after_reset, returns = [], []
    for t in range(7):
        after_reset.append(float(state.done[0]) > 0)
        action, pstate, metrics = plan(jax.random.PRNGKey(t), pstate, state.obs[0], env_slice(state, 0), PlanParams(model={}))
        returns.append(float(metrics["planner/return_max"]))
        state = step(state, action[None])
    assert after_reset == [False, False, False, True, False, False, True], after_reset
    # Balance pays about 1 per control step near upright: 2 planned agent steps x 4 control steps ~ 8,
    # as at the very first step (t = 0, from env.reset).
    assert returns[0] > 6.0, returns
    for t in (3, 6):
        assert returns[t] == pytest.approx(returns[0], rel=0.1), (t, returns)


# ---- planner value -------------------------------------------------------------------


def test_q_value_is_the_mean_over_critics_and_policy_actions():
    """Byravan App. F.2: V(s) = (1/K) sum_k (1/C) sum_c Q_c(s, a_k), a_k ~ pi(s), no entropy term."""
    from mjxmbrl.learners.sac import SACConfig, make_sac, make_sac_core
    from mjxmbrl.planners import make_value_fn

    cfg = dataclasses.replace(SACConfig(), hidden_sizes=(4,), num_critics=2, init_alpha=0.5)
    learner, core = make_sac(cfg, 3, 2, 1000), make_sac_core(cfg, 3, 2)
    state = learner.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    key, samples = jax.random.PRNGKey(2), 3

    got = make_value_fn(learner, samples, False, "q")((state, None), obs, key)

    total = np.zeros(5)
    mean, log_std = core.actor_dist(state.actor_params, obs)
    for k in jax.random.split(key, samples):
        eps = jax.random.normal(k, mean.shape)
        action = jnp.tanh(mean + jnp.exp(log_std) * eps)
        q = np.asarray(core.q(state.critic_params, obs, action))  # [2, 5]
        assert not np.allclose(q[0], q[1])  # two different critics: the mean is not the min
        total += (q[0] + q[1]) / 2.0
    np.testing.assert_allclose(got, total / samples, rtol=1e-5, atol=1e-6)

    soft = make_value_fn(learner, samples, False, "soft")((state, None), obs, key)
    assert not np.allclose(soft, got)  # the soft value takes the min and subtracts alpha log pi


def test_value_options_need_the_right_learner():
    from mjxmbrl.learners.base import Learner
    from mjxmbrl.planners import make_value_fn
    from mjxmbrl.types import MjxmbrlError

    no_q = Learner(init=None, update=None, policy_params=None, policy=None, value=lambda s, o, k: o[..., 0])
    with pytest.raises(MjxmbrlError, match="action-value critic"):
        make_value_fn(no_q, 10, False, "q")
    with pytest.raises(MjxmbrlError, match="one of none, soft, q"):
        make_value_fn(no_q, 10, False, "learner")
    value = make_value_fn(no_q, 4, False, "soft")((None, None), jnp.array([[2.0, 0.0], [3.0, 1.0]]), jax.random.PRNGKey(0))
    np.testing.assert_array_equal(value, [2.0, 3.0])
