"""Per-group deterministic MLP dynamics (Byravan et al. 2022, App. C, Eqs. 17-20, Fig. 5).

One MLP per observation group k (elu, layer norm, 3 x 256) reads the normalised
observation (all groups but the closed-form ones below: the paper's networks read
the proprioception, Fig. 5) and the action and predicts the group's change:

    s^k_{t+1} = s^k_t + m^k(s_t, a_t) * dt                              (Eq. 17)
    q_{t+1}   = q_t + (m^q(s_t, a_t) + qdot^_{t+1}) * dt                 (Eq. 18)

where Eq. 18 applies to groups of generalised positions whose velocities are
observed (envs/groups.py). The task groups of the ant's tasks have no network
(App. C.2): a group with `rotated_by` (world-fixed vectors in the body's frame:
the target direction, a target pose's body axes) turns with the body's angular
velocity w, a group with `translated_by` as well (world-fixed points: a target
pose's bodies) first moves by -v dt, and a group with `minus_change_of` (a
target's joint angles minus ours) loses the predicted change of our joints:

    u_{t+1} = Rot(-w dt) u_t,  p_{t+1} = Rot(-w dt)(p_t - v dt),  dq_{t+1} = dq_t - (q_{t+1} - q_t)

w and v averaged over the observed and the predicted ones
(envs/ant_walk.rotate_egocentric, envs/ant_gttp.py).

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
    learned_reward_heads,
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
                for g in self.groups if not g.closed_form}


def check_groups(groups: Tuple[ObsGroup, ...], obs_size: int) -> None:
    """Groups must tile [0, obs_size) in order; the velocities a group is integrated with must lie in plain groups."""
    ordered = sorted(groups, key=lambda g: g.start)
    edges = [0] + [g.stop for g in ordered]
    if [g.start for g in ordered] != edges[:-1] or edges[-1] != obs_size:
        raise ValueError(f"observation groups {[(g.name, g.start, g.stop) for g in groups]} do not tile [0, {obs_size})")
    integrated = {i for g in groups if g.velocity for i in range(g.start, g.stop)}
    for g in groups:
        if g.velocity and (len(g.velocity) != g.size or any(v in integrated or not 0 <= v < obs_size for v in g.velocity)):
            raise ValueError(f"group '{g.name}': velocity indices {g.velocity} must be {g.size} indices of non-integrated dims")
    closed = {i for g in groups if g.closed_form for i in range(g.start, g.stop)}

    def plain(indices, what: str, g: ObsGroup) -> None:
        if any(i in integrated or i in closed or not 0 <= i < obs_size for i in indices):
            raise ValueError(f"group '{g.name}': its {what} (obs {indices[0]}..{indices[-1]}) must lie in a plain group")

    for g in groups:
        if g.closed_form and g.velocity:
            raise ValueError(f"group '{g.name}' is integrated in closed form: it cannot also list velocities")
        if g.rotated_by is not None:
            if g.size % 3 or g.minus_change_of is not None:
                raise ValueError(f"group '{g.name}': a rotated group holds 3-vectors ({g.size} entries)")
            plain(range(g.rotated_by, g.rotated_by + 3), "angular velocity", g)
        if g.translated_by is not None:
            if g.rotated_by is None:
                raise ValueError(f"group '{g.name}': translated points must also be rotated (set rotated_by)")
            plain(range(g.translated_by, g.translated_by + 3), "linear velocity", g)
        if g.minus_change_of is not None:
            source = range(g.minus_change_of, g.minus_change_of + g.size)
            if any(i in closed or not 0 <= i < obs_size for i in source):
                raise ValueError(f"group '{g.name}': the positions it follows (obs {source[0]}..{source[-1]}) "
                                 "must lie in groups with a network")


def input_index(groups: Tuple[ObsGroup, ...]) -> Tuple[int, ...]:
    """The observation entries the group networks read: every group's but the closed-form ones'.

    Closed-form groups hold world-fixed targets (directions, poses) seen from the body: they do not change
    the body's dynamics, and leaving them out lets one model serve every task of a body (Sec. 5.3's transfer).
    """
    return tuple(i for g in sorted(groups, key=lambda g: g.start) if not g.closed_form for i in range(g.start, g.stop))


def transfer_mlp_params(source: dict, source_groups: Tuple[ObsGroup, ...], target: dict,
                        target_groups: Tuple[ObsGroup, ...]) -> dict:
    """`target`'s per-group MLP params with `source`'s networks and statistics, across tasks of one body.

    The two tasks must give their networks the same inputs (the same non-closed-form groups: names, slices;
    the task parts that differ are closed-form groups, e.g. AntWalkForward's target direction against AntGTTP's
    target pose) and the same head layout; ValueError otherwise. The networks are copied whole; the statistics
    of the input entries come from the source, those of the closed-form entries (which no network reads) stay.
    """
    def layout(groups):
        return [(g.name, g.start, g.stop, g.velocity) for g in sorted(groups, key=lambda g: g.start) if not g.closed_form]

    if layout(source_groups) != layout(target_groups):
        raise ValueError(f"the source's network groups {layout(source_groups)} are not this task's {layout(target_groups)}")
    shapes = lambda tree: jax.tree.map(jnp.shape, tree)  # noqa: E731
    if shapes(source["net"]) != shapes(target["net"]):
        raise ValueError("the source's networks (sizes, reward or termination heads) differ from this run's")
    src = jnp.asarray(input_index(source_groups), jnp.int32)
    dst = jnp.asarray(input_index(target_groups), jnp.int32)

    def merge(a, b):  # a: source RunningStats leaf, b: target's
        return b.at[dst].set(a[src]) if jnp.ndim(b) == 1 else a

    stats = jax.tree.map(merge, source["stats"], target["stats"])
    return {**target, "net": source["net"], "stats": stats}


def integrate_closed_form(groups: Tuple[ObsGroup, ...], obs: jax.Array, next_obs: jax.Array, dt: float) -> dict:
    """{group name: next value [size]} of the closed-form groups (App. C.2; module docstring), from obs [D]
    and next_obs [D], of which only the entries of the other groups (velocities, joint angles) are read."""
    out = {}
    for g in groups:
        sl = slice(g.start, g.stop)
        if g.minus_change_of is not None:
            source = slice(g.minus_change_of, g.minus_change_of + g.size)
            out[g.name] = obs[sl] - (next_obs[source] - obs[source])
        elif g.rotated_by is not None:
            mean = lambda i: 0.5 * (obs[i : i + 3] + next_obs[i : i + 3])  # noqa: E731
            vectors = obs[sl].reshape(-1, 3)
            if g.translated_by is not None:
                vectors = vectors - mean(g.translated_by) * dt
            out[g.name] = rotate_egocentric(vectors, mean(g.rotated_by), dt).reshape(-1)
    return out


def make_mlp_model(cfg, obs_size: int, action_size: int, dt: float, groups: Tuple[ObsGroup, ...]) -> Model:
    """Builds the per-group MLP model.

    cfg: MLPModelConfig; dt: the model step in seconds (control dt x action
    repeat); groups: the task's observation groups.
    """
    groups = tuple(sorted(groups, key=lambda g: g.start))
    check_groups(groups, obs_size)
    net = GroupMLPs(groups, tuple(cfg.hidden_sizes))
    inputs = jnp.asarray(input_index(groups), jnp.int32)
    heads_init, reward_fn, termination_fn, heads_loss = make_heads(
        cfg.head_sizes, cfg.learn_reward, cfg.learn_termination, obs_size, action_size
    )

    def init(key):
        k_dyn, k_heads = jax.random.split(key)
        x = jnp.zeros((len(inputs) + action_size,))
        return {"net": {"dynamics": net.init(k_dyn, x), **heads_init(k_heads)}, "stats": init_model_stats(obs_size)}

    def predict(params, obs, action):
        """obs [D], action [A] -> next obs [D] (Eqs. 17-18)."""
        stats: ModelStats = params["stats"]
        out = net.apply(params["net"]["dynamics"], jnp.concatenate([normalize_obs(stats, obs)[inputs], action]))
        mu, sigma = stats.delta.mean, std_of(stats.delta)
        pieces = {}
        for g in groups:  # plain delta groups first: Eq. 18 and the closed-form groups read their predictions
            if not g.velocity and not g.closed_form:
                sl = slice(g.start, g.stop)
                pieces[g.name] = obs[sl] + mu[sl] + sigma[sl] * out[g.name]
        plain = jnp.concatenate([pieces.get(g.name, jnp.zeros((g.size,))) for g in groups])
        for g in groups:
            if g.velocity:
                sl = slice(g.start, g.stop)
                velocity_next = plain[jnp.asarray(g.velocity)]
                pieces[g.name] = obs[sl] + velocity_next * dt + sigma[sl] * out[g.name]
        known = jnp.concatenate([pieces.get(g.name, jnp.zeros((g.size,))) for g in groups])
        pieces.update(integrate_closed_form(groups, obs, known, dt))
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

    reward, termination = learned_reward_heads(reward_fn, termination_fn, observation)

    model = Model(
        name="mlp",
        init=init,
        initial_state=initial_state,
        initial_particles=default_initial_particles(initial_state),
        step=step,
        observation=observation,
        reward=reward,
        termination=termination,
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
