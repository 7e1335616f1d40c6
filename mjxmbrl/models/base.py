"""The world-model interface shared by every model and planner (DESIGN.md, Interfaces).

A `Model` is a named tuple of pure functions over an explicit parameter pytree.
Its state `z` is whatever the model carries between steps (an observation, an
observation plus a GRU state, an RSSM belief, or the MJX simulator state for
the oracle); planners only touch it through these functions, vmapped over
particles:

    params = model.init(key)
    z0     = model.initial_state(params, obs [D], key, belief=None)
    zs     = model.initial_particles(params, obs [D], key, P, belief=None)  # z with leading [P]
    z1     = model.step(params, z0, action [A], key)
    z1     = model.filter(params, z0, action [A], obs1 [D], key)  # None: the state is the observation
    obs1   = model.observation(params, z1)                   # [D]
    r      = model.reward(params, z0, action, z1)            # [] (None: the model has no reward)
    p_term = model.termination(params, z0, action, z1)       # [] probability (None: no model)
    loss, metrics = model.loss(params, batch, mask, key)     # batch: Transition [B, T, ...]
    x      = model.normalize_input(params, obs [..., D])    # the model's own input normalisation

`belief` is the model's own state of this env kept by the acting agent: the
filtered latent of a latent model (RSSM), the simulator State for the oracle;
None starts from `obs` alone. A latent model updates its state from each new
observation while acting with `filter` (the RSSM's posterior step); models
whose state is the observation (mlp, gru, ensemble) have `filter=None`, ignore
`belief` and are restarted from each real observation by the agent.

Learned models keep their input/target normalisation statistics in
`params["stats"]` (a `ModelStats`) next to the trained weights `params["net"]`;
the trainer (models/trainer.py) refreshes the statistics from each batch and
differentiates the loss with respect to `params["net"]` only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp

from mjxmbrl.envs.normalization import RunningStats, init_stats, update_stats
from mjxmbrl.types import ConfigError, Metrics, Params, PRNGKey, Transition


def identity_input(params: Params, obs: jax.Array) -> jax.Array:
    """Model.normalize_input of a model that sees raw observations (the oracle): obs unchanged."""
    del params
    return obs


@dataclasses.dataclass(frozen=True)
class NoModelConfig:
    """No world model (model-free agent)."""

    name: str = "none"


def check_learned_model(cfg) -> None:
    """Checks every learned model shares: positive sizes, and training windows that fit the replay buffer."""
    m = cfg.model
    for key in ("batch_size", "seq_len", "learning_rate", "num_members", "gru_size", "gru_layers", "belief_size", "state_size"):
        value = getattr(m, key, None)
        if value is not None and value <= 0:
            raise ConfigError(f"model.{key} must be positive, got {value}")
    if getattr(m, "updates_per_step", 0) < 0:
        raise ConfigError(f"model.updates_per_step must be >= 0, got {m.updates_per_step}")
    if m.seq_len * cfg.env.num_envs > cfg.replay.capacity:
        raise ConfigError(f"model.seq_len ({m.seq_len}) does not fit in the replay buffer ({cfg.replay.capacity // cfg.env.num_envs} steps per env)")


class Model(NamedTuple):
    """Pure functions of one world model (see the module docstring for signatures)."""

    name: str
    init: Callable[[PRNGKey], Params]
    initial_state: Callable[..., Any]
    initial_particles: Callable[..., Any]
    step: Callable[..., Any]
    observation: Callable[[Params, Any], jax.Array]
    reward: Optional[Callable[..., jax.Array]]
    termination: Optional[Callable[..., jax.Array]]
    loss: Optional[Callable[..., Tuple[jax.Array, Metrics]]]  # None: nothing to train (oracle)
    uses_sim_state: bool = False  # True: the belief is the simulator State, and initial_state needs it (oracle)
    # filter(params, z, action [A], obs [D], key) -> z': the state after `action` given the new
    # observation (a latent model's posterior step); None: the state is the observation itself.
    filter: Optional[Callable[..., Any]] = None
    # normalize_input(params, obs [..., D]) -> [..., D]: the input normalisation the model's own
    # networks apply (learned models: `stats_input`); heads trained beside the model use it too.
    normalize_input: Callable[[Params, jax.Array], jax.Array] = identity_input


@flax.struct.dataclass
class ModelStats:
    """Normalisation statistics kept in the model parameters.

    obs: moments of observations [D] (network inputs);
    delta: moments of one-step changes next_obs - obs [D] (network targets).
    """

    obs: RunningStats
    delta: RunningStats


def init_model_stats(obs_size: int) -> ModelStats:
    return ModelStats(obs=init_stats(obs_size), delta=init_stats(obs_size))


def update_model_stats(stats: ModelStats, batch: Transition) -> ModelStats:
    """Merges every transition of `batch` (any leading axes) into the statistics.

    Each stored transition is valid on its own (next_obs is the true successor
    even at episode ends), so no mask is needed here.
    """
    return ModelStats(
        obs=update_stats(stats.obs, batch.obs),
        delta=update_stats(stats.delta, batch.next_obs - batch.obs),
    )


def std_of(stats: RunningStats, floor: float = 1e-3) -> jax.Array:
    """Standard deviation [D] with a floor, so constant dimensions do not blow up."""
    return jnp.sqrt(jnp.maximum(stats.var, floor**2))


def normalize_obs(stats: ModelStats, obs: jax.Array) -> jax.Array:
    """(obs - mean) / std for network inputs; obs [..., D]."""
    return (obs - stats.obs.mean) / std_of(stats.obs)


def stats_input(params: Params, obs: jax.Array) -> jax.Array:
    """Model.normalize_input of a learned model: `normalize_obs(params["stats"], obs)`, obs [..., D]."""
    return normalize_obs(params["stats"], obs)


def learned_reward_heads(
    reward_fn: Optional[Callable[..., jax.Array]],
    termination_fn: Optional[Callable[..., jax.Array]],
    observation: Callable[[Params, Any], jax.Array],
) -> Tuple[Optional[Callable[..., jax.Array]], Optional[Callable[..., jax.Array]]]:
    """Model.reward / Model.termination of a learned model from its heads (`nn.heads.make_heads`).

    Each scores (z, action) from the model's normalised observation of z (`observation(params, z)`
    [..., D]) and the action [..., A], next_z unused -> [...]; None where the model learns no such head.
    """

    def reward(params, z, action, next_z):
        del next_z
        return reward_fn(params["net"], normalize_obs(params["stats"], observation(params, z)), action)

    def termination(params, z, action, next_z):
        del next_z
        return termination_fn(params["net"], normalize_obs(params["stats"], observation(params, z)), action)

    return (reward if reward_fn is not None else None), (termination if termination_fn is not None else None)


def default_initial_particles(initial_state: Callable[..., Any]) -> Callable[..., Any]:
    """initial_particles(params, obs, key, P, belief=None) = vmap of initial_state over P keys."""

    def initial_particles(params, obs, key, num_particles: int, belief=None):
        keys = jax.random.split(key, num_particles)
        return jax.vmap(lambda k: initial_state(params, obs, k, belief))(keys)

    return initial_particles


def open_loop(model: Model, params: Params, z0: Any, actions: jax.Array, key: PRNGKey) -> Tuple[Any, jax.Array]:
    """Rolls `model` forward from z0 under actions [H, A] (no observations fed back).

    Returns (states with leading [H], predicted observations [H, D]): entry t is
    the prediction after applying actions[0..t].
    """

    def body(z, inputs):
        action, step_key = inputs
        z = model.step(params, z, action, step_key)
        return z, (z, model.observation(params, z))

    _, (zs, obs) = jax.lax.scan(body, z0, (actions, jax.random.split(key, actions.shape[0])))
    return zs, obs


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """sum(x * mask) / max(sum(mask), 1) with mask broadcast to x's leading axes."""
    mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x.shape)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def normalized_sq_error(pred: jax.Array, target: jax.Array, stats: ModelStats) -> jax.Array:
    """((pred - target) / obs std)^2 per dimension, [..., D]: errors comparable across dims."""
    return jnp.square((pred - target) / std_of(stats.obs))


