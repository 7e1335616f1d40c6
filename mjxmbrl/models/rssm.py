"""Recurrent state-space model (PlaNet, Hafner et al. 2019) on proprioceptive or pixel observations.

S V, Jalagam, LeCun, Sobal 2023, "Gradient-based Planning with World Models", arXiv:2312.17227,
Sec. 3.2 (Eqs. 1-2) and App. A.7.
The latent state z = {"h": [belief_size], "s": [state_size]} splits into a
deterministic GRU belief h and a Gaussian stochastic state s:

    deterministic transition  h_t = f(h_{t-1}, s_{t-1}, a_{t-1})       GRUCell
    prior (stochastic model)  s_t ~ p(s_t | h_t)                        MLP h -> (mean, std)
    posterior (filter)        s_t ~ q(s_t | h_t, e(o_t))                MLP [h, e] -> (mean, std)  (Eq. 1)
    observation model         o_t ~ N(g([h_t, s_t]), I)                 in normalised units
    reward model              r_t ~ N(r([h_t, s_t]), 1)

with e the MLP encoder of the normalised observation. Standard deviations are
softplus(raw) + min_std, so neither distribution collapses.

Training maximises the ELBO of Eq. 2 on windows of T transitions: with the
observations o_0 = obs[:, 0] and o_{t+1} = next_obs[:, t], the filter starts
from h_0 = 0, s_0 ~ q(h_0, e(o_0)) and for t = 0..T-1 computes
h_{t+1} = f(h_t, s_t, a_t), the prior p(h_{t+1}) and the posterior
q(h_{t+1}, e(o_{t+1})), from which s_{t+1} is sampled (reparameterised). The
negative ELBO we minimise, each term averaged over valid steps, is

    sum_d (g_d(h_t, s_t) - o_norm_{t,d})^2                  t = 0..T    (reconstruction)
  + (r(h_{t+1}, s_{t+1}) - r_t)^2                           t = 0..T-1  (reward)
  + kl_scale * max(KL[q_{t+1} || p_{t+1}], free_nats)       t = 0..T-1  (KL, free nats)

(unit-variance Gaussian log-likelihoods without their constants and factor 1/2,
as in PlaNet). The KL of two diagonal Gaussians is computed in closed form and
summed over state dimensions before the free-nats clamp, per window and step.

Planning and open-loop prediction use the prior only: `step` applies f and
samples s' ~ p(h'); `observation` decodes and de-normalises the mean;
`reward(z, a, z')` decodes the reward at z'. There is no termination model.

While acting, the agent keeps a filtered belief: `initial_state(obs_0)` is the
loss's z_0 and `filter(z, a, o')` its filter step h' = f(h, s, a),
s' ~ q(s' | h', e(o')), so the belief after k steps of an episode is the
posterior the ELBO trains. Planners start from that belief (`initial_particles`
with `belief` tiles it over the particles, as PlaNet plans from the current
posterior state); without one they restart from the observation. Rollouts and
the filter sample s (rollout="sample", as the loss) or take the Gaussian's
mean (rollout="mean").

Pixel observations (model.pixels=true with env.pixels=true, envs/pixels.py):
the observation is a 64 x 64 RGB frame quantised to 5 bits, flattened, with
values in [-0.5, 0.5). The encoder e and the observation model g are then
PlaNet's convolutional networks (Hafner et al. 2019, App. A; relu):

    e: 4 convs, 32-64-128-256 channels, kernel 4, stride 2 (64 -> 31 -> 14 -> 6 -> 2),
       flattened to 2 x 2 x 256 = 1024 (a dense layer to embedding_size if that is not 1024)
    g: dense [h, s] -> 1024, reshaped to 1 x 1 x 1024, then 4 transposed convs
       128-64-32-3 channels, kernels 5-5-6-6, stride 2 (1 -> 5 -> 13 -> 30 -> 64)

The normalisation statistics are not applied: the encoder reads the quantised
frame and the reconstruction target is the frame itself, both with PlaNet's
uniform dequantisation noise U[0, 2^-bits) added in the loss (a fresh draw per
update; acting and planning see the deterministic frame). The reconstruction
error is summed over the 64 * 64 * 3 values as above; PlaNet's free nats
are 3 (configs/gradmpc/planet_pixels_cartpole_swingup.yaml).

Activation: ELU in every MLP and after the state-action embedding (as in
PlaNet's RSSM cell; the paper's App. A.7 lists relu). We prefer ELU because
gradient-based planners differentiate through the model with respect to the
actions, and ELU's Jacobian is continuous where relu's is piecewise constant.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mjxmbrl.envs.pixels import dequantization_noise
from mjxmbrl.models.base import (
    Model,
    identity_input,
    check_learned_model,
    init_model_stats,
    masked_mean,
    normalize_obs,
    stats_input,
    std_of,
)
from mjxmbrl.nn.networks import MLP
from mjxmbrl.types import ConfigError, MjxmbrlError, Transition


@dataclasses.dataclass(frozen=True)
class RSSMModelConfig:
    """Recurrent state-space model (Hafner et al. 2019; S V et al. 2023, arXiv:2312.17227, Sec. 3.2, App. A.7)."""

    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {"rollout": ("sample", "mean")}

    name: str = "rssm"
    belief_size: int = 200  # deterministic GRU state h
    state_size: int = 30  # stochastic state s
    hidden_size: int = 200
    embedding_size: int = 200  # MLP encoder of proprioceptive observations (PlaNet: 1024 for its CNN on pixels)
    min_std: float = 0.1
    # PlaNet uses 3 for 64x64 images; on proprioceptive vectors the KL stays below 3 nats, where max(KL, 3)
    # has no gradient and the prior (used for open-loop prediction) barely trains: 1.0 cut the 1-step
    # error on CartpoleSwingup from 0.057 to 0.015 (docs/models.md).
    free_nats: float = 1.0
    kl_scale: float = 1.0
    learning_rate: float = 1e-3
    adam_eps: float = 1e-4
    grad_clip: float = 1000.0
    batch_size: int = 50
    seq_len: int = 50
    updates_per_step: int = 1
    # Pixel observations (env.pixels=true, which this must equal): PlaNet's CNN encoder and decoder on 64 x 64
    # frames, no normalisation statistics, dequantisation noise in the loss (module docstring).
    pixels: bool = False
    rollout: str = "sample"  # sample: s ~ prior in rollouts (PlaNet) | mean: the prior's mean (deterministic)


def check_rssm(cfg) -> None:
    check_learned_model(cfg)
    env_pixels = bool(getattr(cfg.env, "pixels", False))
    if cfg.model.pixels and not env_pixels:
        raise ConfigError(
            f"model.pixels=true asks the RSSM for image observations, but env '{cfg.env.name}' provides proprioceptive "
            "observations (pixel observations are not enabled: env.pixels=false); set env.pixels=true or model.pixels=false"
        )
    if env_pixels and not cfg.model.pixels:
        raise ConfigError(
            f"env.pixels=true gives env '{cfg.env.name}' image observations, but the RSSM reads proprioceptive "
            "vectors (model.pixels=false); set model.pixels=true or env.pixels=false"
        )
    if cfg.model.pixels and cfg.env.image_size != PIXEL_IMAGE_SIZE:
        raise ConfigError(
            f"model.pixels=true: PlaNet's CNN encoder and decoder take {PIXEL_IMAGE_SIZE} x {PIXEL_IMAGE_SIZE} frames; "
            f"set env.image_size={PIXEL_IMAGE_SIZE} (got {cfg.env.image_size})"
        )


ACTIVATION = nn.elu
PIXEL_IMAGE_SIZE = 64  # PlaNet's frames; its conv stacks map 64 x 64 to 2 x 2 and 1 x 1 back to 64 x 64
CNN_DEPTH = 32  # channels of the first conv (PlaNet: 32, doubling per layer)

Gaussian = Tuple[jax.Array, jax.Array]  # (mean [..., S], std [..., S])


def gaussian_kl(q: Gaussian, p: Gaussian) -> jax.Array:
    """KL[q || p] of diagonal Gaussians, summed over the last axis: [..., S] -> [...].

    Per dimension: log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2) - 1/2.
    """
    (mean_q, std_q), (mean_p, std_p) = q, p
    ratio = (jnp.square(std_q) + jnp.square(mean_q - mean_p)) / (2.0 * jnp.square(std_p))
    per_dim = jnp.log(std_p) - jnp.log(std_q) + ratio - 0.5
    return jnp.sum(per_dim, axis=-1)


def sample_gaussian(dist: Gaussian, key: jax.Array) -> jax.Array:
    """Reparameterised sample mean + std * eps, so gradients flow into mean and std."""
    mean, std = dist
    return mean + std * jax.random.normal(key, mean.shape, mean.dtype)


def matmul_convs_default() -> bool:
    """Convolutions as patches x matrix products on CPUs (see `conv2d_valid`), XLA's convolutions elsewhere."""
    return jax.default_backend() == "cpu"


