"""SAC-SVG(H): H = 0 is SAC, hand-computed expansions, config-time rejections, a jitted train chunk."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmbrl.config import ConfigError, EnvConfig, config_from_dict
from mjxmbrl.learners.base import LearnContext
from mjxmbrl.learners.sac import SACConfig, make_sac_core, sac_actor_loss
from mjxmbrl.learners.svg import (
    ExpansionFns,
    SVGConfig,
    make_svg,
    soft_mve_targets,
    soft_value_expansion,
)
from mjxmbrl.models import make_model
from mjxmbrl.models.gru import GRUModelConfig
from mjxmbrl.models.trainer import make_model_trainer
from mjxmbrl.types import Transition

OBS, ACT, B = 3, 2, 32
SMALL = SVGConfig(hidden_sizes=(32, 32), head_sizes=(16,), horizon=0)


def random_batch(key, n=B):
    k = jax.random.split(key, 4)
    return Transition(
        obs=jax.random.normal(k[0], (n, OBS)),
        action=jax.random.uniform(k[1], (n, ACT), minval=-1.0, maxval=1.0),
        reward=jax.random.normal(k[2], (n,)),
        next_obs=jax.random.normal(k[3], (n, OBS)),
        terminated=jnp.zeros((n,)),
        truncated=jnp.zeros((n,)),
    )


@pytest.mark.parametrize("layer_norm", [False, True])
def test_svg0_actor_loss_and_gradient_equal_sac(layer_norm):
    """Same params, batch and key: SVG(0)'s expansion path gives SAC's Eq. 7 loss and gradient (with the
    critics' layer norm on or off: the SAC defaults take it)."""
    parts = make_svg(dataclasses.replace(SMALL, critic_layer_norm=layer_norm), OBS, ACT, 1000, return_parts=True)
    state = parts.init(jax.random.PRNGKey(0))
    sac_core = make_sac_core(SACConfig(hidden_sizes=(32, 32), critic_layer_norm=layer_norm), OBS, ACT)
    obs = random_batch(jax.random.PRNGKey(1)).obs
    key, alpha = jax.random.PRNGKey(2), jnp.asarray(0.3)
    svg_fn = parts.actor_loss(state, obs, key, alpha, {}, None)
    sac_fn = sac_actor_loss(sac_core, state.sac.critic_params, obs, key, alpha)
    (svg_loss, svg_logp), svg_grad = jax.value_and_grad(svg_fn, has_aux=True)(state.sac.actor_params)
    (sac_loss, sac_logp), sac_grad = jax.value_and_grad(sac_fn, has_aux=True)(state.sac.actor_params)
    np.testing.assert_allclose(svg_loss, sac_loss, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(svg_logp, sac_logp, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves(svg_grad), jax.tree.leaves(sac_grad)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(sac_grad)) > 1e-4  # a real gradient


def linear_fns(gain):
    """Double integrator x' = A x + B u, u = gain . x (log pi = -1), r = x0 - u/2, 1 - d = 0.9, Q = x1 + u."""
    a_mat = jnp.array([[1.0, 1.0], [0.0, 1.0]])
    b_vec = jnp.array([0.0, 1.0])
    return ExpansionFns(
        action=lambda x, eps: (jnp.dot(gain, x)[None], jnp.asarray(-1.0)),
        init=lambda x, k: x,
        step=lambda z, u, k: a_mat @ z + b_vec * u[0],
        observe=lambda z: z,
        reward=lambda x, u: x[0] - 0.5 * u[0],
        not_done=lambda x, u: jnp.asarray(0.9),
        q=lambda x, u: x[1] + u[0],
    )


def test_value_expansion_linear_model_by_hand():
    # x0 = (1, 2), gain (0.5, 0.25): u0 = 1; x1 = (3, 3), u1 = 2.25; x2 = (6, 5.25), u2 = 4.3125.
    # r0 = 1 - 0.5 = 0.5, r1 = 3 - 1.125 = 1.875; -alpha log pi = +0.2 each step (alpha 0.2); Q(x2, u2) = 9.5625.
    # gamma 0.5, continuation 0.9: V = (0.5 + 0.2) + 0.5*0.9*(1.875 + 0.2) + 0.25*0.81*(9.5625 + 0.2) = 3.61065625
    gain = jnp.array([0.5, 0.25])
    x0, alpha, key = jnp.array([1.0, 2.0]), jnp.asarray(0.2), jax.random.PRNGKey(0)
    value, log_p0 = soft_value_expansion(linear_fns(gain), x0, jnp.zeros((3, 1)), key, alpha, 0.5)
    assert float(value) == pytest.approx(3.61065625, rel=1e-6)
    assert float(log_p0) == -1.0
    # H = 0: Q(x0, u0) - alpha log pi = 2 + 1 + 0.2
    value0, _ = soft_value_expansion(linear_fns(gain), x0, jnp.zeros((1, 1)), key, alpha, 0.5)
    assert float(value0) == pytest.approx(3.2, rel=1e-6)
    # The gradient flows through the model into the policy: autodiff matches central differences.
    fn = lambda g: soft_value_expansion(linear_fns(g), x0, jnp.zeros((3, 1)), key, alpha, 0.5)[0]
    grad = jax.grad(fn)(gain)
    h = 1e-3
    numeric = [(fn(gain.at[i].add(h)) - fn(gain.at[i].add(-h))) / (2 * h) for i in range(2)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-3)
    assert float(jnp.abs(grad).min()) > 0.1


def test_mve_targets_linear_model_by_hand():
    # Real transition: r0 = 0.5, not terminated, x1 = (3, 3). Imagined: u1 = 2.25, r1 = 1.875, x2 = (6, 5.25), u2 = 4.3125.
    # V2 = Q'(x2, u2) + 0.2 = 9.7625; G1 = 1.875 + 0.5*0.9*9.7625 = 6.268125; V1 = G1 + 0.2 = 6.468125;
    # G0 = 0.5 + 0.5*1*6.468125 = 3.7340625.
    fns = linear_fns(jnp.array([0.5, 0.25]))
    targets, xs, us = soft_mve_targets(
        fns, jnp.array([3.0, 3.0]), jnp.asarray(0.5), jnp.asarray(0.0), jnp.zeros((2, 1)), jax.random.PRNGKey(0), jnp.asarray(0.2), 0.5
    )
    np.testing.assert_allclose(targets, [3.7340625, 6.268125], rtol=1e-6)
    np.testing.assert_allclose(xs, [[3.0, 3.0]])
    np.testing.assert_allclose(us, [[2.25]])
    # A true termination of the real step leaves only its reward.
    targets_t, _, _ = soft_mve_targets(
        fns, jnp.array([3.0, 3.0]), jnp.asarray(0.5), jnp.asarray(1.0), jnp.zeros((2, 1)), jax.random.PRNGKey(0), jnp.asarray(0.2), 0.5
    )
    assert float(targets_t[0]) == pytest.approx(0.5)


def cfg_dict(agent=None, model=None, env=None):
    return {"env": {"name": "toy_reach", **(env or {})}, "agent": {"name": "svg", **(agent or {})}, "model": model or {"name": "gru"}}


@pytest.mark.parametrize(
    "agent, model, env, needle",
    [
        ({"horizon": -1}, None, None, "agent.horizon must be >= 0"),
        ({"entropy_schedule": "decay", "target_entropy_init": -2.0, "target_entropy_final": 1.0}, None, None, "exceeds agent.target_entropy_init"),
        ({"horizon": 2}, {"name": "none"}, None, "unrolls a learned dynamics model"),
        ({"horizon": 2}, {"name": "oracle"}, {"name": "CartpoleSwingup", "impl": "warp"}, "cannot be differentiated"),
        ({"horizon": 2}, {"name": "oracle"}, {"name": "CartpoleSwingup"}, "full simulator states"),
        ({"horizon": 2}, {"name": "gru", "learn_reward": True}, None, "model.learn_reward=false"),
        ({"horizon": 3}, {"name": "gru", "seq_len": 2}, None, "shorter than agent.horizon"),
        ({"horizon": 0, "critic_mve": True}, None, None, "needs agent.horizon >= 1"),
        ({"horizon": 2, "n_step": 3}, None, None, "n-step targets are a SAC option"),
    ],
)
def test_config_rejects(agent, model, env, needle):
    with pytest.raises(ConfigError, match=needle):
        config_from_dict(cfg_dict(agent, model, env))


def test_config_derived_model_defaults():
    cfg = config_from_dict(cfg_dict({"horizon": 3}))
    assert cfg.model.seq_len == 3 and not cfg.model.learn_reward and not cfg.model.learn_termination
    assert config_from_dict(cfg_dict({"horizon": 0}, {"name": "none"})).agent.horizon == 0  # SVG(0) = SAC needs no model
    assert config_from_dict(cfg_dict({"horizon": 2}, {"name": "gru", "seq_len": 5})).model.seq_len == 5


def test_svg_update_with_gru_differs_from_svg0_and_trains_heads():
    """One jitted SVG(2) update with a GRU and learned termination: finite, heads trained, actor moves differently from H=0."""
    model_cfg = GRUModelConfig(encoder_sizes=(16,), gru_size=16, gru_layers=1, decoder_sizes=(16,), seq_len=2, learn_reward=False, learn_termination=False)
    model = make_model(model_cfg, EnvConfig(name="toy_reach"), OBS, ACT)
    model_params = make_model_trainer(model, model_cfg).init(jax.random.PRNGKey(5)).params
    batch = random_batch(jax.random.PRNGKey(1))
    results = {}
    for horizon, mve in ((2, False), (0, False), (2, True)):
        cfg = dataclasses.replace(SMALL, horizon=horizon, critic_mve=mve)
        learner = make_svg(cfg, OBS, ACT, 1000, model=model, has_termination=True)
        state = learner.init(jax.random.PRNGKey(0))
        new, metrics = jax.jit(learner.update)(jax.random.PRNGKey(3), state, batch, 10, LearnContext(model_params, None))
        assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
        results[(horizon, mve)] = (state, new, metrics)
    state2, new2, m2 = results[(2, False)]
    assert {"learner/reward_loss", "learner/termination_loss"} <= set(m2)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state2.heads, new2.heads)
    assert min(jax.tree.leaves(moved)) > 0.0
    _, new0, m0 = results[(0, False)]
    assert "learner/reward_loss" not in m0  # SVG(0) has no model parts
    assert float(m2["learner/actor_loss"]) != pytest.approx(float(m0["learner/actor_loss"]), abs=1e-6)
    # MVE regresses the critic on model-expanded targets at real and imagined states: another critic loss.
    _, new_mve, m_mve = results[(2, True)]
    assert float(m_mve["learner/critic_loss"]) != pytest.approx(float(m2["learner/critic_loss"]), abs=1e-7)


def test_svg_trains_in_the_jitted_train_step_with_its_model():
    """SVG(2) + GRU on the toy task through build/init_state/make_train_chunk: the learner gets the model."""
    from mjxmbrl.train import build, init_state, make_train_chunk

    cfg = config_from_dict({
        "env": {"name": "toy_reach", "num_envs": 4},
        "agent": {"name": "svg", "horizon": 2, "hidden_sizes": [16, 16], "head_sizes": [16], "batch_size": 32},
        "model": {"name": "gru", "encoder_sizes": [16], "gru_size": 16, "gru_layers": 1, "decoder_sizes": [16], "batch_size": 16},
        "replay": {"capacity": 2000},
        "train": {"total_env_steps": 400, "warmup_env_steps": 80, "log_every": 200},
        "log": {"wandb": "disabled", "progress": False},
    })
    components = build(cfg)
    ts0 = init_state(components)
    heads0 = jax.tree.map(np.asarray, ts0.agent.learner.heads)
    chunk = make_train_chunk(components, 50)
    ts, metrics = chunk(ts0)
    learning = np.asarray(metrics["train/learning"])
    assert learning.sum() > 0 and np.asarray(metrics["train/model_learning"]).sum() > 0
    assert np.all(np.isfinite(np.asarray(metrics["learner/reward_loss"])))
    assert np.asarray(metrics["learner/termination_loss"])[learning > 0].min() > 0  # toy_reach terminates
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), ts.agent.learner.heads, heads0)
    assert min(jax.tree.leaves(moved)) > 0
    assert int(ts.updates) == int(learning.sum())


