"""Per-group deterministic MLP dynamics (Byravan et al. 2022, App. C, Eqs. 17-20, Fig. 5).

One MLP per observation group k (elu, layer norm, 3 x 256) reads the whole
normalised observation and the action and predicts the group's change:

    s^k_{t+1} = s^k_t + m^k(s_t, a_t) * dt                              (Eq. 17)
    q_{t+1}   = q_t + (m^q(s_t, a_t) + qdot^_{t+1}) * dt                 (Eq. 18)

where Eq. 18 applies to groups of generalised positions whose velocities are
observed (envs/groups.py). A group with `rotated_by` (a world-fixed direction in
the body's frame, e.g. the ant's target direction) has no network: it turns in
closed form with the body's angular velocity, averaged over the observed and the
predicted one (App. C.2; envs/ant_walk.rotate_egocentric).

We write m^k * dt = mu^k + sigma^k * net^k, with mu, sigma the data moments of
the one-step change (kept in params["stats"]), so every network output is O(1)
whatever the group's scale; the Eq. 18
correction m^q * dt is sigma^q * net^q. Training minimises the open-loop
multi-step squared error over windows of T steps (Eqs. 19-20), each group's
error normalised per dimension by the observation std so that groups of
different units weigh alike (the paper separates groups for the same reason;
the normalisation is our addition). Optional reward/termination heads
(nn/heads.py) are trained on the same transitions.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mjxmbrl.envs.ant_walk import rotate_egocentric
from mjxmbrl.envs.groups import ObsGroup
from mjxmbrl.models.base import (
    Model,
    ModelStats,
    check_learned_model,
    default_initial_particles,
    init_model_stats,
    masked_mean,
    multi_step_errors,
    normalize_obs,
    stats_input,
    std_of,
    step_error_metrics,
)
from mjxmbrl.nn.heads import make_heads
from mjxmbrl.nn.networks import MLP
from mjxmbrl.types import ConfigError


@dataclasses.dataclass(frozen=True)
class MLPModelConfig:
    """Per-group deterministic MLP dynamics (Byravan et al. 2022, App. C, Eqs. 17-20)."""

    name: str = "mlp"
    hidden_sizes: Tuple[int, ...] = (256, 256, 256)  # elu + layer norm, one MLP per observation group
    learning_rate: float = 1e-4  # App. C.1
    batch_size: int = 256
    seq_len: int = 10  # T of the open-loop multi-step loss (Eq. 20)
    updates_per_step: int = 1  # model updates per vectorised env step
    grad_clip: float = 100.0
    learn_reward: bool = False  # Byravan et al. plan with known rewards; True adds the reward model (Amos Eq. 11)
    learn_termination: bool = False
    head_sizes: Tuple[int, ...] = (256, 256)


def check_mlp(cfg) -> None:
    """The per-group MLP needs the task's observation groups (EnvSpec.obs_groups)."""
    from mjxmbrl.envs.registry import ENV_SPECS

    check_learned_model(cfg)
    spec = ENV_SPECS.get(cfg.env.name)
    if spec is not None and not spec.obs_groups:
        raise ConfigError(
            f"model 'mlp' (per-group MLP) needs the observation groups of the task, and env '{cfg.env.name}' declares none "
            "(see mjxmbrl/envs/groups.py); use model.name=gru or ensemble"
        )


class GroupMLPs(nn.Module):
    """x [..., D + A] -> {group name: raw output [..., group size]}, one MLP per group (none for closed-form ones)."""

    groups: Tuple[ObsGroup, ...]
    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> dict:
        return {g.name: MLP(tuple(self.hidden_sizes), g.size, nn.elu, True, name=g.name)(x)
                for g in self.groups if g.rotated_by is None}


def check_groups(groups: Tuple[ObsGroup, ...], obs_size: int) -> None:
    """Groups must tile [0, obs_size) in order; velocity and angular velocity indices must be inside plain groups."""
    ordered = sorted(groups, key=lambda g: g.start)
    edges = [0] + [g.stop for g in ordered]
    if [g.start for g in ordered] != edges[:-1] or edges[-1] != obs_size:
        raise ValueError(f"observation groups {[(g.name, g.start, g.stop) for g in groups]} do not tile [0, {obs_size})")
    integrated = {i for g in groups if g.velocity for i in range(g.start, g.stop)}
    for g in groups:
        if g.velocity and (len(g.velocity) != g.size or any(v in integrated or not 0 <= v < obs_size for v in g.velocity)):
            raise ValueError(f"group '{g.name}': velocity indices {g.velocity} must be {g.size} indices of non-integrated dims")
    rotated = {i for g in groups if g.rotated_by is not None for i in range(g.start, g.stop)}
    for g in groups:
        if g.rotated_by is None:
            continue
        omega = range(g.rotated_by, g.rotated_by + 3)
        if g.velocity or g.size != 3 or any(i in integrated or i in rotated or not 0 <= i < obs_size for i in omega):
            raise ValueError(f"group '{g.name}': a rotated direction has 3 entries and its angular velocity "
                             f"(obs {g.rotated_by}..{g.rotated_by + 2}) must lie in a plain group")


