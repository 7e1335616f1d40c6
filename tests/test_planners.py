"""Planners: exact math helpers, properties, a quadratic toy problem, and closed-loop MPC on MJX."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mjxmbrl.config import CEMConfig, EnvConfig, GradConfig, MPPIConfig, OracleModelConfig, SMCConfig
from mjxmbrl.models.base import Model, default_initial_particles
from mjxmbrl.planners.base import PlanParams, make_rollout_core
from mjxmbrl.planners.cem import elite_update, make_cem
from mjxmbrl.planners.grad import gradient_ascent, make_grad
from mjxmbrl.planners.mppi import make_mppi, mppi_weights
from mjxmbrl.planners.smc import effective_sample_size, make_smc, multinomial_resample, resampling_weights


def integrator_model(target=0.5) -> Model:
    """z' = z + a (1-D); reward -(z' - target)^2: the best plan drives z to the target."""

    def initial_state(params, obs, key, sim_state=None):
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


def _oracle_setup(env_name, action_repeat, num_envs):
    from mjxmbrl.envs import make_vector_env
    from mjxmbrl.models import make_model

    env_cfg = EnvConfig(name=env_name, action_repeat=action_repeat)
    env = make_vector_env(env_name, num_envs, action_repeat=action_repeat, auto_reset=False)
    model = make_model(OracleModelConfig(), env_cfg, env.observation_size, env.action_size)
    return env, model


def test_mppi_with_the_oracle_balances_the_cartpole():
    from mjxmbrl.mpc import make_mpc_episodes

    env, model = _oracle_setup("CartpoleBalance", 4, 2)
    core = make_rollout_core(model, 0.99)
    cfg = dataclasses.replace(MPPIConfig(), num_samples=32, horizon=10, noise_sigma=0.5, temperature=0.5)
    result = make_mpc_episodes(env, make_mppi(cfg, core, 1), 40)(jax.random.PRNGKey(0), PlanParams(model={}))
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
