"""Parts agents are assembled from: world-model learning on replay sequences, and planning in the loop.

`make_model_learning` fits a learned world model inside `learn` (Byravan et al.
2022 Sec. 4.2; Amos et al. 2021 Alg. 1, the N_seq loop): K updates on windows
of `model.seq_len` steps once past the warm-up and once the buffer holds one
batch of full windows.

`make_planning_actor` runs a planner in N envs at once (vmap over envs) and
keeps what it needs across steps in the agent's carry:
  - the planner's own state (warm starts), reset where an episode began, and
    kept only where the planner's action was executed (elsewhere the plan no
    longer describes what the env does, so the next plan starts afresh);
  - the model's belief: the simulator State for the oracle (read from the env
    state), or, for a latent model with `Model.filter` (the RSSM), the latent
    filtered from each new observation and the executed action (the RSSM
    posterior; restarted from the observation at an episode's first step).
    Models whose state is the observation have no belief: they start from it.

`make_belief_filter` is that belief alone, for an actor that acts on the
latent with a policy rather than a planner (agents/dreamer.py).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from mjxmbrl.agents.base import new_episode, run_if, scan_updates, select
from mjxmbrl.types import PRNGKey


def make_model_learning(trainer, model_cfg, replay, num_envs: int, warmup_env_steps: int, frozen: bool = False) -> Callable:
    """learn_model(key, model_state, replay_state, env_steps, due=None) -> (model_state, metrics, ready [] bool).

    `trainer` None (no model, or the oracle), model.updates_per_step 0 or `frozen` (a model
    transferred from another run and kept fixed: transfer.model=frozen): nothing
    is learned and `ready` is False. `due` ([] bool, optional) gates the updates
    further (the agent's rate limit, train.update_every). Metrics are the model's `model/...` losses
    averaged over the K updates (zeros when not ready).
    """
    if trainer is None or model_cfg.updates_per_step == 0 or frozen:
        return lambda key, model_state, replay_state, env_steps, due=None: (model_state, {}, jnp.zeros((), bool))

    def fit(key, model_state, replay_state):
        def one_update(model_state, update_key):
            sample_key, update_key = jax.random.split(update_key)
            batch, mask = replay.sample_sequences(sample_key, replay_state, model_cfg.batch_size, model_cfg.seq_len)
            return trainer.update(update_key, model_state, batch, mask)

        return scan_updates(one_update, key, model_state, model_cfg.updates_per_step)

    def learn_model(key, model_state, replay_state, env_steps, due=None):
        ready = (env_steps >= warmup_env_steps) & (replay_state.size >= model_cfg.seq_len)
        ready = ready & (replay_state.size * num_envs >= model_cfg.batch_size)
        if due is not None:
            ready = ready & due
        model_state, metrics = run_if(ready, fit, key, model_state, replay_state)
        return model_state, metrics, ready

    return learn_model


class BeliefFilter(NamedTuple):
    """The model's own state of each of N envs, kept in an agent's carry while acting (module docstring).

    init(key, N) -> belief [N, ...] (zeros of the latent's shape; the env state's role for the oracle), or None
        for a model whose state is the observation;
    update(key, belief, env_state [N], model_params) -> the belief this step starts from: the simulator State
        (oracle), the latent filtered from the new observation and the executed action (restarted from the
        observation where an episode began), or None.
    """

    init: Callable[..., Any]
    update: Callable[..., Any]


def make_belief_filter(model, obs_size: int) -> BeliefFilter:
    """Binds `model` to the per-env belief of the module docstring (shared by planning and policy actors)."""
    latent = model.filter is not None

    def init(key: PRNGKey, num_envs: int):
        if not latent:
            return None
        # Zeros of the latent's shape; every env's first step restarts it from the observation.
        shape = jax.eval_shape(lambda k: model.initial_state(model.init(k), jnp.zeros((obs_size,)), k), key)
        return jax.tree.map(lambda s: jnp.zeros((num_envs,) + s.shape, s.dtype), shape)

    def update(key, belief, env_state, params):
        if model.uses_sim_state:
            return env_state
        if not latent:
            return None
        obs = env_state.obs
        keys = jax.random.split(key, obs.shape[0])
        restart = jax.vmap(lambda o, k: model.initial_state(params, o, k))(obs, keys)
        last_action = env_state.info["last_action"]
        filtered = jax.vmap(lambda z, a, o, k: model.filter(params, z, a, o, k))(belief, last_action, obs, keys)
        return select(new_episode(env_state), restart, filtered)

    return BeliefFilter(init, update)


class PlanningActor(NamedTuple):
    """init_carry(key, N) -> {"planner": [N, ...], "belief": [N, ...] or None};
    plan(key, carry, env_state [N], plan_params, progress) -> (action [N, A], carry, planner_state [N], metrics);
    keep(carry, planner_state, executed [N] bool) -> carry: warm start only where the plan was executed."""

    init_carry: Callable[..., Any]
    plan: Callable[..., Tuple[jax.Array, Any, Any, dict]]
    keep: Callable[..., Any]


def make_planning_actor(planner, model, obs_size: int, model_params_of: Optional[Callable] = None) -> PlanningActor:
    """Binds `planner` (planning over `model`) to per-env carries.

    model_params_of(plan_params) -> the model's params (for the belief filter);
    default: `plan_params.model`.
    """
    params_of = model_params_of or (lambda pp: pp.model)
    latent = model.filter is not None
    beliefs = make_belief_filter(model, obs_size)
    plan_envs = jax.vmap(planner.plan, in_axes=(0, 0, 0, 0, None, None))

    def fresh_planner_states(key: PRNGKey, num_envs: int):
        return jax.vmap(planner.init)(jax.random.split(key, num_envs))

    def init_carry(key: PRNGKey, num_envs: int):
        return {"planner": fresh_planner_states(key, num_envs), "belief": beliefs.init(key, num_envs)}

    def plan(key, carry, env_state, pp, progress):
        k_plan, k_belief, k_fresh = jax.random.split(key, 3)
        num_envs = env_state.obs.shape[0]
        fresh = fresh_planner_states(k_fresh, num_envs)
        planner_state = select(new_episode(env_state), fresh, carry["planner"])
        belief = beliefs.update(k_belief, carry["belief"], env_state, params_of(pp))
        keys = jax.random.split(k_plan, num_envs)
        action, planner_state, metrics = plan_envs(keys, planner_state, env_state.obs, belief, pp, progress)
        carry = {"planner": fresh, "belief": belief if latent else None}
        return action, carry, planner_state, {k: jnp.mean(v) for k, v in metrics.items()}

    def keep(carry, planner_state, executed):
        return {**carry, "planner": select(executed, planner_state, carry["planner"])}

    return PlanningActor(init_carry, plan, keep)