def conv2d_valid(x: jax.Array, kernel: jax.Array, stride: int, matmul: bool) -> jax.Array:
    """VALID 2-D convolution (cross-correlation) of NHWC `x` with an HWIO `kernel` at `stride`.

    matmul=True computes it as the kh*kw strided slices of x, concatenated along channels, times the
    kernel reshaped to [kh*kw*C_in, C_out]: the same numbers. Measured on the 2-core CPU (jax 0.10.2):
    XLA's CPU convolution inside a lax.scan or lax.cond, where the model update runs in the train step,
    took 16x its time outside one (259 against 16 ms for a 4x4 stride-2 layer on 36 frames, forward and
    backward), and the pixel RSSM's whole update 8-9x; the matrix products do not slow down there.
    """
    if not matmul:
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    kh, kw, c_in, c_out = kernel.shape
    out_h, out_w = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    cols = [
        x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
        for i in range(kh) for j in range(kw)
    ]
    return jnp.concatenate(cols, axis=-1) @ kernel.reshape(kh * kw * c_in, c_out)


class Conv2D(nn.Module):
    """flax.linen.Conv(features, (k, k), strides=(s, s), padding="VALID") with the same parameters
    (kernel [k, k, C_in, C_out], lecun-normal; bias zeros), computed by `conv2d_valid`."""

    features: int
    kernel_size: int
    stride: int = 1
    matmul: Optional[bool] = None  # None: matmul_convs_default()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        matmul = matmul_convs_default() if self.matmul is None else self.matmul
        return conv2d_valid(x, kernel, self.stride, matmul) + bias


