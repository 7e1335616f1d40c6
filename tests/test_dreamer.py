"""Dreamer (Hafner et al. 2020, arXiv:1912.01603) and Policy+Grad-MPC (S V et al. 2023, arXiv:2312.17227, Sec. 6):
dynamics backpropagation into the actor only, the lambda-return targets, training end to end with both evaluation
modes, planning from the actor and value on the latent, and the config errors."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mjxmbrl.agents import EVAL, POLICY
from mjxmbrl.agents.dreamer import DreamerConfig
from mjxmbrl.config import load_config
from mjxmbrl.learners.dreamer import latent_features, make_behaviour, posterior_states
from mjxmbrl.models.rssm import RSSMModelConfig, make_rssm_model
from mjxmbrl.planners import PlanParams, make_planner
from mjxmbrl.planners.proposals import head_policy_proposal
from mjxmbrl.run.logging import read_metrics
from mjxmbrl.train import build, init_state
from mjxmbrl.types import ConfigError, Transition

OBS, ACT, N, H = 3, 2, 6, 4
SMALL_RSSM = dataclasses.replace(RSSMModelConfig(), belief_size=8, state_size=4, hidden_size=8, embedding_size=8)
SMALL = DreamerConfig(actor_hidden_sizes=(16,), value_hidden_sizes=(16,), imagine_horizon=H, discount=0.9, return_lambda=0.7)
QUIET = ["log.wandb=disabled", "log.progress=false"]
TINY = QUIET + [
    "agent.name=dreamer", "env.name=toy_reach", "env.num_envs=4", "env.action_repeat=1", "replay.capacity=2000",
    "model.belief_size=8", "model.state_size=4", "model.hidden_size=8", "model.embedding_size=8",
    "model.batch_size=4", "model.seq_len=4", "agent.batch_size=4", "agent.seq_len=4", f"agent.imagine_horizon={H}",
    "agent.actor_hidden_sizes=[16]", "agent.value_hidden_sizes=[16]",
]
PLAN = ["planner.name=grad", "planner.init=policy", "planner.proposal=policy", "planner.value=dreamer",
        "planner.reward=model", "planner.discount=0.99", "planner.horizon=1", "planner.num_candidates=1",
        "planner.iterations=2", "planner.warm_start=false"]


def tree_norm(tree) -> float:
    return float(optax.tree.norm(tree))


@pytest.fixture(scope="module")
def small():
    """A tiny RSSM, its params, the behaviour (actor, value) and N start latents one filter step into an episode."""
    model = make_rssm_model(SMALL_RSSM, OBS, ACT)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    behaviour = make_behaviour(model, 8 + 4, ACT, SMALL)
    state = jax.jit(behaviour.init)(jax.random.PRNGKey(1))
    k_obs, k_act, k_init = jax.random.split(jax.random.PRNGKey(2), 3)
    obs = jax.random.normal(k_obs, (2, N, OBS))
    actions = jax.random.uniform(k_act, (N, ACT), minval=-1, maxval=1)
    keys = jax.random.split(k_init, N)
    z0 = jax.jit(jax.vmap(model.initial_state, (None, 0, 0)))(params, obs[0], keys)
    starts = jax.jit(jax.vmap(model.filter, (None, 0, 0, 0, 0)))(params, z0, actions, obs[1], keys)
    return model, params, behaviour, state, starts


def test_the_actor_gradient_flows_through_the_model_into_the_actor_alone(small):
    model, params, behaviour, state, starts = small
    weights, key = jnp.ones((N,)), jax.random.PRNGKey(3)

    def loss_of(b):
        return lambda actor, model_params: b.actor_loss(actor, state.value, model_params, starts, weights, key)[0]

    loss, (actor_grad, model_grad) = jax.value_and_grad(loss_of(behaviour), argnums=(0, 1))(state.actor, params)
    assert tree_norm(actor_grad) > 1e-6
    # The model is a constant of the behaviour losses: not even a gradient reaches its parameters.
    assert tree_norm(model_grad["net"]) == 0.0

    # The same loss with the imagined states cut from the graph after every model step: same value, but no
    # path from an action to the rewards and values it leads to, so the actor learns nothing (RSSM rewards
    # and values read the state alone). The dynamics path is the whole actor gradient.
    cut = model._replace(step=lambda p, z, a, k: jax.lax.stop_gradient(model.step(p, z, a, k)))
    cut_loss, (cut_grad, _) = jax.value_and_grad(loss_of(make_behaviour(cut, 12, ACT, SMALL)), argnums=(0, 1))(
        state.actor, params
    )
    np.testing.assert_allclose(float(cut_loss), float(loss), rtol=1e-5)
    assert tree_norm(cut_grad) < 1e-3 * tree_norm(actor_grad)


def test_a_behaviour_update_trains_actor_and_value_and_leaves_the_model_alone(small):
    model, params, behaviour, state, starts = small
    new, metrics = jax.jit(behaviour.update)(jax.random.PRNGKey(4), state, params, starts, jnp.ones((N,)))
    assert tree_norm(jax.tree.map(jnp.subtract, new.actor, state.actor)) > 0
    assert tree_norm(jax.tree.map(jnp.subtract, new.value, state.value)) > 0
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics

    # Through the agent: with the model's own updates off, a learn step that takes behaviour updates returns
    # the model's parameters bit for bit.
    cfg = load_config(None, TINY + ["model.updates_per_step=0", "train.warmup_env_steps=0"])
    components = build(cfg)
    ts = init_state(components)
    replay_state = ts.replay
    for t in range(6):
        k = jax.random.PRNGKey(10 + t)
        obs = jax.random.normal(k, (4, 6))
        replay_state = components.replay.insert(replay_state, Transition(
            obs=obs, action=jnp.full((4, 2), 0.5), reward=jnp.ones((4,)), next_obs=obs + 0.1,
            terminated=jnp.zeros((4,)), truncated=jnp.zeros((4,)), valid=jnp.ones((4,)), extras={}))
    agent_state, metrics = jax.jit(components.agent.learn)(jax.random.PRNGKey(5), ts.agent, replay_state, jnp.asarray(40))
    assert float(metrics["train/learning"]) == 1.0 and int(metrics["train/updates"]) == 1
    assert tree_norm(jax.tree.map(jnp.subtract, agent_state.behaviour.actor, ts.agent.behaviour.actor)) > 0
    jax.tree.map(np.testing.assert_array_equal, agent_state.model.params, ts.agent.model.params)


def lambda_return_reference(rewards, values, gamma, lam):
    """Eqs. 12-13 of S V et al. (Dreamer's Eqs. 4-6) as written, for one trajectory of H steps:
    V_N^k(s_t) = sum_{n=t}^{h-1} gamma^(n-t) r_n + gamma^(h-t) v(s_h), h = min(t + k, H), and
    V_lambda(s_t) = (1 - lam) sum_{n=1}^{K-1} lam^(n-1) V_N^n(s_t) + lam^(K-1) V_N^K(s_t), K = H - t steps left.
    rewards[n] is r_n of the step s_n -> s_{n+1}; values[h] = v(s_h), h = 0..H."""
    horizon = len(rewards)

    def n_step(t, k):
        h = min(t + k, horizon)
        return sum(gamma ** (n - t) * rewards[n] for n in range(t, h)) + gamma ** (h - t) * values[h]

    out = []
    for t in range(horizon):
        left = horizon - t
        mix = (1 - lam) * sum(lam ** (n - 1) * n_step(t, n) for n in range(1, left))
        out.append(mix + lam ** (left - 1) * n_step(t, left))
    return np.array(out)


def test_value_targets_are_the_lambda_returns_of_eq_12_13(small):
    model, params, behaviour, state, starts = small
    weights = jnp.array([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])  # start 2 masked out (another episode)
    loss, (imagined, returns) = behaviour.actor_loss(state.actor, state.value, params, starts, weights, jax.random.PRNGKey(6))
    features = jax.vmap(jax.vmap(latent_features))(imagined.states)  # [H+1, N, F]
    values = np.asarray(behaviour.value(state.value, features))
    rewards = np.asarray(imagined.rewards)
    assert rewards.shape == (H, N) and np.abs(rewards).max() > 0
    expected = np.stack([lambda_return_reference(rewards[:, i], values[:, i], 0.9, 0.7) for i in range(N)], axis=1)
    np.testing.assert_allclose(np.asarray(returns), expected, rtol=1e-5, atol=1e-6)
    # Actor loss: minus the mean of gamma^t-weighted returns over the valid starts and H steps.
    w = (0.9 ** np.arange(H))[:, None] * np.asarray(weights)[None, :]
    np.testing.assert_allclose(float(loss), -(w * expected).sum() / (H * 5), rtol=1e-5)
    # Value loss regresses v(s_t), t = 0..H-1, on the same targets with the same weights.
    value_loss = behaviour.value_loss(state.value, imagined, returns, weights)
    np.testing.assert_allclose(float(value_loss), (w * 0.5 * (values[:-1] - expected) ** 2).sum() / (H * 5), rtol=1e-5)


def test_start_states_are_the_model_filter_over_each_window(small):
    model, params, _, _, _ = small
    k_obs, k_act = jax.random.split(jax.random.PRNGKey(7))
    obs = jax.random.normal(k_obs, (2, 4, OBS))
    batch = Transition(obs=obs, action=jax.random.uniform(k_act, (2, 4, ACT)), reward=jnp.zeros((2, 4)),
                       next_obs=jnp.roll(obs, -1, axis=1), terminated=jnp.zeros((2, 4)), truncated=jnp.zeros((2, 4)))
    mask = jnp.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    det = make_rssm_model(dataclasses.replace(SMALL_RSSM, rollout="mean"), OBS, ACT)  # deterministic filter
    states, weights = jax.jit(lambda p, b, m, k: posterior_states(det, p, b, m, k))(params, batch, mask, jax.random.PRNGKey(8))
    assert states["h"].shape == (8, 8) and weights.tolist() == mask.reshape(-1).tolist()
    z = det.initial_state(params, batch.obs[1, 0], None)
    for t in range(1, 4):  # window 1, step t: filtered through transitions 0..t-1
        z = det.filter(params, z, batch.action[1, t - 1], batch.next_obs[1, t - 1], None)
        np.testing.assert_allclose(np.asarray(states["h"][4 + t]), np.asarray(z["h"]), rtol=1e-5, atol=1e-6)


def test_policy_grad_mpc_plans_from_the_actor_and_value_on_the_latent():
    cfg = load_config(None, TINY + PLAN + ["model.rollout=mean", "planner.iterations=1", "planner.learning_rate=1e-9"])
    components = build(cfg)
    agent, model = components.agent, components.parts.model
    assert agent.eval_modes == (EVAL, POLICY) and agent.policy_params(None) is None
    ts = init_state(components)
    key, steps = jax.random.PRNGKey(9), jnp.asarray(100)
    planned, carry, _, metrics = jax.jit(agent.act, static_argnums=5)(key, ts.agent, ts.carry, ts.env_state, steps, EVAL)
    policy, policy_carry, _, _ = jax.jit(agent.act, static_argnums=5)(key, ts.agent, ts.carry, ts.env_state, steps, POLICY)
    # One step of size 1e-9 from the actor's mode: the plan starts from the pure policy's action.
    np.testing.assert_allclose(np.asarray(planned), np.asarray(policy), atol=1e-6)
    assert np.abs(np.asarray(policy)).max() > 1e-3 and "planner/return_max" in metrics
    np.testing.assert_allclose(np.asarray(carry["belief"]["h"]), np.asarray(policy_carry["belief"]["h"]), atol=1e-6)

    # The rollout core's heads read the latent's features: the terminal value is the Dreamer value of [h, s].
    behaviour = make_behaviour(model, 12, 2, cfg.agent)
    core = make_planner(cfg.planner, model, cfg.env, 6, 2, value_fn=lambda vp, x, k: behaviour.value(vp, x),
                        policy=head_policy_proposal(behaviour.policy, True), head_features=latent_features)[1]
    pp = PlanParams(model=ts.agent.model.params, policy=ts.agent.behaviour.actor, value=ts.agent.behaviour.value)
    z = jax.tree.map(lambda x: x + 0.3, carry["belief"])
    x = jnp.concatenate([z["h"], z["s"]], axis=-1)
    np.testing.assert_allclose(np.asarray(core.observe(pp, z)), np.asarray(x))
    np.testing.assert_allclose(np.asarray(core.value(pp, z, key)), np.asarray(behaviour.value(pp.value, x)), rtol=1e-6)

    # With real steps the gradient of r + gamma v(s_1) moves the plan away from the actor's action.
    moved = load_config(None, TINY + PLAN + ["model.rollout=mean", "planner.iterations=3", "planner.learning_rate=0.1"])
    planned, _, _, _ = build(moved).agent.act(key, ts.agent, ts.carry, ts.env_state, steps, EVAL)
    assert np.abs(np.asarray(planned) - np.asarray(policy)).max() > 0.05


def test_dreamer_with_the_planner_trains_end_to_end_and_logs_both_evaluations(tmp_path):
    from mjxmbrl.cli import main

    code = main(["train", "configs/gradmpc/policy_gradmpc_cartpole_swingup_sparse.yaml", *TINY,
                 "train.total_env_steps=160", "train.warmup_env_steps=32", "train.update_every=2", "train.log_every=80",
                 "train.eval_every=80", "train.eval_episodes=2", "train.checkpoint_every=160",
                 f"log.runs_dir={tmp_path}", "log.run_name=dreamer"])
    assert code == 0
    run = tmp_path / "dreamer"
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["env_steps"] for r in rows] == [80, 160]
    for row in rows:
        assert np.isfinite(row["eval/return"]) and np.isfinite(row["eval/policy_return"]), row
        assert np.isfinite(row["learner/actor_loss"]) and np.isfinite(row["learner/value_loss"]), row
        assert np.isfinite(row["model/loss"]) and row["train/params_finite"], row
    assert json.loads((run / "summary.json").read_text())["final_eval_return"] == rows[-1]["eval/return"]
    assert not (run / "policy").exists()  # the actor reads the latent: no observation policy to export


def test_dreamer_without_a_planner_evaluates_its_actor_alone():
    cfg = load_config("configs/gradmpc/dreamer_cartpole_swingup.yaml", QUIET)
    assert cfg.planner.name == "none" and cfg.agent.imagine_horizon == 15 and cfg.env.action_repeat == 8
    assert build(load_config(None, TINY)).agent.eval_modes == (EVAL,)


@pytest.mark.parametrize("model", ["mlp", "oracle", "gru"])
def test_dreamer_needs_a_learned_latent_model(model):
    with pytest.raises(ConfigError, match="agent dreamer learns its behaviour in the latent state"):
        load_config(None, ["agent.name=dreamer", "env.name=CartpoleSwingup", f"model.name={model}"])


def test_dreamer_planner_settings_are_checked():
    with pytest.raises(ConfigError, match="planner.reward=model"):
        load_config(None, TINY + PLAN + ["planner.reward=known"])
    with pytest.raises(ConfigError, match="must equal agent.discount"):
        load_config(None, TINY + PLAN + ["planner.discount=0.9"])
    with pytest.raises(ConfigError, match="needs agent dreamer"):
        load_config(None, ["env.name=CartpoleSwingup", "model.name=rssm", "planner.name=grad", "planner.value=dreamer",
                           "planner.reward=model"])
