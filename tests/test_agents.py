"""The Agent interface: methods registered from a test file alone train end to end; planning in the loop;
MPC-only agents evaluated in training; invalid (NaN) transitions; the layers' import and length rules."""

import ast
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from mjxmbrl.agents import AGENTS, EVAL, EXPLORE, POLICY, Agent
from mjxmbrl.agents.base import root_streams
from mjxmbrl.agents.parts import make_model_learning, make_planning_actor
from mjxmbrl.config import load_config
from mjxmbrl.envs import VectorEnv, make_env
from mjxmbrl.ops import gradient_step
from mjxmbrl.planners import PLANNERS, Planner, PlannerConfig, PlanParams
from mjxmbrl.planners.base import check_planner_common, clip_actions
from mjxmbrl.run.chunks import summarize_chunk
from mjxmbrl.run.logging import read_metrics
from mjxmbrl.run.loop import train
from mjxmbrl.train import build, init_state, make_train_chunk
from mjxmbrl.types import ConfigError, valid_weights

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["log.wandb=disabled", "log.progress=false"]


# ---- a planner and an agent that exist only in this file ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class RandomShootingConfig(PlannerConfig):
    """Random shooting: the first action of the best of N uniform action sequences."""

    name: str = "random_shooting"
    num_samples: int = 32


def make_random_shooting(cfg, core, proposal, action_size) -> Planner:
    def init(key):
        return {"calls": jnp.zeros((), jnp.int32)}

    def plan(key, planner_state, obs, belief, pp, progress=0.0):
        k_init, k_seq, k_score = jax.random.split(key, 3)
        z0 = core.initial_particles(pp, obs, k_init, cfg.num_samples, belief)
        actions = clip_actions(jax.random.uniform(k_seq, (cfg.num_samples, cfg.horizon, action_size), minval=-1, maxval=1))
        returns = core.score(pp, z0, actions, k_score)
        best = jnp.argmax(returns)
        return actions[best, 0], {"calls": planner_state["calls"] + 1}, {"planner/return_max": returns[best]}

    return Planner(init=init, plan=plan)


@dataclasses.dataclass(frozen=True)
class LinearBCConfig:
    """A linear policy cloned from the planner's executed actions (a miniature of Byravan et al.'s BC)."""

    name: str = "linear_bc"
    batch_size: int = 32
    learning_rate: float = 1e-2


@struct.dataclass
class LinearBCState:
    policy: dict
    opt_state: object
    model: object


def make_linear_bc(cfg, parts) -> Agent:
    spec, replay = parts.spec, parts.replay
    opt = optax.adam(cfg.agent.learning_rate)
    planner = PLANNERS.get(cfg.planner.name).make(
        cfg.planner, *_core_and_proposal(cfg, parts), spec.action_size
    )
    planning = make_planning_actor(planner, parts.model, spec.obs_size)
    learn_model = make_model_learning(parts.model_trainer, cfg.model, replay, cfg.env.num_envs, cfg.train.warmup_env_steps)

    def policy(params, obs, key, deterministic):
        return jnp.tanh(obs @ params["w"] + params["b"])

    def init(root_key):
        learner_key, model_key = root_streams(root_key)
        params = {"w": 0.01 * jax.random.normal(learner_key, (spec.obs_size, spec.action_size)), "b": jnp.zeros(spec.action_size)}
        return LinearBCState(params, opt.init(params), parts.model_trainer.init(model_key))

    def act(key, state, carry, env_state, env_steps, mode):
        if mode == POLICY:
            return policy(state.policy, env_state.obs, key, True), carry, {"planned": jnp.zeros(env_state.obs.shape[:1])}, {}
        action, carry, planner_state, metrics = planning.plan(key, carry, env_state, PlanParams(model=state.model.params), 0.0)
        executed = jnp.broadcast_to(env_steps >= cfg.train.warmup_env_steps, action.shape[:1])
        return action, planning.keep(carry, planner_state, executed), {"planned": executed.astype(jnp.float32)}, metrics

    def learn(key, state, replay_state, env_steps):
        batch = replay.sample(key, replay_state, cfg.agent.batch_size)
        weights = batch.extras["planned"] * valid_weights(batch)

        def bc_loss(params):
            err = jnp.sum(jnp.square(policy(params, batch.obs, None, True) - batch.action), -1)
            return jnp.sum(weights * err) / jnp.maximum(jnp.sum(weights), 1.0)

        step = gradient_step(bc_loss, opt, state.policy, state.opt_state)
        model_state, model_metrics, ready = learn_model(jax.random.fold_in(key, 1), state.model, replay_state, env_steps)
        state = state.replace(policy=step.params, opt_state=step.opt_state, model=model_state)
        return state, {"learner/bc_loss": step.loss, "train/learning": jnp.ones(()), "train/model_learning": ready.astype(jnp.float32),
                       "train/updates": jnp.ones((), jnp.int32), **model_metrics}

    return Agent(
        init=init, init_carry=planning.init_carry, act=act, observe=lambda state, tr: state, learn=learn,
        policy_params=lambda state: state.policy, policy=policy, obs_stats=lambda state: None,
        extras_spec={"planned": jax.ShapeDtypeStruct((), jnp.float32)}, eval_modes=(EVAL, POLICY),
    )