class ConvEncoder(nn.Module):
    """PlaNet's image encoder: flattened frames [..., 64*64*3] -> embeddings [..., embedding_size]."""

    embedding_size: int
    image_size: int = PIXEL_IMAGE_SIZE
    depth: int = CNN_DEPTH
    matmul: Optional[bool] = None  # convolutions as matrix products (conv2d_valid); None: on CPUs

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        lead = obs.shape[:-1]
        x = obs.reshape((-1, self.image_size, self.image_size, 3))
        for mult in (1, 2, 4, 8):
            x = nn.relu(Conv2D(self.depth * mult, 4, stride=2, matmul=self.matmul)(x))
        x = x.reshape((x.shape[0], -1))  # 2 x 2 x 256 = 1024
        if x.shape[-1] != self.embedding_size:
            x = nn.Dense(self.embedding_size)(x)
        return x.reshape(lead + (self.embedding_size,))


class StridedConvTranspose(nn.Module):
    """flax.linen.ConvTranspose(features, (k, k), strides=(2, 2), padding="VALID"), computed faster on CPUs.

    Same parameters (kernel [k, k, C_in, C_out], lecun-normal; bias zeros) and the same function:
    out[o] = sum_i x[i] kernel[2i - o + k - 1] per spatial axis, size 2 * in + k - 2. XLA's CPU
    kernel gradient of the stride-2 (input-dilated) convolution is slow (0.2-0.5 s per layer for
    36 frames on 2 cores), so each output parity (a, b) is an ordinary stride-1 convolution with the
    taps kernel[1-a::2, 1-b::2] (an odd k gets a zero tap in front), the four run as one convolution
    and interleaved (by `conv2d_valid`); a 1 x 1 input is one matrix product with the flipped kernel.
    """

    features: int
    kernel_size: int
    matmul: Optional[bool] = None  # None: matmul_convs_default()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        n, height, width, _ = x.shape
        if height == width == 1:
            return jnp.einsum("nc,hwcd->nhwd", x[:, 0, 0], kernel[::-1, ::-1]) + bias
        out_h, out_w = 2 * height + k - 2, 2 * width + k - 2
        if k % 2:
            kernel = jnp.pad(kernel, ((1, 0), (1, 0), (0, 0), (0, 0)))
            k += 1
        pad = k // 2 - 1
        taps = jnp.concatenate([kernel[1 - a::2, 1 - b::2] for a in (0, 1) for b in (0, 1)], axis=-1)
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        y = conv2d_valid(x, taps, 1, matmul_convs_default() if self.matmul is None else self.matmul)
        h, w = y.shape[1:3]
        y = y.reshape(n, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, self.features)
        return y[:, :out_h, :out_w] + bias