def make_mlp_model(cfg, obs_size: int, action_size: int, dt: float, groups: Tuple[ObsGroup, ...]) -> Model:
    """Builds the per-group MLP model.

    cfg: MLPModelConfig; dt: the model step in seconds (control dt x action
    repeat); groups: the task's observation groups.
    """
    groups = tuple(sorted(groups, key=lambda g: g.start))
    check_groups(groups, obs_size)
    net = GroupMLPs(groups, tuple(cfg.hidden_sizes))
    heads_init, reward_fn, termination_fn, heads_loss = make_heads(
        cfg.head_sizes, cfg.learn_reward, cfg.learn_termination, obs_size, action_size
    )

    def init(key):
        k_dyn, k_heads = jax.random.split(key)
        x = jnp.zeros((obs_size + action_size,))
        return {"net": {"dynamics": net.init(k_dyn, x), **heads_init(k_heads)}, "stats": init_model_stats(obs_size)}

    def predict(params, obs, action):
        """obs [D], action [A] -> next obs [D] (Eqs. 17-18)."""
        stats: ModelStats = params["stats"]
        out = net.apply(params["net"]["dynamics"], jnp.concatenate([normalize_obs(stats, obs), action]))
        mu, sigma = stats.delta.mean, std_of(stats.delta)
        pieces = {}
        for g in groups:  # plain delta groups first: Eq. 18 and the rotations read their predictions
            if not g.velocity and g.rotated_by is None:
                sl = slice(g.start, g.stop)
                pieces[g.name] = obs[sl] + mu[sl] + sigma[sl] * out[g.name]
        plain = jnp.concatenate([pieces.get(g.name, jnp.zeros((g.size,))) for g in groups])
        for g in groups:
            sl = slice(g.start, g.stop)
            if g.velocity:
                velocity_next = plain[jnp.asarray(g.velocity)]
                pieces[g.name] = obs[sl] + velocity_next * dt + sigma[sl] * out[g.name]
            elif g.rotated_by is not None:
                omega = slice(g.rotated_by, g.rotated_by + 3)
                pieces[g.name] = rotate_egocentric(obs[sl], 0.5 * (obs[omega] + plain[omega]), dt)
        return jnp.concatenate([pieces[g.name] for g in groups])

    def initial_state(params, obs, key, belief=None):
        del params, key, belief
        return obs

    def step(params, z, action, key):
        del key
        return predict(params, z, action)

    def observation(params, z):
        del params
        return z

    def reward(params, z, action, next_z):
        del next_z
        return reward_fn(params["net"], normalize_obs(params["stats"], z), action)

    def termination(params, z, action, next_z):
        del next_z
        return termination_fn(params["net"], normalize_obs(params["stats"], z), action)

    model = Model(
        name="mlp",
        init=init,
        initial_state=initial_state,
        initial_particles=default_initial_particles(initial_state),
        step=step,
        observation=observation,
        reward=reward if reward_fn is not None else None,
        termination=termination if termination_fn is not None else None,
        loss=None,
        normalize_input=stats_input,
    )

    def loss(params, batch, mask, key):
        """Eq. 20 summed over groups, masked at episode ends; batch [B, T, ...], mask [B, T]."""
        errors = multi_step_errors(model, params, batch, key)  # [B, T, D]
        total = jnp.zeros((), jnp.float32)
        metrics = {}
        for g in groups:
            group_loss = masked_mean(jnp.mean(errors[..., g.start : g.stop], axis=-1), mask)
            metrics[f"model/loss_{g.name}"] = group_loss
            total = total + group_loss
        head_total, head_metrics = heads_loss(params["net"], normalize_obs(params["stats"], batch.obs), batch)
        total = total + head_total
        return total, {"model/loss": total, **metrics, **head_metrics, **step_error_metrics(errors, mask)}

    return model._replace(loss=loss)