def test_svg_experiments_registered():
    from mjxmbrl.experiments import get_experiment

    table2 = get_experiment("svg-table2")
    assert set(table2.tasks) == {"ant", "hopper", "swimmer", "halfcheetah", "walker2d"}
    assert table2.methods == ("sac", "svg-h1", "svg-h2", "svg-h3", "svg-h4", "svg-h5", "svg-h10")
    hopper2 = table2.cell("svg-h2-hopper")
    assert hopper2.published.mean == 2851.90 and hopper2.published.std == 361.07
    assert table2.budgets["paper"].env_steps_for("swimmer") == 50_000 and table2.budgets["paper"].env_steps_for("ant") == 200_000
    sweep = get_experiment("svg-horizons-dmc")
    assert sweep.methods == ("svg-h0", "svg-h1", "svg-h2", "svg-h3", "svg-h5") and set(sweep.tasks) == {"cartpole_swingup", "reacher_easy"}
    for experiment in (table2, sweep):  # every cell builds a valid config at every budget
        from pathlib import Path

        from mjxmbrl.cli.reproduce import plan_runs

        for budget in experiment.budgets.values():
            runs = plan_runs(experiment, budget, 1, Path("/nonexistent"))
            assert len(runs) == len(experiment.cells)
            assert all(r.cfg.agent.name == "svg" for r in runs)


