"""The MPO (+ BC) agent of Byravan et al. 2022 in the loop: acting stores the behaviour log-probabilities,
the rate limit, the task-agnostic proposal, planning with p_plan, and training through the CLI."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmbrl.agents import EXPLORE
from mjxmbrl.cli import main
from mjxmbrl.config import load_config
from mjxmbrl.learners.agnostic import make_agnostic_proposal, proprio_index
from mjxmbrl.learners.mpo import make_mpo
from mjxmbrl.run.logging import read_metrics
from mjxmbrl.train import build, init_state, make_train_chunk
from mjxmbrl.types import ConfigError

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["log.wandb=disabled", "log.progress=false"]
SMALL_MPO = [
    "env.name=toy_reach", "env.num_envs=4", "replay.capacity=4000",
    "agent.name=mpo", "agent.policy_hidden_sizes=[32,32]", "agent.critic_hidden_sizes=[32,32]",
    "agent.batch_size=8", "agent.seq_len=4", "agent.num_action_samples=4", "agent.v_max=50",
]
SMALL_MPC = [
    "model.name=mlp", "model.hidden_sizes=[32]", "model.batch_size=8", "model.seq_len=2",
    "planner.name=smc", "planner.num_particles=8", "planner.horizon=2", "planner.proposal=policy", "planner.p_plan=0.5",
]


def test_acting_stores_the_behaviour_log_prob_of_the_executed_action_and_the_uniform_density_in_warmup():
    cfg = load_config(None, QUIET + SMALL_MPO + SMALL_MPC + ["train.warmup_env_steps=8"])
    components = build(cfg)
    agent, ts = components.agent, init_state(components)
    assert set(agent.extras_spec) == {"planned", "behaviour_log_prob"}
    key = jax.random.PRNGKey(1)
    spec = components.parts.spec
    learner = make_mpo(cfg.agent, spec.obs_size, spec.action_size, cfg.train.total_env_steps, action_repeat=1)
    action, _, extras, metrics = agent.act(key, ts.agent, ts.carry, ts.env_state, jnp.asarray(100, jnp.int32), EXPLORE)
    expected = learner.log_prob(ts.agent.learner.policy_params, ts.env_state.obs, action)
    np.testing.assert_allclose(np.asarray(extras["behaviour_log_prob"]), np.asarray(expected), rtol=1e-6)
    assert float(metrics["train/planned_fraction"]) == float(extras["planned"].mean())
    _, _, warm, _ = agent.act(key, ts.agent, ts.carry, ts.env_state, jnp.asarray(0, jnp.int32), EXPLORE)
    np.testing.assert_allclose(np.asarray(warm["behaviour_log_prob"]), -2 * np.log(2.0), rtol=1e-6)
    assert float(warm["planned"].sum()) == 0.0  # nothing planned is executed during the warm-up


@pytest.mark.parametrize("update_every", [1, 4])
def test_the_rate_limit_takes_one_update_every_k_vectorised_steps(update_every):
    cfg = load_config(None, QUIET + SMALL_MPO + [
        "train.warmup_env_steps=40", "train.log_every=160", f"train.update_every={update_every}",
    ])
    components = build(cfg)
    chunk = make_train_chunk(components, 40)  # 40 vectorised steps of 4 envs: env steps 4 .. 160
    ts, metrics = chunk(init_state(components))
    learning = np.asarray(metrics["train/learning"])
    # Steps with env_steps >= 40 learn (30 of them); with the limit only those whose step index is a multiple of k.
    steps = np.arange(1, 41)
    expected = (steps * 4 >= 40) & (steps % update_every == 0)
    np.testing.assert_array_equal(learning > 0, expected)
    assert int(ts.updates) == int(expected.sum())
    assert int(ts.agent.learner.steps) == int(expected.sum())


def test_the_task_agnostic_proposal_reads_only_proprioceptive_inputs_and_learns_by_bc():
    from mjxmbrl.envs.registry import get_spec

    spec = get_spec("ReacherEasy")  # position [0:2], to_target [2:4] (task), velocity [4:6]
    assert proprio_index(spec.obs_size, spec.task_groups) == (0, 1, 4, 5)
    proposal = make_agnostic_proposal(spec.obs_size, spec.action_size, spec.task_groups, (32, 32), lr=1e-2)
    state = proposal.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, spec.obs_size))
    moved_target = obs.at[:, 2:4].set(5.0)
    key = jax.random.PRNGKey(2)
    np.testing.assert_array_equal(np.asarray(proposal.sample(state.params, obs, key)),
                                  np.asarray(proposal.sample(state.params, moved_target, key)))
    actions = jnp.tanh(obs[:, :2] - obs[:, 4:6])  # a function of proprioception it can clone
    weights = jnp.ones((64,))
    losses = []
    for _ in range(200):
        state, m = proposal.update(state, obs, actions, weights)
        losses.append(float(m["learner/agnostic_bc_loss"]))
    assert losses[-1] < losses[0] - 1.0
    error = np.abs(np.asarray(proposal.mean(state.params, obs)) - np.asarray(actions)).mean()
    assert error < 0.1


def test_an_agnostic_proposal_in_the_planner_needs_one_trained():
    with pytest.raises(ConfigError, match="agnostic_proposal"):
        load_config(None, SMALL_MPO + SMALL_MPC + ["planner.proposal=agnostic"])
    with pytest.raises(ConfigError, match="agnostic_proposal"):
        load_config(None, SMALL_MPO + SMALL_MPC + ["planner.proposal=mixture", "planner.mixture_components=[agnostic,policy]"])
    cfg = load_config(None, SMALL_MPO + SMALL_MPC + ["planner.proposal=agnostic", "agent.agnostic_proposal=true"])
    assert cfg.planner.proposal == "agnostic"


def test_mpc_mpo_bc_trains_through_the_cli_and_reports_actor_and_policy(tmp_path):
    args = ["train", str(ROOT / "configs/byravan/cartpole_swingup_mpc_mpo_bc.yaml"),
            "env.name=toy_reach", "env.action_repeat=1", "env.num_envs=4", *SMALL_MPO[2:], *SMALL_MPC[:4],
            "planner.num_particles=8", "planner.horizon=2", "agent.agnostic_proposal=true",
            "planner.proposal=mixture", "planner.mixture_components=[agnostic,policy]",
            "train.total_env_steps=800", "train.warmup_env_steps=200", "train.log_every=200", "train.eval_every=400",
            "train.eval_episodes=2", "train.checkpoint_every=800", f"log.runs_dir={tmp_path}", "log.run_name=run", *QUIET]
    assert main(args) == 0
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    evals = [r for r in rows if "eval/return" in r]
    assert len(evals) == 2 and all("eval/policy_return" in r for r in evals)
    last = rows[-1]
    for key in ("learner/critic_loss", "learner/kl_mean", "learner/bc_loss", "learner/temperature",
                "learner/agnostic_bc_loss", "model/loss", "planner/ess"):
        assert np.isfinite(last[key]), key
    assert 0.2 < last["train/planned_fraction"] < 0.8
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["finished"]


def test_bad_mpo_settings_are_config_errors():
    with pytest.raises(ConfigError, match="mpo_weight"):
        load_config(None, SMALL_MPO + ["agent.mpo_weight=0", "agent.bc_weight=0"])
    with pytest.raises(ConfigError, match="v_max"):
        load_config(None, SMALL_MPO + ["agent.v_min=10", "agent.v_max=5"])
    with pytest.raises(ConfigError, match="update_every"):
        load_config(None, SMALL_MPO + ["train.update_every=0"])
