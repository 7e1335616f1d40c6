"""SAC-SVG(H): soft actor-critic with an H-step stochastic value gradient (Amos et al. 2021).

One `update` does, on a batch of single-step transitions (Alg. 1, the M_step loop):
  1. critic: soft Bellman residual against the Polyak target ensemble (Eq. 4-6), or, with
     `critic_mve`, the soft model-based value expansion of Feinberg et al. (the Sec. 5.1.2 ablation);
  2. actor: minimise -V_{0:H}^{pi,alpha}(x) (Eq. 9): the policy is unrolled H steps through the
     learned dynamics with the learned reward and termination models, and the soft critic value
     closes the expansion at (x_H, u_H); gradients flow through the model into the policy
     (reparameterised tanh-Gaussian). H = 0 is exactly SAC's actor loss (Eq. 7);
  3. temperature toward the target entropy (Eq. 8), constant or decayed over training (Eq. 14);
  4. reward model (Eq. 11) and termination model (Eq. 13) on the same single-step batch;
  5. target critic Polyak update.
The dynamics model (the GRU of Sec. 4.2 by default) is trained outside the learner on
multi-step sequences (Alg. 1, the M_seq loop; models/trainer.py in the same jitted train step).

The discounted expansion we optimise, with c_0 = 1 and c_{t+1} = c_t (1 - d(x_t, u_t)):

    V_{0:H}(x_0) = sum_{t<H} gamma^t c_t [r(x_t, u_t) - alpha log pi(u_t|x_t)]
                   + gamma^H c_H [min_i Q_i(x_H, u_H) - alpha log pi(u_H|x_H)],   u_t ~ pi(x_t)

(the paper's Eq. 2-3 written without discount for brevity; its code discounts). It is not
divided by H, so H = 0 equals SAC's loss exactly; Adam makes the scale matter little.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Dict, NamedTuple, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import optax

from mjxmbrl.envs.normalization import normalize
from mjxmbrl.learners.base import LearnContext, Learner
from mjxmbrl.learners.sac import (
    SACConfig,
    SACState,
    check_sac,
    make_policy_fns,
    make_sac_core,
    sac_metrics,
    target_entropy_at,
)
from mjxmbrl.nn.distributions import tanh_gaussian_from_noise
from mjxmbrl.nn.heads import make_heads
from mjxmbrl.ops import gradient_step
from mjxmbrl.types import (
    ConfigError,
    Metrics,
    MjxmbrlError,
    Params,
    PRNGKey,
    Transition,
    valid_weights,
)

if TYPE_CHECKING:  # the Model interface only: learners import no model code at run time
    from mjxmbrl.models.base import Model


@dataclasses.dataclass(frozen=True)
class SVGConfig(SACConfig):
    """SAC-SVG(H): SAC whose actor ascends an H-step value expansion through a learned model (Amos et al. 2021)."""

    name: str = "svg"
    # Table 3 of Amos et al.: actor/critic 2 x 512, LR 1e-4, temperature LR 5e-4, init temperature 0.1.
    hidden_sizes: Tuple[int, ...] = (512, 512)
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    alpha_lr: float = 5e-4
    horizon: int = 2  # H of Eq. 9, in agent steps; 0 is SAC's actor update
    critic_mve: bool = False  # critic targets from an H-step model expansion (Feinberg et al.; Sec. 5.1.2 ablation)
    learn_termination: bool = True  # only where the task can terminate (Eq. 12-13); DM Control tasks never do
    head_sizes: Tuple[int, ...] = (512, 512)  # reward and termination MLPs (Table 3)
    head_lr: float = 1e-3  # reward and termination LR (Table 3)


def check_svg(cfg) -> None:
    """Rejects SVG settings that cannot work: horizons, and the model the expansion unrolls."""
    check_sac(cfg)
    a, m = cfg.agent, cfg.model
    if a.horizon < 0:
        raise ConfigError(f"agent.horizon must be >= 0, got {a.horizon}")
    if a.n_step != 1:
        raise ConfigError(
            f"agent.n_step={a.n_step}: SAC-SVG(H) learns its critic from one-step targets (Amos et al. Eq. 5); "
            "n-step targets are a SAC option"
        )
    if a.critic_mve and a.horizon < 1:
        raise ConfigError("agent.critic_mve expands the critic target through the model: it needs agent.horizon >= 1")
    if a.horizon == 0 and not a.critic_mve:
        return
    if m.name == "none":
        raise ConfigError(f"agent svg with horizon {a.horizon} unrolls a learned dynamics model: set model.name=gru (Amos et al. Sec. 4.2)")
    if m.name == "oracle":
        if cfg.env.impl == "warp":
            raise ConfigError(
                "agent svg differentiates the value expansion through the dynamics, and the Warp-backed oracle "
                "(env.impl=warp) cannot be differentiated by JAX; use a learned model (model.name=gru)"
            )
        raise ConfigError(
            "agent svg unrolls the model from replayed observations, but the oracle needs full simulator states, "
            "which the replay buffer does not store; use a learned model (model.name=gru)"
        )
    if getattr(m, "learn_reward", False) or getattr(m, "learn_termination", False):
        raise ConfigError(
            "agent svg fits its own reward and termination models on single-step batches (Amos et al. Alg. 1); "
            "set model.learn_reward=false and model.learn_termination=false"
        )
    if m.name == "gru" and m.seq_len < a.horizon:
        raise ConfigError(
            f"model.seq_len ({m.seq_len}) is shorter than agent.horizon ({a.horizon}): the dynamics would be unrolled "
            "past the windows they are trained on"
        )


def svg_model_defaults(raw: Dict[str, Any]) -> Dict[str, Any]:
    """SVG's defaults for the model section (raw YAML dict): the model's own reward and termination heads
    off (SVG fits them itself on single-step batches, Alg. 1), and a GRU fitted on windows as long as the
    expansion it is unrolled for (seq_len = max(1, H))."""
    model = dict(raw.get("model") or {})
    name = model.get("name", "none")
    if name in ("mlp", "gru", "ensemble"):
        model.setdefault("learn_reward", False)
        model.setdefault("learn_termination", False)
        if name == "gru":
            horizon = (raw.get("agent") or {}).get("horizon", SVGConfig.horizon)
            model.setdefault("seq_len", max(1, int(horizon)) if isinstance(horizon, (int, float)) else horizon)
    return {**raw, "model": model}


_MODEL_STREAM = 0x5EED  # fold_in tag of the model-noise stream (policy noise uses tags 1..H)


@flax.struct.dataclass
class SVGState:
    sac: SACState  # actor, critic ensemble, target critic, temperature and their optimisers
    heads: Params  # {"reward": ..., "termination": ...} of the learned reward/termination maps ({} for H = 0)
    heads_opt_state: Any


class ExpansionFns(NamedTuple):
    """Per-sample pieces of a value expansion; x is a raw observation [D], u an action [A].

    action(x, eps) -> (u, log pi(u|x))   reparameterised with standard-normal noise eps [A]
    init(x, key) -> z                    model state from an observation
    step(z, u, key) -> z'                one model step
    observe(z) -> x                      the model state's observation
    reward(x, u) -> r []                 learned (or known) reward
    not_done(x, u) -> 1 - d(x, u) []     continuation probability
    q(x, u) -> []                        terminal action value (min over the critic ensemble)
    """

    action: Callable[..., Tuple[jax.Array, jax.Array]]
    init: Callable[..., Any]
    step: Callable[..., Any]
    observe: Callable[..., jax.Array]
    reward: Callable[..., jax.Array]
    not_done: Callable[..., jax.Array]
    q: Callable[..., jax.Array]


class SVGParts(NamedTuple):
    """The pieces of one SVG update (all pure; see `make_svg`).

    core: SACCore (networks, critic/actor/temperature steps)
    init(key) -> SVGState
    actor_loss(state, obs [B, D] raw, key, alpha, model_params, obs_stats) -> loss_fn(actor_params) -> (loss, log_p0 [B])
    critic_targets(state, key, batch, alpha, model_params, obs_stats) -> (obs [N, D] raw, actions [N, A], targets [N], weights [N])
    fit_heads(state, batch, model_params) -> (state, metrics)
    """

    core: Any
    init: Callable[..., Any]
    actor_loss: Callable[..., Any]
    critic_targets: Callable[..., Any]
    fit_heads: Callable[..., Any]


def soft_value_expansion(
    fns: ExpansionFns, x0: jax.Array, eps: jax.Array, key: PRNGKey, alpha: jax.Array, discount: float
) -> Tuple[jax.Array, jax.Array]:
    """V_{0:H}^{pi,alpha}(x0) of Amos et al. Eq. 9 (discounted, see module docstring) for one sample.

    x0 [D]; eps [H + 1, A] the policy noise of each step (H = eps.shape[0] - 1).
    Returns (value [], log pi(u_0|x_0) []); differentiable in whatever `fns` closes over.
    """
    horizon = eps.shape[0] - 1
    if horizon == 0:
        u0, log_p0 = fns.action(x0, eps[0])
        return fns.q(x0, u0) - alpha * log_p0, log_p0

    def body(carry, inputs):
        z, x, alive, scale = carry
        eps_t, step_key = inputs
        u, log_p = fns.action(x, eps_t)
        gain = scale * alive * (fns.reward(x, u) - alpha * log_p)
        alive = alive * fns.not_done(x, u)
        z = fns.step(z, u, step_key)
        return (z, fns.observe(z), alive, scale * discount), (gain, log_p)

    init_key, roll_key = jax.random.split(key)
    carry = (fns.init(x0, init_key), x0, jnp.ones(()), jnp.ones(()))
    (_, x_h, alive, scale), (gains, log_ps) = jax.lax.scan(body, carry, (eps[:-1], jax.random.split(roll_key, horizon)))
    u_h, log_p_h = fns.action(x_h, eps[-1])
    terminal = scale * alive * (fns.q(x_h, u_h) - alpha * log_p_h)
    return jnp.sum(gains) + terminal, log_ps[0]


def soft_mve_targets(
    fns: ExpansionFns,
    x1: jax.Array,
    reward0: jax.Array,
    terminated0: jax.Array,
    eps: jax.Array,
    key: PRNGKey,
    alpha: jax.Array,
    discount: float,
) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """Soft model-based value expansion targets for the critic (Feinberg et al. 2018, entropy-regularised).

    From a real transition (x_0, u_0, r_0, x_1, terminated_0) the model imagines x_2..x_H under the
    policy from the real x_1; `fns.q` is the *target* critic. With V_H = Q'(x_H, u_H) - alpha log pi(u_H|x_H)
    and, for t = H-1..1, G_t = r(x_t, u_t) + gamma (1 - d(x_t, u_t)) V_{t+1}, V_t = G_t - alpha log pi(u_t|x_t),
    the targets are G_0 = r_0 + gamma (1 - terminated_0) V_1 and G_1..G_{H-1}. H = 1 is SAC's one-step target.

    x1 [D]; eps [H, A] the noise of u_1..u_H. Returns (targets [H], imagined obs x_1..x_{H-1} [H-1, D],
    their actions u_1..u_{H-1} [H-1, A]), all without gradient.
    """
    horizon = eps.shape[0]

    def body(carry, inputs):
        z, x = carry
        eps_t, step_key = inputs
        u, log_p = fns.action(x, eps_t)
        out = (x, u, log_p, fns.reward(x, u), fns.not_done(x, u))
        z = fns.step(z, u, step_key)
        return (z, fns.observe(z)), out

    init_key, roll_key = jax.random.split(key)
    (_, x_h), (xs, us, log_ps, rewards, not_dones) = jax.lax.scan(
        body, (fns.init(x1, init_key), x1), (eps[:-1], jax.random.split(roll_key, horizon - 1))
    )
    u_h, log_p_h = fns.action(x_h, eps[-1])
    value_next = fns.q(x_h, u_h) - alpha * log_p_h

    def backward(value_next, inputs):
        reward, not_done, log_p = inputs
        target = reward + discount * not_done * value_next
        return target - alpha * log_p, target

    value_1, imagined_targets = jax.lax.scan(backward, value_next, (rewards, not_dones, log_ps), reverse=True)
    target0 = reward0 + discount * (1.0 - terminated0) * value_1
    targets = jnp.concatenate([target0[None], imagined_targets])
    return jax.lax.stop_gradient((targets, xs, us))


def make_svg(
    cfg: SVGConfig,
    obs_size: int,
    action_size: int,
    total_env_steps: int,
    model: Optional[Model] = None,
    normalize_obs: bool = False,
    has_termination: bool = False,
    return_parts: bool = False,
    **_context,
) -> "Learner | SVGParts":
    """Builds SAC-SVG(H) (see the module docstring; `Learner` in learners/base.py for signatures).

    `return_parts=True` returns the `SVGParts` the update is made of instead (for tests and tools).
    `model` is the world model whose dynamics the expansion unrolls (required for H > 0 or
    critic_mve); `normalize_obs`: actor and critic see observations normalised with the run's
    statistics; `has_termination`: the task can terminate, so the termination map is learned;
    `_context` (action_repeat) is for learners that need it.
    """
    if cfg.horizon < 0:
        raise MjxmbrlError(f"agent.horizon must be >= 0, got {cfg.horizon}")
    if cfg.critic_mve and cfg.horizon < 1:
        raise MjxmbrlError("agent.critic_mve expands the critic target through the model: it needs agent.horizon >= 1")
    core = make_sac_core(cfg, obs_size, action_size)
    uses_rollouts = cfg.horizon > 0 or cfg.critic_mve
    learn_termination = has_termination and cfg.learn_termination
    heads_init, reward_fn, termination_fn, heads_loss = make_heads(
        cfg.head_sizes, uses_rollouts, uses_rollouts and learn_termination, obs_size, action_size
    )
    heads_opt = optax.adam(cfg.head_lr)
    discount = cfg.discount

    def init(key: PRNGKey) -> SVGState:
        sac_key, heads_key = jax.random.split(key)
        heads = heads_init(heads_key) if uses_rollouts else {}
        return SVGState(sac=core.init(sac_key), heads=heads, heads_opt_state=heads_opt.init(heads))

    def expansion_fns(actor_params, critic_params, heads, model_params, obs_stats) -> ExpansionFns:
        def net_input(x):
            return normalize(obs_stats, x) if normalize_obs else x

        def action(x, eps):
            mean, log_std = core.actor_dist(actor_params, net_input(x))
            return tanh_gaussian_from_noise(mean, log_std, eps)

        def q(x, u):
            return jnp.min(core.q(critic_params, net_input(x), u), axis=0)

        if not uses_rollouts:
            return ExpansionFns(action, None, None, None, None, None, q)
        if model is None:
            raise MjxmbrlError(f"SVG({cfg.horizon}) unrolls a learned dynamics model: set model.name (e.g. gru)")

        def head_input(x):
            return model.normalize_input(model_params, x)

        def reward(x, u):
            # The critic regresses reward_scale * r (Eq. 5-6), so the expansion's rewards are scaled alike.
            return cfg.reward_scale * reward_fn(heads, head_input(x), u)

        def not_done(x, u):
            if termination_fn is None:
                return jnp.ones(())
            return 1.0 - termination_fn(heads, head_input(x), u)

        return ExpansionFns(
            action=action,
            init=lambda x, k: model.initial_state(model_params, x, k),
            step=lambda z, u, k: model.step(model_params, z, u, k),
            observe=lambda z: model.observation(model_params, z),
            reward=reward,
            not_done=not_done,
            q=q,
        )

    def actor_loss_fn(state: SVGState, batch_obs, key, alpha, model_params, obs_stats):
        """loss_fn(actor_params) -> (-mean_B V_{0:H}(x), log pi(u_0|x_0) [B]) of Eq. 9."""
        batch_size = batch_obs.shape[0]
        # Step 0 draws its noise exactly as SAC's sample_tanh_gaussian(key, mean [B, A], ...) does,
        # so SVG(0) reproduces SAC's actor loss sample for sample; later steps and the model fold in.
        eps0 = jax.random.normal(key, (batch_size, action_size))
        later = [jax.random.normal(jax.random.fold_in(key, t), (batch_size, action_size)) for t in range(1, cfg.horizon + 1)]
        model_key = jax.random.fold_in(key, _MODEL_STREAM)
        eps = jnp.stack([eps0] + later, axis=1)  # [B, H + 1, A]
        model_keys = jax.random.split(model_key, batch_size)

        def loss_fn(actor_params):
            fns = expansion_fns(actor_params, state.sac.critic_params, state.heads, model_params, obs_stats)
            values, log_p0 = jax.vmap(lambda x, e, k: soft_value_expansion(fns, x, e, k, alpha, discount))(
                batch_obs, eps, model_keys
            )
            return -jnp.mean(values), log_p0

        return loss_fn

    def critic_targets(state: SVGState, key, batch: Transition, alpha, model_params, obs_stats):
        """(obs [N, D] raw, actions [N, A], targets [N], weights [N]) the critic regresses on.

        Weights are 0 for invalid transitions (non-finite physics) and, with critic_mve, for the
        states imagined past a true termination of the real transition (they are not in the MDP).
        """
        valid = valid_weights(batch)
        if not cfg.critic_mve:
            net_batch = batch._replace(next_obs=normalize(obs_stats, batch.next_obs)) if normalize_obs else batch
            return batch.obs, batch.action, core.td_target(state.sac, key, net_batch, alpha), valid
        noise_key, model_key = jax.random.split(key)
        batch_size = batch.obs.shape[0]
        eps = jax.random.normal(noise_key, (batch_size, cfg.horizon, action_size))
        fns = expansion_fns(state.sac.actor_params, state.sac.target_critic_params, state.heads, model_params, obs_stats)
        targets, xs, us = jax.vmap(lambda x1, r, d, e, k: soft_mve_targets(fns, x1, r, d, e, k, alpha, discount))(
            batch.next_obs, cfg.reward_scale * batch.reward, batch.terminated, eps, jax.random.split(model_key, batch_size)
        )  # [B, H], [B, H-1, D], [B, H-1, A]
        obs = jnp.concatenate([batch.obs[:, None], xs], axis=1).reshape(-1, obs_size)
        actions = jnp.concatenate([batch.action[:, None], us], axis=1).reshape(-1, action_size)
        imagined = jnp.broadcast_to((valid * (1.0 - batch.terminated))[:, None], (batch_size, cfg.horizon - 1))
        weights = jnp.concatenate([valid[:, None], imagined], axis=1)
        return obs, actions, targets.reshape(-1), weights.reshape(-1)

    def fit_heads(state: SVGState, batch: Transition, model_params):
        if not uses_rollouts:
            return state, {}
        obs_in = model.normalize_input(model_params, batch.obs)

        def loss_fn(heads):
            total, metrics = heads_loss(heads, obs_in, batch)
            return total, metrics

        step = gradient_step(loss_fn, heads_opt, state.heads, state.heads_opt_state, has_aux=True)
        metrics = {k.replace("model/", "learner/"): v for k, v in step.aux.items()}
        return state.replace(heads=step.params, heads_opt_state=step.opt_state), metrics

    def update(
        key: PRNGKey, state: SVGState, batch: Transition, env_steps: Any, context: Optional[LearnContext] = None
    ) -> Tuple[SVGState, Metrics]:
        """One SAC-SVG(H) step on a single-step `batch` of raw observations (leaves [B, ...])."""
        context = context or LearnContext()
        model_params = {} if context.model_params is None else context.model_params
        obs_stats = context.obs_stats
        target_key, actor_key = jax.random.split(key)
        alpha = jnp.exp(state.sac.log_alpha)
        target_entropy = target_entropy_at(cfg, action_size, total_env_steps, env_steps)

        def net(x):
            return normalize(obs_stats, x) if normalize_obs else x

        obs_c, act_c, target, weights = critic_targets(state, target_key, batch, alpha, model_params, obs_stats)
        sac, critic_loss, q = core.fit_critic(state.sac, net(obs_c), act_c, target, weights)
        state = state.replace(sac=sac)
        loss_fn = actor_loss_fn(state, batch.obs, actor_key, alpha, model_params, obs_stats)
        sac, actor_loss, log_prob = core.fit_actor(state.sac, loss_fn)
        sac, alpha_loss = core.fit_alpha(sac, log_prob, target_entropy)
        state, head_metrics = fit_heads(state.replace(sac=core.update_target(sac)), batch, model_params)
        return state, {**sac_metrics(critic_loss, actor_loss, alpha_loss, alpha, log_prob, target_entropy, q), **head_metrics}

    parts = SVGParts(core, init, actor_loss_fn, critic_targets, fit_heads)
    if return_parts:
        return parts
    policy_params_sac, policy, value_sac, q_value_sac = make_policy_fns(core, cfg.reward_scale)
    return Learner(
        init=init,
        update=update,
        policy_params=lambda state: policy_params_sac(state.sac),
        policy=policy,
        value=lambda state, obs, key: value_sac(state.sac, obs, key),
        q_value=lambda state, obs, key: q_value_sac(state.sac, obs, key),
    )