class ConvDecoder(nn.Module):
    """PlaNet's image decoder: features [..., F] -> mean frames [..., 64*64*3] (no output activation)."""

    depth: int = CNN_DEPTH
    matmul: Optional[bool] = None  # convolutions as matrix products (conv2d_valid); None: on CPUs

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        lead = features.shape[:-1]
        x = nn.Dense(32 * self.depth)(features.reshape((-1, features.shape[-1])))
        x = x.reshape((-1, 1, 1, 32 * self.depth))
        layers = ((4 * self.depth, 5), (2 * self.depth, 5), (self.depth, 6), (3, 6))
        for i, (channels, kernel) in enumerate(layers):
            x = StridedConvTranspose(channels, kernel, matmul=self.matmul)(x)
            if i < len(layers) - 1:
                x = nn.relu(x)
        return x.reshape(lead + (-1,))


class RSSMNet(nn.Module):
    """All RSSM sub-networks; each method works on any leading batch axes.

    Called directly (`__call__`) it touches every sub-network once, which is
    only used by `init` to create all parameters.
    """

    obs_size: int
    belief_size: int
    state_size: int
    hidden_size: int
    embedding_size: int
    min_std: float
    pixels: bool = False  # PlaNet's CNN encoder and decoder on flattened 64 x 64 RGB frames

    def setup(self):
        e, h = self.embedding_size, self.hidden_size
        self.encoder = ConvEncoder(e) if self.pixels else MLP((e, e), e, ACTIVATION)
        self.state_action_embed = nn.Dense(h)
        self.gru = nn.GRUCell(features=self.belief_size)
        self.prior_net = MLP((h,), 2 * self.state_size, ACTIVATION)
        self.posterior_net = MLP((h,), 2 * self.state_size, ACTIVATION)
        self.obs_decoder = ConvDecoder() if self.pixels else MLP((h, h), self.obs_size, ACTIVATION)
        self.reward_decoder = MLP((h, h), 1, ACTIVATION)

    def _gaussian(self, raw: jax.Array) -> Gaussian:
        mean, raw_std = jnp.split(raw, 2, axis=-1)
        # softplus keeps std positive with a smooth gradient; min_std bounds the KL's 1/std^2.
        return mean, nn.softplus(raw_std) + self.min_std

    def encode(self, obs_norm: jax.Array) -> jax.Array:
        """Normalised observation (pixels: the quantised frame) [..., D] -> embedding [..., E]."""
        return self.encoder(obs_norm)

    def transition(self, h: jax.Array, s: jax.Array, action: jax.Array) -> jax.Array:
        """h' = GRU(h, act(Dense([s, a]))): [..., H_b], [..., S], [..., A] -> [..., H_b]."""
        x = ACTIVATION(self.state_action_embed(jnp.concatenate([s, action], axis=-1)))
        h_next, _ = self.gru(h, x)
        return h_next

    def prior(self, h: jax.Array) -> Gaussian:
        """p(s | h): belief [..., H_b] -> (mean, std) [..., S]."""
        return self._gaussian(self.prior_net(h))

    def posterior(self, h: jax.Array, embedding: jax.Array) -> Gaussian:
        """q(s | h, e(o)) of Eq. 1: ([..., H_b], [..., E]) -> (mean, std) [..., S]."""
        return self._gaussian(self.posterior_net(jnp.concatenate([h, embedding], axis=-1)))

    def decode_obs(self, h: jax.Array, s: jax.Array) -> jax.Array:
        """Mean of p(o | h, s) in normalised units (pixels: frame values), [..., D]."""
        return self.obs_decoder(jnp.concatenate([h, s], axis=-1))

    def decode_reward(self, h: jax.Array, s: jax.Array) -> jax.Array:
        """Mean of p(r | h, s), [...]."""
        return self.reward_decoder(jnp.concatenate([h, s], axis=-1))[..., 0]

    def filter_step(self, h: jax.Array, s: jax.Array, action: jax.Array, embedding: jax.Array):
        """One filter step: h' = f(h, s, a), prior p(s' | h'), posterior q(s' | h', e) (Eq. 1) -> (h', prior, post)."""
        h = self.transition(h, s, action)
        return h, self.prior(h), self.posterior(h, embedding)

    def __call__(self, obs_norm: jax.Array, action: jax.Array):
        h = jnp.zeros(obs_norm.shape[:-1] + (self.belief_size,), obs_norm.dtype)
        s = self.posterior(h, self.encode(obs_norm))[0]
        h = self.transition(h, s, action)
        s = self.prior(h)[0]
        return self.decode_obs(h, s), self.decode_reward(h, s)