def _gru_parts(**agent):
    model_cfg = GRUModelConfig(encoder_sizes=(16,), gru_size=16, gru_layers=1, decoder_sizes=(16,), seq_len=3,
                               learn_reward=False, learn_termination=False)
    model = make_model(model_cfg, EnvConfig(name="toy_reach"), OBS, ACT)
    model_params = make_model_trainer(model, model_cfg).init(jax.random.PRNGKey(5)).params
    parts = make_svg(dataclasses.replace(SMALL, **agent), OBS, ACT, 1000, model=model, has_termination=False, return_parts=True)
    return parts, parts.init(jax.random.PRNGKey(0)), model_params


def test_critic_mve_gives_imagined_states_after_a_true_termination_and_invalid_transitions_weight_zero():
    parts, state, model_params = _gru_parts(horizon=3, critic_mve=True)
    batch = random_batch(jax.random.PRNGKey(1), n=3)._replace(
        terminated=jnp.array([1.0, 0.0, 0.0]), valid=jnp.array([1.0, 1.0, 0.0])
    )
    _, _, targets, weights = parts.critic_targets(state, jax.random.PRNGKey(2), batch, 0.1, model_params, None)
    assert targets.shape == weights.shape == (3 * 3,)
    # Row b holds the real transition's target, then the states imagined from its next observation.
    np.testing.assert_array_equal(np.asarray(weights).reshape(3, 3), [[1, 0, 0], [1, 1, 1], [0, 0, 0]])


def test_reward_scale_scales_the_expansion_rewards():
    """The critic regresses reward_scale * r, so the H-step expansion must sum scaled rewards too."""
    obs = random_batch(jax.random.PRNGKey(1)).obs
    losses = {}
    for horizon in (0, 2):
        for scale in (1.0, 3.0):
            parts, state, model_params = _gru_parts(horizon=horizon, reward_scale=scale)
            loss_fn = parts.actor_loss(state, obs, jax.random.PRNGKey(4), 0.1, model_params, None)
            losses[horizon, scale] = float(loss_fn(state.sac.actor_params)[0])
    assert losses[0, 1.0] == losses[0, 3.0]  # SAC's actor loss has no reward in it
    assert losses[2, 1.0] != pytest.approx(losses[2, 3.0], rel=1e-3)