def multi_step_errors(
    model: Model, params: Params, batch: Transition, key: PRNGKey
) -> jax.Array:
    """Open-loop squared errors of Eq. 20 (Byravan) / Eq. 10 (Amos), per step and dimension.

    From the true first state of each window the model predicts s_2..s_{T+1}
    from the actions alone: s^_{t+1} = m(s^_t, a_t), s^_1 = s_1.
    batch: Transition [B, T, ...]. Returns normalised squared errors [B, T, D]
    of the predictions against batch.next_obs.
    """
    batch_size = batch.obs.shape[0]
    init_keys, roll_keys = jnp.split(jax.random.split(key, 2 * batch_size), 2)

    def one(obs0, actions, init_key, roll_key):
        z0 = model.initial_state(params, obs0, init_key)
        return open_loop(model, params, z0, actions, roll_key)[1]

    pred = jax.vmap(one)(batch.obs[:, 0], batch.action, init_keys, roll_keys)
    return normalized_sq_error(pred, batch.next_obs, params["stats"])


def step_error_metrics(errors: jax.Array, mask: jax.Array) -> Metrics:
    """model/error_step1 and model/error_stepT (T = window length) from errors [B, T, D]."""
    per_step = jnp.mean(errors, axis=-1)  # [B, T]
    return {
        "model/error_step1": masked_mean(per_step[:, 0], mask[:, 0]),
        f"model/error_step{errors.shape[1]}": masked_mean(per_step[:, -1], mask[:, -1]),
    }
