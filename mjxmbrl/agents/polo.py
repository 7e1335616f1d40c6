"""POLO: plan online with MPPI on the true simulator, learn a value ensemble offline, explore by optimism.

Lowrey, Rajeswaran, Kakade, Todorov, Mordatch 2019, "Plan Online, Learn Offline: Efficient Learning
and Exploration via Model-Based Control", arXiv:1811.01848, Alg. 1:

  - act: in every env and step, MPC (planner.name mppi over model.name oracle, the simulator the
    agent has; Eq. 3) with terminal reward r_f(s) = V^(s), the ensemble's optimistic aggregate
    (1/kappa) log (1/K) sum_k exp(kappa V_k(s)) (Eq. 6, `ops.log_sum_exp_aggregate`);
  - store: every visited state goes to the replay with its simulator snapshot (envs/snapshots.py);
  - learn: every Z = train.update_every vectorised steps, G = train.updates_per_step gradient steps;
    each samples n = agent.batch_size replay states and computes, for every member k, the N-step
    trajectory-optimised target (Eq. 7)

        y_k(s_i) = max_{a_0:N-1} sum_{t<N} gamma^t r(s_t, a_t) + gamma^N V_k(s_N),  s_0 = s_i,

    by a trajectory optimiser on the simulator restored to s_i (agent.target_horizon N,
    agent.target_samples trajectories, agent.target_iterations MPPI rounds; the best return scored
    is the target; with one round the members share the candidates), batched over states and
    members; then one step of Eq. 5 on every member (learners/polo_value.py).

Lifetime learning with or without resets is the env's time limit: `env.episode_length` at least
`train.total_env_steps` is one life without resets. With planner.value=none this agent is MPC alone
(the same as agent mpc) and learns nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct

from mjxmbrl.agents.base import EVAL, Agent, make_update_due, root_streams, run_if, scan_updates
from mjxmbrl.agents.parts import make_planning_actor
from mjxmbrl.envs.snapshots import restore, snapshot, snapshot_spec
from mjxmbrl.learners.polo_value import ACTIVATIONS, make_prior_value_ensemble
from mjxmbrl.ops import log_sum_exp_aggregate
from mjxmbrl.planners.base import PlanParams, clip_actions, make_rollout_core
from mjxmbrl.planners.mppi import mppi_optimize
from mjxmbrl.types import ConfigError


@dataclasses.dataclass(frozen=True)
class POLOConfig:
    """POLO's value ensemble and targets; the planner is the `planner` section, the schedule `train`'s.

    Defaults: the humanoid settings of App. A (K = 6 networks of 2 x 16 tanh units, minibatches of
    32, Adam with its default settings); the paper gives no kappa, sigma, lambda or N default.
    """

    name: str = "polo"
    num_values: int = 6  # K
    hidden_sizes: Tuple[int, ...] = (16, 16)
    activation: str = "tanh"  # tanh | relu
    kappa: float = 1.0  # inverse temperature of the log-sum-exp aggregate (Eq. 6): 0 -> mean, inf -> max
    prior_scale: float = 1.0  # beta: V_k = beta prior_k + f_k (randomized priors)
    target_noise: float = 0.1  # sigma: targets perturbed with N(0, sigma^2) (Eq. 5)
    weight_decay: float = 1e-4  # sigma^2 / lambda: L2 on the trainable weights (Eq. 5)
    lr: float = 1e-3
    batch_size: int = 32  # n states per gradient step
    target_horizon: int = 8  # N of Eq. 7 (1: trajectory-centric fitted value iteration)
    target_samples: int = 32  # trajectories the N-step optimisation scores per iteration
    target_iterations: int = 1
    # Which value picks each member's best candidate in Eq. 7 (one target round only): "member" (the
    # paper: member k's own V_k, the max of its own scores) or "mean" (the ensemble mean picks one
    # candidate per state; each member then scores it with its own V_k, as double Q-learning decouples
    # selection from evaluation, so a member's optimistic errors are not what its max selects).
    target_select: str = "member"
    # Observation entries the value networks read (App. A hand-picks them per task); () = all. The
    # point-mass worlds read the position [0, 1]: Fig. 2b's value is a function of where the mass is.
    value_inputs: Tuple[int, ...] = ()
    # c: the value ensemble and the planner see c r instead of the task's reward r (reported returns stay the
    # task's). MPPI divides returns by planner.temperature, so scaling the temperature by c too keeps its
    # weighting over candidates; what c then changes is the scale that kappa, prior_scale, target_noise and
    # weight_decay act on (a task whose reward is not on the paper's scale can be brought to it).
    reward_scale: float = 1.0


def check_polo(cfg) -> None:
    a, p = cfg.agent, cfg.planner
    if cfg.model.name != "oracle":
        raise ConfigError("agent polo plans on the true simulator: set model.name=oracle (Lowrey et al. 2019)")
    if p.name != "mppi":
        raise ConfigError(f"agent polo acts with MPPI (the paper's trajectory optimiser): set planner.name=mppi, got {p.name}")
    if p.value not in ("optimistic", "none"):
        raise ConfigError("agent polo: planner.value must be optimistic (POLO) or none (MPC alone)")
    if p.proposal != "gaussian":
        raise ConfigError("agent polo has no policy: planner.proposal must be gaussian")
    if a.activation not in ACTIVATIONS:
        raise ConfigError(f"agent.activation must be one of {', '.join(ACTIVATIONS)}, got {a.activation}")
    for key in ("num_values", "batch_size", "target_horizon", "target_samples", "target_iterations"):
        if getattr(a, key) < 1:
            raise ConfigError(f"agent.{key} must be >= 1, got {getattr(a, key)}")
    from mjxmbrl.envs.registry import ENV_SPECS

    spec = ENV_SPECS.get(cfg.env.name)
    bad = [i for i in a.value_inputs if i < 0 or (spec is not None and i >= spec.obs_size)]
    if bad or len(set(a.value_inputs)) != len(a.value_inputs):
        size = f" of the {spec.obs_size} observation entries of {cfg.env.name}" if spec is not None else ""
        raise ConfigError(f"agent.value_inputs must be distinct indices{size}, got {list(a.value_inputs)}")
    if a.target_select not in ("member", "mean"):
        raise ConfigError(f"agent.target_select must be member (Eq. 7) or mean, got {a.target_select}")
    if a.target_select == "mean" and a.target_iterations != 1:
        raise ConfigError("agent.target_select=mean needs agent.target_iterations=1 (the members must score "
                          "the same candidates)")
    if a.kappa <= 0 or a.lr <= 0 or a.reward_scale <= 0:
        raise ConfigError("agent.kappa, agent.lr and agent.reward_scale must be > 0")
    if a.target_noise < 0 or a.weight_decay < 0 or a.prior_scale < 0:
        raise ConfigError("agent.target_noise, agent.weight_decay and agent.prior_scale must be >= 0")


@struct.dataclass
class POLOState:
    values: object  # ValueEnsembleState


def make_polo_agent(cfg, parts) -> Agent:
    from mjxmbrl.envs.wrappers import make_vector_env
    from mjxmbrl.planners import make_planner

    a, spec, replay, model = cfg.agent, parts.spec, parts.replay, parts.model
    planning_model = reward_scaled(model, a.reward_scale)  # the planner's rewards on the value's scale
    ensemble = make_prior_value_ensemble(spec.obs_size, a.num_values, a.hidden_sizes, a.activation, a.prior_scale,
                                         a.target_noise, a.weight_decay, a.lr, a.value_inputs)
    learns = cfg.planner.value == "optimistic"

    def optimistic_value(values_state, obs, key):
        del key
        return log_sum_exp_aggregate(ensemble.values(values_state, obs), a.kappa)

    planner = make_planner(cfg.planner, planning_model, cfg.env, spec.obs_size, spec.action_size,
                           value_fn=optimistic_value)[0]
    planning = make_planning_actor(planner, planning_model, spec.obs_size)
    nstep_target = make_nstep_target(cfg, ensemble, model)  # the task's model: it scales the reward itself
    template_env = make_vector_env(cfg.env.name, 1, impl=cfg.env.impl, episode_length=cfg.env.episode_length,
                                   action_repeat=cfg.env.action_repeat, auto_reset=False, planning=True)  # the oracle's task
    extras_spec = snapshot_spec(jax.eval_shape(template_env.reset_one, jax.random.PRNGKey(0)))
    num_envs, update_due = cfg.env.num_envs, make_update_due(cfg)
    warmup, num_updates = cfg.train.warmup_env_steps, cfg.train.updates_per_step

    def init(root_key):
        return POLOState(values=ensemble.init(root_streams(root_key)[0]))

    def act(key, state, carry, env_state, env_steps, mode):
        del mode  # POLO always acts with MPC: explore and eval are the same actor
        pp = PlanParams(model={}, value=state.values)
        action, carry, planner_state, metrics = planning.plan(key, carry, env_state, pp, 0.0)
        carry = planning.keep(carry, planner_state, jnp.ones(action.shape[:1], bool))
        return action, carry, snapshot(env_state), metrics

    def fit(key, state, replay_state):
        template = template_env.reset_one(jax.random.PRNGKey(0))  # restored states are written into it

        def one_update(values_state, k):
            k_batch, k_target, k_fit = jax.random.split(k, 3)
            batch = replay.sample(k_batch, replay_state, a.batch_size)
            targets = nstep_target(k_target, values_state, template, batch.extras, batch.obs)  # [K, n]
            return ensemble.update(k_fit, values_state, batch.obs, targets)

        values_state, metrics = scan_updates(one_update, key, state.values, num_updates)
        return state.replace(values=values_state), metrics

    def learn(key, state, replay_state, env_steps):
        due = update_due(env_steps)
        ready = jnp.asarray(learns) & (env_steps >= warmup) & (replay_state.size * num_envs >= a.batch_size)
        if due is not None:
            ready = ready & due
        state, metrics = run_if(ready, fit, key, state, replay_state)
        updates = jnp.where(ready, num_updates, 0).astype(jnp.int32)
        return state, {"train/learning": ready.astype(jnp.float32), "train/model_learning": jnp.zeros(()),
                       "train/updates": updates, **metrics}

    return Agent(
        init=init,
        init_carry=planning.init_carry,
        act=act,
        observe=lambda state, transition: state,
        learn=learn,
        policy_params=lambda state: None,
        extras_spec=extras_spec,
        eval_modes=(EVAL,),
    )


def reward_scaled(model, scale: float):
    """The model with its reward multiplied by `scale` (agent.reward_scale); the model itself when scale is 1."""
    if scale == 1.0:
        return model
    reward = model.reward
    return model._replace(reward=lambda params, z, action, z_next: scale * reward(params, z, action, z_next))


def make_nstep_target(cfg, ensemble, model):
    """target(key, values_state, template State, snapshots {name: [n, ...]}, obs [n, D]) -> y [K, n] (Eq. 7).

    For every member k and state s_i: the best of the returns sum_{t<N} gamma^t r_t + gamma^N V_k(s_N)
    that a trajectory optimiser with horizon N = agent.target_horizon finds on the simulator restored to
    s_i, with member k's own value at the end. With agent.target_iterations = 1 (one round: the zero
    plan and agent.target_samples - 1 Gaussian perturbations of it) the K members score the same
    candidates, so each state is rolled out once instead of K times and only the terminal values differ;
    with more rounds each member runs its own MPPI. With N = 1 and one sample this is
    r(s_i, 0) + gamma V_k(s_1) exactly (c r with agent.reward_scale = c: `model` is the task's, scaled here).
    agent.target_select = mean: the candidate with the best score under the ensemble mean,
    c* = argmax_c (R_c + gamma^N mean_k V_k(s_N^c)), and y_k = R_c* + gamma^N V_k(s_N^c*).
    """
    a, p = cfg.agent, cfg.planner
    model = reward_scaled(model, a.reward_scale)  # rewards r_t on the value's scale
    core = make_rollout_core(model, p.discount, None, float(cfg.env.action_repeat),
                             lambda vp, obs, key: ensemble.member(vp[0], vp[1], obs))

    def per_member(key, values_state, k, template, snap, obs):
        k_init, k_opt = jax.random.split(key)
        pp = PlanParams(model={}, value=(values_state, k))
        z0 = core.initial_particles(pp, obs, k_init, a.target_samples, restore(template, snap, obs))
        mean = jnp.zeros((a.target_horizon, model_action_size(template)))
        return mppi_optimize(core, pp, z0, mean, k_opt, a.target_samples, p.noise_sigma, p.temperature,
                             a.target_iterations)[1]

    def shared(key, values_state, template, snap, obs):  # -> [K]
        k_init, k_noise, k_steps = jax.random.split(key, 3)
        pp = PlanParams(model={})
        z0 = core.initial_particles(pp, obs, k_init, a.target_samples, restore(template, snap, obs))
        shape = (a.target_samples, a.target_horizon, model_action_size(template))
        candidates = clip_actions((p.noise_sigma * jax.random.normal(k_noise, shape)).at[0].set(0.0))
        z, ret, weight = core.rollout(pp, z0, candidates, jax.random.split(k_steps, a.target_horizon))
        scores = ret[None] + weight[None] * ensemble.values(values_state, core.observe(pp, z))  # [K, S]
        if a.target_select == "mean":
            return scores[:, jnp.argmax(jnp.mean(scores, axis=0))]
        return jnp.max(scores, axis=1)

    def target(key, values_state, template, snaps, obs):
        if a.target_iterations == 1:
            keys = jax.random.split(key, obs.shape[0])
            return jax.vmap(shared, in_axes=(0, None, None, 0, 0), out_axes=1)(keys, values_state, template, snaps, obs)

        def member(k_key, k):
            keys = jax.random.split(k_key, obs.shape[0])
            return jax.vmap(per_member, in_axes=(0, None, None, None, 0, 0))(keys, values_state, k, template, snaps, obs)

        members = jnp.arange(ensemble.num_values)
        return jax.vmap(member)(jax.random.split(key, ensemble.num_values), members)

    return target


def model_action_size(template) -> int:
    """The action size of a task, from one env's State (the wrapper keeps the last action)."""
    return template.info["last_action"].shape[-1]