def _core_and_proposal(cfg, parts):
    from mjxmbrl.planners import make_proposal, make_rollout_core

    core = make_rollout_core(parts.model, cfg.planner.discount, parts.spec.reward_fn, float(cfg.env.action_repeat))
    return core, make_proposal(cfg.planner, parts.spec.action_size, None, False)


@pytest.fixture
def registered():
    PLANNERS.register("random_shooting", RandomShootingConfig, make_random_shooting, check=check_planner_common)
    AGENTS.register("linear_bc", LinearBCConfig, make_linear_bc)
    yield
    PLANNERS.unregister("random_shooting")
    AGENTS.unregister("linear_bc")


TOY_MODEL = ["model.name=mlp", "model.hidden_sizes=[32]", "model.batch_size=32", "model.seq_len=2"]


def test_a_planner_and_an_agent_registered_here_train_end_to_end(tmp_path, registered):
    cfg = load_config(None, QUIET + TOY_MODEL + [
        "env.name=toy_reach", "env.num_envs=8", "replay.capacity=10000",
        "agent.name=linear_bc", "planner.name=random_shooting", "planner.horizon=3", "planner.num_samples=16",
        f"log.runs_dir={tmp_path}", "log.run_name=mine", "train.total_env_steps=1600", "train.warmup_env_steps=160",
        "train.log_every=400", "train.eval_every=800", "train.eval_episodes=4",
    ])
    assert isinstance(cfg.agent, LinearBCConfig) and isinstance(cfg.planner, RandomShootingConfig)
    run = train(cfg)
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["env_steps"] for r in rows] == [400, 800, 1200, 1600]
    evals = [r for r in rows if "eval/return" in r]
    assert len(evals) == 2 and all("eval/policy_return" in r for r in evals)
    assert all(np.isfinite(r["learner/bc_loss"]) and np.isfinite(r["planner/return_max"]) for r in rows)
    assert rows[-1]["model/loss"] < rows[0]["model/loss"]  # the world model learned in the same step
    # Predicting 0 for the planner's actions (uniform first actions, refined by scoring) costs about 2/3.
    assert rows[-1]["learner/bc_loss"] < 0.6
    assert json.loads((run / "summary.json").read_text())["final_eval_return"] == evals[-1]["eval/return"]
    assert (run / "policy").is_dir()


def test_registered_names_are_validated_and_suggested(registered):
    with pytest.raises(ConfigError, match="did you mean 'random_shooting'"):
        load_config(ROOT / "configs/debug.yaml", ["planner.name=random_shootin"])
    with pytest.raises(ConfigError, match="unknown config key 'planner.num_particles'"):
        load_config(ROOT / "configs/debug.yaml", TOY_MODEL + ["planner.name=random_shooting", "planner.num_particles=3"])


# ---- planning in the loop -------------------------------------------------------------------------------


def _counting_planner():
    """A planner whose state counts the calls since its last reset and which returns that count as its action."""

    def init(key):
        return {"calls": jnp.zeros((), jnp.float32)}

    def plan(key, planner_state, obs, belief, pp, progress=0.0):
        calls = planner_state["calls"] + 1.0
        return jnp.full((2,), calls), {"calls": calls}, {"planner/calls": calls}

    return Planner(init=init, plan=plan)