def make_rssm_net(cfg, obs_size: int) -> RSSMNet:
    """The RSSM's networks for config `cfg` (sizes and min_std) and observations of `obs_size`."""
    return RSSMNet(
        obs_size=obs_size,
        belief_size=cfg.belief_size,
        state_size=cfg.state_size,
        hidden_size=cfg.hidden_size,
        embedding_size=cfg.embedding_size,
        min_std=cfg.min_std,
        pixels=bool(getattr(cfg, "pixels", False)),
    )


def posterior_sequence(net: RSSMNet, net_params, embeddings: jax.Array, actions: jax.Array, key: jax.Array):
    """The ELBO's filter over windows (Eq. 1-2), sampling s reparameterised at every step.

    embeddings [B, T+1, E] of o_0..o_T, actions [B, T, A]. h_0 = 0,
    s_0 ~ q(h_0, e(o_0)) with the first of split(key), then for t = 0..T-1 the
    filter step with the t-th of split(second, T). Returns h [B, T+1, H_b],
    s [B, T+1, S] and KL[q_{t+1} || p_{t+1}] [B, T].
    """
    batch_size, horizon = actions.shape[:2]
    key_0, key_scan = jax.random.split(key)
    h_0 = jnp.zeros((batch_size, net.belief_size), jnp.float32)
    s_0 = sample_gaussian(net.apply(net_params, h_0, embeddings[:, 0], method=RSSMNet.posterior), key_0)

    def filter_step(carry, inputs):
        h, s = carry
        action, embedding, step_key = inputs
        h, prior, post = net.apply(net_params, h, s, action, embedding, method=RSSMNet.filter_step)
        s = sample_gaussian(post, step_key)
        return (h, s), (h, s, gaussian_kl(post, prior))

    time_major = (
        jnp.swapaxes(actions, 0, 1),
        jnp.swapaxes(embeddings[:, 1:], 0, 1),
        jax.random.split(key_scan, horizon),
    )
    _, (hs, ss, kl) = jax.lax.scan(filter_step, (h_0, s_0), time_major)
    hs, ss, kl = (jnp.swapaxes(x, 0, 1) for x in (hs, ss, kl))  # [B, T, ...], kl [B, T]
    all_h = jnp.concatenate([h_0[:, None], hs], axis=1)
    all_s = jnp.concatenate([s_0[:, None], ss], axis=1)
    return all_h, all_s, kl


