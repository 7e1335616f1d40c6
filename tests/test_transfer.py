"""Transfer of a trained run's world model and task-agnostic proposal into a fresh run (Byravan et al. 2022,
Sec. 5.3-5.4, App. F.3): config checks, bit-identical predictions after loading, frozen against fine-tuned,
layout errors, and the proposal mixture annealed over M learner steps."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmbrl.agents.base import learner_updates_at, training_progress
from mjxmbrl.cli import main
from mjxmbrl.config import load_config
from mjxmbrl.run.loop import restore_run
from mjxmbrl.train import build, init_state, make_train_chunk
from mjxmbrl.types import ConfigError

QUIET = ["log.wandb=disabled", "log.progress=false"]
# MPC + MPO + BC on the pure-JAX toy task: an MLP model and a task-agnostic proposal, small and fast.
SMALL = QUIET + [
    "env.name=toy_reach", "env.num_envs=4", "replay.capacity=4000",
    "agent.name=mpo", "agent.policy_hidden_sizes=[32,32]", "agent.critic_hidden_sizes=[32,32]",
    "agent.batch_size=8", "agent.seq_len=4", "agent.num_action_samples=4", "agent.v_max=50",
    "agent.agnostic_proposal=true", "agent.agnostic_hidden_sizes=[32,32]",
    "model.name=mlp", "model.hidden_sizes=[32]", "model.batch_size=8", "model.seq_len=2",
    "planner.name=smc", "planner.num_particles=8", "planner.horizon=2", "planner.p_plan=0.5",
    "planner.proposal=mixture", "planner.mixture_components=[agnostic,policy]",
    "planner.mixture_start=1.0", "planner.mixture_end=0.0",
    "train.total_env_steps=480", "train.warmup_env_steps=80", "train.log_every=160",
    "train.eval_every=480", "train.eval_episodes=2", "train.checkpoint_every=480",
]


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A trained MPC + MPO + BC run on toy_reach (its model and proposal have moved from their init)."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train"] + SMALL + [f"log.runs_dir={runs}", "log.run_name=source"]) == 0
    return runs / "source"


def _target(tmp_path: Path, source: Path, *overrides: str):
    args = SMALL + [f"log.runs_dir={tmp_path}", f"transfer.source_run={source}", *overrides]
    return args


def test_config_checks():
    with pytest.raises(ConfigError, match="needs transfer.source_run"):
        load_config(None, SMALL + ["transfer.model=frozen"])
    with pytest.raises(ConfigError, match="nothing is taken"):
        load_config(None, SMALL + ["transfer.source_run=somewhere"])
    with pytest.raises(ConfigError, match="model.name is 'none'"):
        load_config(None, QUIET + ["transfer.source_run=somewhere", "transfer.model=finetune"])
    with pytest.raises(ConfigError, match="has none"):
        load_config(None, QUIET + ["transfer.source_run=somewhere", "transfer.proposal=frozen"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(None, SMALL + ["transfer.source_run=somewhere", "transfer.model=thaw"])


def test_loaded_parts_predict_bit_identically_and_frozen_parts_stay_fixed(source_run, tmp_path):
    _, _, source = restore_run(source_run, seed_index=0)
    # The initial state of a transferred run (what the loop starts from) holds the source's parts.
    cfg = load_config(None, _target(tmp_path, source_run, "transfer.model=frozen", "transfer.proposal=frozen",
                                    "train.seed=5"))
    components = build(cfg)
    from mjxmbrl.run.transfer import apply_transfer

    fresh = init_state(components)
    ts = apply_transfer(cfg, fresh, restore_run, stacked=False)
    assert not leaves_equal(fresh.agent.model.params, source.agent.model.params)
    assert leaves_equal(ts.agent.model.params, source.agent.model.params)
    assert leaves_equal(ts.agent.proposal.params, source.agent.proposal.params)
    assert leaves_equal(ts.agent.learner, fresh.agent.learner)  # the learner is this run's own
    # Predictions: the model's next observation and the proposal's actions are the source's, bit for bit.
    model, agnostic_sample = components.parts.model, _agnostic(cfg, components)
    obs = jax.random.normal(jax.random.PRNGKey(3), (16, components.parts.spec.obs_size))
    action = jax.random.uniform(jax.random.PRNGKey(4), (16, components.parts.spec.action_size), minval=-1, maxval=1)
    def predict(params):
        def one(o, a):
            k = jax.random.PRNGKey(0)
            return model.observation(params, model.step(params, model.initial_state(params, o, k), a, k))

        return np.asarray(jax.jit(jax.vmap(one))(obs, action))

    np.testing.assert_array_equal(predict(ts.agent.model.params), predict(source.agent.model.params))
    assert not np.array_equal(predict(fresh.agent.model.params), predict(source.agent.model.params))
    key = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(np.asarray(agnostic_sample(ts.agent.proposal.params, obs, key)),
                                  np.asarray(agnostic_sample(source.agent.proposal.params, obs, key)))
    # Frozen: 120 vectorised steps of training (past the warm-up) leave both parts where the source left them;
    # fine-tuned: they move.
    chunk = make_train_chunk(components, 120)
    trained, metrics = chunk(ts)
    assert float(np.sum(metrics["train/learning"])) > 0
    assert leaves_equal(trained.agent.model.params, source.agent.model.params)
    assert leaves_equal(trained.agent.proposal.params, source.agent.proposal.params)
    tuned_cfg = load_config(None, _target(tmp_path, source_run, "transfer.model=finetune", "transfer.proposal=finetune"))
    tuned_components = build(tuned_cfg)
    tuned = apply_transfer(tuned_cfg, init_state(tuned_components), restore_run, stacked=False)
    tuned, _ = make_train_chunk(tuned_components, 120)(tuned)
    assert not leaves_equal(tuned.agent.model.params, source.agent.model.params)
    assert not leaves_equal(tuned.agent.proposal.params, source.agent.proposal.params)


def _agnostic(cfg, components):
    from mjxmbrl.learners.agnostic import make_agnostic_proposal

    spec, a = components.parts.spec, cfg.agent
    proposal = make_agnostic_proposal(spec.obs_size, spec.action_size, spec.task_groups, a.agnostic_hidden_sizes,
                                      a.agnostic_lr, a.min_std)
    return jax.jit(proposal.sample)


def test_train_with_transfer_through_the_cli_and_a_layout_mismatch_is_one_error(source_run, tmp_path, capsys):
    assert main(["train"] + _target(tmp_path, source_run, "transfer.model=finetune", "log.run_name=ok")) == 0
    assert (tmp_path / "ok" / "summary.json").is_file()
    # A model of another size cannot take the source's parameters: one error line, no run directory left.
    code = main(["train"] + _target(tmp_path, source_run, "transfer.model=frozen", "model.hidden_sizes=[16]",
                                    "log.run_name=bad"))
    err = capsys.readouterr().err
    assert code != 0 and "does not fit this run" in err and "Traceback" not in err
    assert main(["train"] + _target(tmp_path, tmp_path / "nowhere", "transfer.model=frozen", "log.run_name=bad2")) != 0
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.parametrize("update_every,num_envs,repeat,warmup", [(1, 4, 1, 80), (4, 4, 1, 40), (3, 2, 2, 30)])
def test_learner_updates_at_counts_the_updates_the_train_step_takes(update_every, num_envs, repeat, warmup):
    cfg = load_config(None, QUIET + [
        "env.name=toy_reach", f"env.num_envs={num_envs}", f"env.action_repeat={repeat}", "replay.capacity=4000",
        "agent.batch_size=8", "agent.hidden_sizes=[16,16]", f"train.warmup_env_steps={warmup}",
        f"train.update_every={update_every}", "train.updates_per_step=2", "train.log_every=240",
    ])
    components = build(cfg)
    steps = 240 // (num_envs * repeat)
    ts, metrics = make_train_chunk(components, steps)(init_state(components))
    counted = np.cumsum(np.asarray(metrics["train/learning"]) * 2)
    env_steps = np.arange(1, steps + 1) * num_envs * repeat
    predicted = [int(learner_updates_at(cfg, jnp.asarray(e))) for e in env_steps]
    np.testing.assert_array_equal(predicted, counted)
    assert int(ts.updates) == predicted[-1] > 0


def test_mixture_weight_over_m_learner_steps():
    m = 100
    cfg = load_config(None, SMALL + [f"planner.mixture_learner_steps={m}", "train.warmup_env_steps=0",
                                     "env.num_envs=1", "train.updates_per_step=1"])
    # One update per env step from the first: after e env steps, e learner updates.
    progress = [float(training_progress(cfg, jnp.asarray(e))) for e in (0, m // 2, m, 3 * m)]
    assert progress == [0.0, 0.5, 1.0, 1.0]
    w_start, w_end = cfg.planner.mixture_start, cfg.planner.mixture_end
    weights = [w_start + (w_end - w_start) * p for p in progress]
    assert weights == [1.0, 0.5, 0.0, 0.0]  # App. F.3: from the agnostic proposal (1) to the policy (0)
    whole_run = load_config(None, SMALL)
    assert float(training_progress(whole_run, jnp.asarray(240))) == 0.5  # 0: over the run's env steps
    with pytest.raises(ConfigError, match="mixture_learner_steps"):
        load_config(None, SMALL + ["planner.mixture_learner_steps=-1"])


def test_actor_samples_the_mixture_proposal_with_act_from_proposal():
    """Byravan Sec. 5.4: at the start the actor samples the reloaded proposal only (the policy does not matter and
    the step is flagged for the off-policy traces); once the weight reaches 0, it samples the policy again."""
    from mjxmbrl.agents import EXPLORE

    cfg = load_config(None, SMALL + ["planner.p_plan=0.0", "planner.act_from=proposal", "planner.mixture_learner_steps=50",
                                     "train.warmup_env_steps=0", "train.updates_per_step=1"])
    components = build(cfg)
    agent, ts = components.agent, init_state(components)
    other_policy = ts.agent.replace(learner=agent.init(jax.random.PRNGKey(42)).learner)
    key = jax.random.PRNGKey(3)

    def act(state, env_steps):
        action, _, extras, _ = jax.jit(agent.act, static_argnums=5)(key, state, ts.carry, ts.env_state,
                                                                     jnp.asarray(env_steps, jnp.int32), EXPLORE)
        return np.asarray(action), np.asarray(extras["planned"])

    start, start_other = act(ts.agent, 0), act(other_policy, 0)
    np.testing.assert_array_equal(start[0], start_other[0])  # weight 1: the agnostic proposal alone
    assert start[1].min() == 1.0  # flagged: not the policy's density
    late, late_other = act(ts.agent, 4 * 1000), act(other_policy, 4 * 1000)  # far past M = 50 updates: weight 0
    assert not np.array_equal(late[0], late_other[0]) and late[1].max() == 0.0
    policy_cfg = load_config(None, SMALL + ["planner.p_plan=0.0", "train.warmup_env_steps=0"])
    assert policy_cfg.planner.act_from == "policy"
    with pytest.raises(ConfigError, match="act_from"):
        load_config(None, SMALL + ["planner.act_from=planner"])