def test_planner_warm_start_resets_at_episode_start_and_where_not_executed():
    from mjxmbrl.models.base import Model

    model = Model("obs", None, None, None, None, None, None, None, None)
    actor = make_planning_actor(_counting_planner(), model, obs_size=6)
    env = VectorEnv(make_env("toy_reach"), 3, episode_length=2)
    state = env.reset(jax.random.PRNGKey(0))
    carry = actor.init_carry(jax.random.PRNGKey(1), 3)
    executed = jnp.array([True, False, True])
    calls = []
    for t in range(4):
        action, carry, planner_state, _ = actor.plan(jax.random.PRNGKey(t), carry, state, PlanParams(model={}), 0.0)
        carry = actor.keep(carry, planner_state, executed)
        calls.append(np.asarray(action[:, 0]).tolist())
        state = env.step(state, jnp.zeros((3, 2)))
    # Env 1's plans are never executed: it restarts every step. Envs 0 and 2 warm-start until the episode
    # (2 steps) ends, then restart.
    assert calls == [[1, 1, 1], [2, 1, 2], [1, 1, 1], [2, 1, 2]]


def test_p_plan_zero_acts_with_the_learned_policy_and_warmup_plans_nothing():
    """Alg. 1 (Byravan et al.): not planning means acting with pi_theta, not with the planner's proposal."""
    cfg = load_config(ROOT / "configs/debug.yaml", QUIET + TOY_MODEL + [
        "planner.name=cem", "planner.num_samples=8", "planner.iterations=1", "planner.horizon=2", "planner.p_plan=0.0",
        "train.warmup_env_steps=8",
    ])
    components = build(cfg)
    ts = init_state(components)
    agent = components.agent
    key = jax.random.PRNGKey(3)
    action, _, extras, _ = agent.act(key, ts.agent, ts.carry, ts.env_state, jnp.asarray(100, jnp.int32), EXPLORE)
    no_plan = load_config(ROOT / "configs/debug.yaml", QUIET + TOY_MODEL)
    policy_agent = build(no_plan).agent
    expected, _, _, _ = policy_agent.act(key, ts.agent, {}, ts.env_state, jnp.asarray(100, jnp.int32), EXPLORE)
    np.testing.assert_array_equal(np.asarray(action), np.asarray(expected))
    assert float(extras["planned"].sum()) == 0.0


# ---- an expert planning on the simulator while a learned model is fitted (planner.through=oracle) ---------


EXPERT = QUIET + [
    "env.name=CartpoleSwingup", "env.action_repeat=4", "env.episode_length=40", "env.num_envs=2",
    "agent.name=sac", "agent.hidden_sizes=[32,32]", "agent.batch_size=8",
    "planner.name=mppi", "planner.horizon=4", "planner.num_samples=16", "planner.p_plan=1.0",
    "train.warmup_env_steps=40", "replay.capacity=1000",
]
MLP = ["model.name=mlp", "model.hidden_sizes=[32]", "model.batch_size=8", "model.seq_len=2"]


def test_planning_through_the_simulator_acts_as_the_oracle_and_fits_the_learned_model():
    """Byravan et al. 2022 Sec. 5.1's pre-trained model is fitted on a successful agent's data: with
    planner.through=oracle the planner rolls out the simulator (the same action as an agent with
    model.name=oracle, not the untrained MLP's), while the run's MLP learns from the replay."""
    expert = build(load_config(None, EXPERT + MLP + ["planner.through=oracle"]))
    oracle = build(load_config(None, EXPERT + ["model.name=oracle"]))
    learned = build(load_config(None, EXPERT + MLP))
    key, steps = jax.random.PRNGKey(3), jnp.asarray(100, jnp.int32)

    def eval_action(components):
        ts = init_state(components)
        return np.asarray(components.agent.act(key, ts.agent, ts.carry, ts.env_state, steps, EVAL)[0])

    np.testing.assert_array_equal(eval_action(expert), eval_action(oracle))
    assert not np.array_equal(eval_action(expert), eval_action(learned))

    before = init_state(expert).agent.model.params  # its own copy: the chunk donates the state it is given
    ts, metrics = make_train_chunk(expert, 40)(init_state(expert))
    assert float(metrics["model/loss"][-1]) > 0 and float(metrics["model/loss"][0]) == 0.0  # fitted after warm-up
    assert not jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), before, ts.agent.model.params))
    planned = np.asarray(ts.replay.data.extras["planned"][:40])  # [rows, envs]; the warm-up's 5 rows act uniformly
    assert planned[:5].sum() == 0 and planned[5:].min() == 1.0  # then p_plan 1: every step is the planner's


