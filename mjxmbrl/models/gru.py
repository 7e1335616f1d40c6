"""GRU multi-step dynamics with reward and termination models (Amos et al. 2021, Sec. 4.2).

From the state x_t and the GRU state h_t (h_1 = 0):

    z_t     = f_enc(x_t, u_t)                  (MLP)
    h_{t+1} = GRU(z_t, h_t)                    (multi-layer)
    x_{t+1} = x_t + f_dec(h_{t+1})             (MLP, predicts the state delta)

Inputs are normalised and the decoder predicts the delta in units of the data's
one-step change (mu + sigma * f_dec), both moments kept in params["stats"].
Trained with the multi-step squared error of Eq. 10 over windows x_{1:H} (the
error normalised per dimension by the observation std), plus the reward model
(Eq. 11) and the termination model (Eqs. 12-13) from nn/heads.py. The
model state is {"obs": [D], "h": [layers, gru_size]}.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mjxmbrl.models.base import (
    Model,
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


@dataclasses.dataclass(frozen=True)
class GRUModelConfig:
    """GRU multi-step dynamics with reward and termination models (Amos et al. 2021, Sec. 4.2, Table 3)."""

    name: str = "gru"
    encoder_sizes: Tuple[int, ...] = (512, 512)
    gru_size: int = 512
    gru_layers: int = 2
    decoder_sizes: Tuple[int, ...] = (512, 512)
    learning_rate: float = 1e-3
    batch_size: int = 1024  # multi-step batch size
    seq_len: int = 10  # H of Eq. 10 (sequence x_{1:H}); SVG sets it from its horizon
    updates_per_step: int = 4  # N_seq
    grad_clip: float = 100.0
    learn_reward: bool = True  # Eq. 11
    learn_termination: bool = True  # Eq. 12-13 (time-limit truncations excluded)
    head_sizes: Tuple[int, ...] = (512, 512)


class GRUDynamics(nn.Module):
    """(obs_norm [D], action [A], h [L, G]) -> (h' [L, G], normalised delta [D])."""

    obs_size: int
    encoder_sizes: Sequence[int]
    gru_size: int
    gru_layers: int
    decoder_sizes: Sequence[int]

    @nn.compact
    def __call__(self, obs_norm: jax.Array, action: jax.Array, h: jax.Array):
        x = MLP(tuple(self.encoder_sizes), self.gru_size, nn.relu, name="encoder")(jnp.concatenate([obs_norm, action], -1))
        new_h = []
        for layer in range(self.gru_layers):
            h_layer, x = nn.GRUCell(self.gru_size, name=f"gru_{layer}")(h[layer], x)
            new_h.append(h_layer)
        delta = MLP(tuple(self.decoder_sizes), self.obs_size, nn.relu, name="decoder")(x)
        return jnp.stack(new_h), delta


def make_gru_model(cfg, obs_size: int, action_size: int) -> Model:
    """Builds the GRU dynamics model from a GRUModelConfig."""
    net = GRUDynamics(obs_size, tuple(cfg.encoder_sizes), cfg.gru_size, cfg.gru_layers, tuple(cfg.decoder_sizes))
    heads_init, reward_fn, termination_fn, heads_loss = make_heads(
        cfg.head_sizes, cfg.learn_reward, cfg.learn_termination, obs_size, action_size
    )
    zero_h = jnp.zeros((cfg.gru_layers, cfg.gru_size), jnp.float32)

    def init(key):
        k_dyn, k_heads = jax.random.split(key)
        dyn = net.init(k_dyn, jnp.zeros((obs_size,)), jnp.zeros((action_size,)), zero_h)
        return {"net": {"dynamics": dyn, **heads_init(k_heads)}, "stats": init_model_stats(obs_size)}

    def initial_state(params, obs, key, belief=None):
        del params, key, belief
        return {"obs": obs, "h": zero_h}

    def step(params, z, action, key):
        del key
        stats = params["stats"]
        h, delta = net.apply(params["net"]["dynamics"], normalize_obs(stats, z["obs"]), action, z["h"])
        return {"obs": z["obs"] + stats.delta.mean + std_of(stats.delta) * delta, "h": h}

    def observation(params, z):
        del params
        return z["obs"]

    reward, termination = learned_reward_heads(reward_fn, termination_fn, observation)

    model = Model(
        name="gru",
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
        """Eq. 10 (masked at episode ends) + Eqs. 11 and 13; batch [B, T, ...], mask [B, T]."""
        errors = multi_step_errors(model, params, batch, key)
        dyn_loss = masked_mean(jnp.mean(errors, axis=-1), mask)
        head_total, head_metrics = heads_loss(params["net"], normalize_obs(params["stats"], batch.obs), batch)
        total = dyn_loss + head_total
        return total, {"model/loss": total, "model/dynamics_loss": dyn_loss, **head_metrics, **step_error_metrics(errors, mask)}

    return model._replace(loss=loss)