def make_rssm_model(cfg, obs_size: int, action_size: int, bit_depth: int = 5) -> Model:
    """Builds the RSSM behind the `Model` interface (models/base.py).

    cfg: RSSMModelConfig (belief_size, state_size, hidden_size, embedding_size,
    min_std, free_nats, kl_scale, pixels; the optimiser fields are the trainer's).
    bit_depth: of the quantised frames (pixels only): the dequantisation noise is U[0, 2^-bit_depth).
    """
    pixels = bool(getattr(cfg, "pixels", False))
    if pixels and obs_size != PIXEL_IMAGE_SIZE * PIXEL_IMAGE_SIZE * 3:
        raise MjxmbrlError(
            f"pixels=True: the RSSM's CNN takes flattened {PIXEL_IMAGE_SIZE} x {PIXEL_IMAGE_SIZE} RGB frames "
            f"({PIXEL_IMAGE_SIZE * PIXEL_IMAGE_SIZE * 3} values), got observations of size {obs_size}"
        )
    net = make_rssm_net(cfg, obs_size)
    free_nats = float(cfg.free_nats)
    rollout = getattr(cfg, "rollout", "sample")

    def draw(dist, key):
        """Rollouts sample s (PlaNet); rollout="mean" takes the Gaussian's mean (deterministic prediction)."""
        return dist[0] if rollout == "mean" else sample_gaussian(dist, key)

    kl_scale = float(cfg.kl_scale)

    def apply(params, method, *args):
        return net.apply(params["net"], *args, method=method)

    def init(key):
        """params = {"net": flax params of every sub-network, "stats": fresh ModelStats}."""
        net_params = net.init(key, jnp.zeros((obs_size,)), jnp.zeros((action_size,)))
        return {"net": net_params, "stats": init_model_stats(obs_size)}

    def model_input(params, obs):
        """What the encoder reads: normalised observations, or the quantised frames as they are (pixels)."""
        return obs if pixels else normalize_obs(params["stats"], obs)

    def embed(params, obs):
        return apply(params, RSSMNet.encode, model_input(params, obs))

    def initial_state(params, obs, key, belief=None):
        """The filtered `belief` if given, else z_0 = {h: 0, s ~ q(s | h=0, e(obs))}; obs [D] -> h [H_b], s [S]."""
        if belief is not None:
            return belief
        h = jnp.zeros((cfg.belief_size,), jnp.float32)
        s = draw(apply(params, RSSMNet.posterior, h, embed(params, obs)), key)
        return {"h": h, "s": s}

    def initial_particles(params, obs, key, num_particles: int, belief=None):
        """`belief` tiled over the P particles (all plan from the current posterior), else P draws of z_0."""
        if belief is None:
            keys = jax.random.split(key, num_particles)
            return jax.vmap(lambda k: initial_state(params, obs, k))(keys)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_particles,) + x.shape), belief)

    def filter(params, z, action, obs, key):
        """The loss's filter step: h' = f(h, s, a), s' ~ q(s' | h', e(obs)) (Eq. 1); obs [D] is o' after `action`."""
        h, _, post = apply(params, RSSMNet.filter_step, z["h"], z["s"], action, embed(params, obs))
        return {"h": h, "s": draw(post, key)}

    def step(params, z, action, key):
        """One prior step: h' = f(h, s, a), s' ~ p(s' | h') (no observation is fed back)."""
        h = apply(params, RSSMNet.transition, z["h"], z["s"], action)
        s = draw(apply(params, RSSMNet.prior, h), key)
        return {"h": h, "s": s}

    def observation(params, z):
        """De-normalised decoder mean [D] (pixels: the decoded frame, flattened)."""
        obs_norm = apply(params, RSSMNet.decode_obs, z["h"], z["s"])
        if pixels:
            return obs_norm
        obs_stats = params["stats"].obs
        return obs_norm * std_of(obs_stats) + obs_stats.mean

    def reward(params, z, action, next_z):
        """Predicted reward [] of the transition z -a-> next_z, decoded at next_z."""
        del z, action
        return apply(params, RSSMNet.decode_reward, next_z["h"], next_z["s"])

    def loss(params, batch: Transition, mask, key):
        """Negative ELBO (Eq. 2) with free nats; batch [B, T, ...], mask [B, T] -> (scalar, metrics)."""
        batch_size = batch.action.shape[0]
        mask = mask.astype(jnp.float32)
        # o_0..o_T: next_obs is the true successor even at an episode end, so the
        # last valid step of an episode still has a proper target.
        obs_seq = jnp.concatenate([batch.obs[:, :1], batch.next_obs], axis=1)  # [B, T+1, D]
        if pixels:  # PlaNet: uniform dequantisation noise on the quantised frames, encoder input and target alike
            key, noise_key = jax.random.split(key)
            target = obs_seq + dequantization_noise(noise_key, obs_seq.shape, bit_depth)
        else:
            target = normalize_obs(params["stats"], obs_seq)
        embeddings = apply(params, RSSMNet.encode, target)  # [B, T+1, E]
        all_h, all_s, kl = posterior_sequence(net, params["net"], embeddings, batch.action, key)
        hs, ss = all_h[:, 1:], all_s[:, 1:]  # [B, T, ...]
        obs_pred = apply(params, RSSMNet.decode_obs, all_h, all_s)
        obs_err = jnp.sum(jnp.square(obs_pred - target), axis=-1)  # [B, T+1]
        # o_0 is always a real observation; o_{t+1} is valid exactly when transition t is.
        obs_mask = jnp.concatenate([jnp.ones((batch_size, 1), jnp.float32), mask], axis=1)
        obs_loss = masked_mean(obs_err, obs_mask)

        reward_pred = apply(params, RSSMNet.decode_reward, hs, ss)  # [B, T]
        reward_loss = masked_mean(jnp.square(reward_pred - batch.reward), mask)

        # Free nats (PlaNet): below free_nats per step the KL gets no gradient, so
        # the model is not pushed to squeeze information out of the posterior early on.
        kl_loss = masked_mean(jnp.maximum(kl, free_nats), mask)
        total = obs_loss + reward_loss + kl_scale * kl_loss
        metrics = {
            "model/loss": total,
            "model/obs_loss": obs_loss,
            "model/reward_loss": reward_loss,
            "model/kl": masked_mean(kl, mask),
        }
        return total, metrics

    return Model(
        name="rssm",
        init=init,
        initial_state=initial_state,
        initial_particles=initial_particles,
        step=step,
        observation=observation,
        reward=reward,
        termination=None,
        loss=loss,
        filter=filter,
        normalize_input=identity_input if pixels else stats_input,
    )