def test_planning_through_the_simulator_needs_a_learned_model_and_an_actor_critic_agent():
    with pytest.raises(ConfigError, match="needs a learned model.name"):
        load_config(None, EXPERT + ["model.name=oracle", "planner.through=oracle"])
    with pytest.raises(ConfigError, match="beside an actor-critic agent"):
        load_config(None, QUIET + ["env.name=CartpoleSwingup", "agent.name=mpc"] + MLP + ["planner.name=mppi", "planner.through=oracle"])
    with pytest.raises(ConfigError, match="needs an MJX task"):
        load_config(None, QUIET + TOY_MODEL + ["planner.name=mppi", "planner.through=oracle"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(None, EXPERT + MLP + ["planner.through=simulator"])


# ---- MPC alone ----------------------------------------------------------------------------------------


MPC = [
    "env.name=CartpoleSwingup", "env.action_repeat=4", "env.episode_length=80", "env.num_envs=2",
    "agent.name=mpc", "model.name=oracle", "planner.name=mppi", "planner.horizon=4", "planner.num_samples=16",
    "planner.noise_sigma=0.5", "planner.temperature=0.3",
    "train.total_env_steps=40", "train.warmup_env_steps=0", "train.log_every=40", "train.eval_every=40",
    "train.eval_episodes=2", "replay.capacity=1000",
]


@pytest.fixture(scope="module")
def mpc_run(tmp_path_factory):
    """One oracle-MPC training run of the MPC config, shared: building it is most of a test's time."""
    return train(load_config(None, QUIET + MPC + [f"log.runs_dir={tmp_path_factory.mktemp('mpc')}", "log.run_name=train"]))


@pytest.mark.slow
def test_mpc_agent_is_evaluated_in_training_and_matches_mjxmbrl_plan(tmp_path, mpc_run):
    from mjxmbrl.cli.plan import run_plan

    run = mpc_run
    row = read_metrics(run / "metrics.jsonl")[-1]
    assert "eval/return" in row and "eval/policy_return" not in row
    assert row["planner/return_max"] > 0
    assert not (run / "policy").exists()  # nothing learned, nothing to export
    _, summary = run_plan(load_config(None, QUIET + MPC + [f"log.runs_dir={tmp_path}", "log.run_name=plan"]), episodes=2)
    assert summary["return_mean"] == row["eval/return"] > 0


@pytest.mark.slow
def test_eval_with_planner_overrides_acts_like_a_run_trained_with_that_planner(tmp_path, mpc_run):
    """`mjxmbrl eval RUN planner.K=V`: the checkpoint acts with the other planner (an oracle MPC run has nothing
    learned, so it must equal a run trained with that planner), in its own file, and only planner.* may change."""
    from mjxmbrl.cli.evaluate import evaluate_run
    from mjxmbrl.run.loop import RunError

    other = ["planner.num_samples=4", "planner.temperature=1.0"]
    run = mpc_run
    reference = train(load_config(None, QUIET + MPC + other + [f"log.runs_dir={tmp_path}", "log.run_name=b"]))
    own = evaluate_run(run, episodes=2)
    swapped = evaluate_run(run, episodes=2, overrides=other)
    assert swapped["returns"] == evaluate_run(reference, episodes=2)["returns"] != own["returns"]
    assert swapped["overrides"] == other and "overrides" not in own
    assert json.loads((run / "eval.json").read_text())["returns"] == own["returns"]  # the run's own eval is kept
    assert json.loads((run / "eval-planner-num_samples=4_temperature=1.0.json").read_text())["returns"] == swapped["returns"]
    with pytest.raises(RunError, match="only planner"):
        evaluate_run(run, episodes=2, overrides=["env.action_repeat=2"])
    with pytest.raises(ConfigError, match="num_samples"):
        evaluate_run(run, episodes=2, overrides=["planner.num_samples=0"])


def test_mpc_agent_needs_a_planner_and_no_learner_parts():
    with pytest.raises(ConfigError, match="agent mpc acts by planning"):
        load_config(None, ["agent.name=mpc"])
    with pytest.raises(ConfigError, match="planner.proposal=gaussian"):
        load_config(None, MPC + ["planner.value=soft"])


# ---- non-finite physics -------------------------------------------------------------------------------


class NaNAfter:
    """toy_reach whose next observation becomes NaN (and the episode ends, as DM Control does) past x = 0.2."""

    def __init__(self):
        self.env = make_env("toy_reach")
        self.spec, self.observation_size, self.action_size, self.dt = self.env.spec, 6, 2, self.env.dt

    def reset(self, key):
        return self.env.reset(key)

    def step(self, state, action):
        nxt = self.env.step(state, action)
        bad = nxt.obs[0] > 0.2
        return nxt.replace(obs=jnp.where(bad, jnp.nan, nxt.obs), done=jnp.maximum(nxt.done, bad.astype(jnp.float32)))


@pytest.mark.parametrize("model", [[], TOY_MODEL], ids=["sac", "sac+model"])
def test_non_finite_next_observations_are_masked_and_counted(model):
    cfg = load_config(ROOT / "configs/debug.yaml", QUIET + model + ["train.warmup_env_steps=0", "agent.batch_size=8"])
    components = build(cfg)
    env = VectorEnv(NaNAfter(), cfg.env.num_envs, episode_length=50)
    components = components._replace(env=env)
    ts = init_state(components)
    ts, metrics = make_train_chunk(components, 40)(ts)
    row = summarize_chunk(jax.device_get(metrics))
    assert row["train/invalid_transitions"] > 0
    assert row["train/params_finite"] and np.isfinite(row["learner/critic_loss"]), row
    if model:
        assert np.isfinite(row["model/loss"])
    data = ts.replay.data
    invalid = np.asarray(data.valid) == 0
    assert invalid.any() and np.isfinite(np.asarray(data.next_obs)).all()


# ---- layers -------------------------------------------------------------------------------------------


def _function_lengths(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_train_step_and_run_loop_functions_stay_short():
    """Issue 15: no function of the train step or the run loop longer than about 60 lines."""
    for path in (ROOT / "mjxmbrl/train.py", ROOT / "mjxmbrl/run/loop.py"):
        long = [(name, n) for name, n in _function_lengths(path) if n > 60]
        assert not long, (path.name, long)


def test_a_latent_model_plans_from_the_belief_it_filters_over_the_episode():
    """With the RSSM the carry holds each env's filtered latent (Model.filter), restarted at episode starts."""
    cfg = load_config(ROOT / "configs/debug.yaml", QUIET + [
        "model.name=rssm", "model.belief_size=8", "model.state_size=4", "model.hidden_size=8", "model.embedding_size=8",
        "model.batch_size=4", "model.seq_len=4", "planner.name=cem", "planner.num_samples=8", "planner.iterations=1",
        "planner.horizon=2", "train.warmup_env_steps=0", "agent.batch_size=8",
    ])
    components = build(cfg)
    ts = init_state(components)
    chunk = make_train_chunk(components, 3)
    ts, _ = chunk(ts)
    h = np.asarray(ts.carry["belief"]["h"])  # [envs, belief_size]
    assert h.shape == (8, 8) and np.abs(h).max() > 0  # the GRU belief moved from its reset value 0
    # The next act filters: the belief it plans from follows the new observation and the executed action.
    agent = components.agent
    _, carry, _, _ = agent.act(jax.random.PRNGKey(0), ts.agent, ts.carry, ts.env_state, ts.env_steps, EXPLORE)
    params = ts.agent.model.params
    model = components.parts.model
    expected = jax.vmap(lambda z, a, o, k: model.filter(params, z, a, o, k))(
        ts.carry["belief"], ts.env_state.info["last_action"], ts.env_state.obs, jax.random.split(jax.random.PRNGKey(0), 8)
    )
    fresh = np.asarray(ts.env_state.info["steps"]) == 0
    np.testing.assert_allclose(np.asarray(carry["belief"]["h"])[~fresh], np.asarray(expected["h"])[~fresh], rtol=1e-5, atol=1e-6)
