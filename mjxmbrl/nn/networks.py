"""Flax linen networks shared by models and learners: MLP, tanh-Gaussian actor, critic and value ensembles,
and the MPO policy and distributional critic of Byravan et al. 2022 (Fig. 6)."""

from typing import Callable, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Dense -> [LayerNorm] -> activation for each hidden size, then a linear output layer.

    x [..., D] -> [..., out_size].
    """

    hidden_sizes: Sequence[int]
    out_size: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for size in self.hidden_sizes:
            x = nn.Dense(size)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = self.activation(x)
        return nn.Dense(self.out_size)(x)


def squash_log_std(raw: jax.Array, log_std_min: float, log_std_max: float) -> jax.Array:
    """Maps raw outputs smoothly onto (log_std_min, log_std_max) with a rescaled tanh.

    A hard clip would zero the gradient outside the bounds; tanh keeps it alive.
    """
    return log_std_min + 0.5 * (log_std_max - log_std_min) * (jnp.tanh(raw) + 1.0)


class GaussianActor(nn.Module):
    """obs [..., D] -> (pre-tanh mean [..., A], log_std [..., A] in (log_std_min, log_std_max))."""

    action_size: int
    hidden_sizes: Sequence[int] = (256, 256)
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> Tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden_sizes, 2 * self.action_size, self.activation, self.layer_norm)(obs)
        mean, raw_log_std = jnp.split(out, 2, axis=-1)
        return mean, squash_log_std(raw_log_std, self.log_std_min, self.log_std_max)


class Critic(nn.Module):
    """Q(s, a): (obs [..., D], action [..., A]) -> [...]."""

    hidden_sizes: Sequence[int] = (256, 256)
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden_sizes, 1, self.activation, self.layer_norm)(x)[..., 0]


class CriticEnsemble(nn.Module):
    """`num_critics` independent critics: (obs [..., D], action [..., A]) -> Q [num_critics, ...].

    `nn.vmap` stacks each member's parameters on a leading axis and splits the init RNG,
    so members start from different weights and run as one batched matmul.
    """

    num_critics: int = 2
    hidden_sizes: Sequence[int] = (256, 256)
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            Critic,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_critics,
        )
        return ensemble(self.hidden_sizes, self.activation, self.layer_norm, name="members")(obs, action)


class Value(nn.Module):
    """V(s): obs [..., D] -> [...]."""

    hidden_sizes: Sequence[int] = (256, 256)
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden_sizes, 1, self.activation, self.layer_norm)(obs)[..., 0]


class ValueEnsemble(nn.Module):
    """`num_values` independent state values V_k(s): obs [..., D] -> [num_values, ...].

    Stacked with `nn.vmap` like CriticEnsemble (parameters on a leading axis, init RNG split
    per member); the K value functions of POLO (Lowrey et al. 2019, "Plan Online, Learn
    Offline", arXiv:1811.01848, Sec. 2.4).
    """

    num_values: int = 2
    hidden_sizes: Sequence[int] = (256, 256)
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            Value,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_values,
        )
        return ensemble(self.hidden_sizes, self.activation, self.layer_norm, name="members")(obs)


class LayerNormMLP(nn.Module):
    """Dense -> LayerNorm -> tanh, then (Dense -> elu) for the other hidden sizes, then a linear output.

    The torso of Byravan et al. 2022 Fig. 6 (dense layers with elu after a layer-normalised first
    layer squashed by tanh). x [..., D] -> [..., out_size].
    """

    hidden_sizes: Sequence[int]
    out_size: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, size in enumerate(self.hidden_sizes):
            x = nn.Dense(size)(x)
            x = jnp.tanh(nn.LayerNorm()(x)) if i == 0 else nn.elu(x)
        return nn.Dense(self.out_size)(x)


class TanhMeanGaussianPolicy(nn.Module):
    """obs [..., D] -> (mean [..., A] in (-1, 1), std [..., A] > min_std): a Gaussian, not tanh-squashed.

    Byravan et al. 2022 Fig. 6a: the mean is scaled by a tanh, the standard deviation is a softplus
    plus a small floor (1e-4). Samples may leave [-1, 1]; the actor clips what it executes.
    """

    action_size: int
    hidden_sizes: Sequence[int] = (256, 256, 256)
    min_std: float = 1e-4

    @nn.compact
    def __call__(self, obs: jax.Array) -> Tuple[jax.Array, jax.Array]:
        out = LayerNormMLP(self.hidden_sizes, 2 * self.action_size)(obs)
        raw_mean, raw_std = jnp.split(out, 2, axis=-1)
        return jnp.tanh(raw_mean), jax.nn.softplus(raw_std) + self.min_std


class DistributionalCritic(nn.Module):
    """Z(s, a): (obs [..., D], action [..., A]) -> logits [..., num_bins] of a histogram over returns.

    Byravan et al. 2022 Fig. 6b (101 bins over a fixed return range; Hoffman et al. 2020).
    """

    num_bins: int = 101
    hidden_sizes: Sequence[int] = (256, 256, 256, 256, 256)

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        return LayerNormMLP(self.hidden_sizes, self.num_bins)(jnp.concatenate([obs, action], axis=-1))
