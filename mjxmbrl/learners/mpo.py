"""MPO with a distributional critic and Retrace, plus behaviour cloning (Byravan et al. 2022, Sec. 4.3, App. E.1).

Byravan, Hasenclever, Trochim, Mirza, Ialongo, Tassa, Springenberg, Abdolmaleki, Heess, Merel,
Riedmiller 2022, "Evaluating model-based planning and planner amortization for continuous control",
arXiv:2110.03363; MPO: Abdolmaleki et al. 2018, "Maximum a Posteriori Policy Optimisation",
arXiv:1806.06920, with the decoupled trust regions of Abdolmaleki et al. 2018, "Relative Entropy
Regularized Policy Iteration", arXiv:1812.02256.

One `update` does, on B replay windows of T steps (App. E: batch 256, T = 10) and their masks:
  1. critic (Fig. 6b): a histogram of returns on `num_bins` bins over [v_min, v_max], fitted by
     softmax cross-entropy to the two-hot encoding of Retrace targets (Munos et al. 2016), whose
     values are the target critic's means and whose traces use the behaviour log-probabilities
     stored at acting time;
  2. E-step: N actions per state from the target policy pi', weights q(a|s) ~ exp(Q(s, a)/eta)
     with the temperature eta minimising the dual  eta eps + eta E_s log E_{pi'} exp(Q/eta);
  3. M-step: maximise E_s sum_n q_n log pi(a_n|s) with the mean and the covariance fitted
     separately (each paired with pi''s other half), under KL(pi' || pi) trust regions
     eps_mu, eps_Sigma enforced by Lagrange multipliers;
  4. BC (Eq. 1): maximise log pi(a|s) of the executed actions; the policy loss is
     alpha * J_MPO + beta * J_BC (Eq. 4, as losses: alpha * L_MPO + beta * L_BC);
  5. every `target_update_period` updates the target policy and critic are copied (E.1: 200).

A trace is cut (c_t = 0) where the executed action came from the planner: its density is not
known, and c_t = 0 keeps Retrace's operator a contraction for any behaviour policy (Munos et
al. 2016, Thm. 1 asks only 0 <= c_t <= pi/mu); policy actions get c_t = lambda min(1, pi/mu).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, NamedTuple, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import optax

from mjxmbrl.envs.normalization import normalize
from mjxmbrl.learners.base import Learner, LearnContext
from mjxmbrl.nn.distributions import diag_gaussian_kl, diag_gaussian_log_prob
from mjxmbrl.nn.networks import DistributionalCritic, TanhMeanGaussianPolicy
from mjxmbrl.ops import gradient_step, retrace_targets, two_hot, two_hot_inverse
from mjxmbrl.types import ConfigError, Metrics, Params, PRNGKey, Transition

BEHAVIOUR_LOG_PROB = "behaviour_log_prob"
_CUT = -1e9  # a log-ratio whose trace exp(.) is exactly 0


@dataclasses.dataclass(frozen=True)
class MPOConfig:
    """MPO + BC (Byravan et al. 2022 App. E.1, F.2). alpha = 1, beta = 0 is MPO; beta > 0 adds BC."""

    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {}

    name: str = "mpo"
    policy_hidden_sizes: Tuple[int, ...] = (256, 256, 256)  # Fig. 6a
    critic_hidden_sizes: Tuple[int, ...] = (256, 256, 256, 256, 256)  # Fig. 6b
    min_std: float = 1e-4  # softplus std floor (Fig. 6a)
    policy_lr: float = 3e-4
    critic_lr: float = 3e-4
    # Temperature and trust-region multipliers. E.1 uses 1e-4; at 1e-4 the temperature barely leaves its initial
    # value within a 100k-step budget and the policy does not learn (CartpoleSwingup, measured: docs/byravan.md),
    # so we use Acme's 1e-2, with which the multipliers track their constraints.
    dual_lr: float = 1e-2
    discount: float = 0.99
    batch_size: int = 256  # replay windows per update (E: 256)
    seq_len: int = 10  # T (E: 10)
    num_action_samples: int = 20  # N actions per state in the E-step (and for the Retrace values)
    epsilon: float = 0.1  # KL bound of the E-step (F.2 sweeps 0.1, 0.5)
    epsilon_mean: float = 5e-3  # trust region of the mean (F.2 sweeps 5e-4 .. 1e-2)
    epsilon_std: float = 1e-5  # trust region of the covariance (F.2: 1e-5)
    init_temperature: float = 1.0
    init_alpha_mean: float = 1.0
    init_alpha_std: float = 1000.0  # a tight start for the covariance (eps_Sigma is small): no premature collapse
    num_bins: int = 101  # Fig. 6b
    # The return histogram's range [v_min, v_max]. None: +-R with R = reward_scale * action_repeat / (1 - discount),
    # the largest discounted return of a DM Control task (rewards in [0, 1] per control step), symmetric so that
    # a freshly initialised critic (near-uniform histogram) predicts 0, not the middle of the range: with hard
    # target copies every 200 updates a critic that starts at R/2 takes thousands of updates to drain.
    # The paper's tasks use 0-300 (E.1).
    v_min: Optional[float] = None
    v_max: Optional[float] = None
    retrace_lambda: float = 1.0  # c_t = lambda min(1, pi/mu) (Munos et al. 2016)
    target_update_period: int = 200  # E.1
    reward_scale: float = 1.0
    mpo_weight: float = 1.0  # alpha of Eq. 4
    bc_weight: float = 0.0  # beta of Eq. 4 (F.2 sweeps 0.001 .. 1)
    # The task-agnostic proposal of App. E.2 (proprioceptive inputs only, BC on executed actions), trained
    # alongside the agent for planners (planner.proposal=agnostic) and for transfer.
    agnostic_proposal: bool = False
    agnostic_lr: float = 1e-4
    agnostic_hidden_sizes: Tuple[int, ...] = (256, 256, 256)  # Fig. 6c


@flax.struct.dataclass
class MPOState:
    policy_params: Params
    target_policy_params: Params
    critic_params: Params
    target_critic_params: Params
    duals: Dict[str, jax.Array]  # raw parameters: value = softplus(raw) + 1e-8 (temperature, alpha_mean, alpha_std)
    policy_opt_state: Any
    critic_opt_state: Any
    dual_opt_state: Any
    steps: jax.Array  # int32 updates taken (target copies every target_update_period)


def check_mpo(cfg) -> None:
    """Config-time check of a run whose agent is MPO (+ BC)."""
    a = cfg.agent
    for key in ("batch_size", "seq_len", "num_action_samples", "num_bins", "target_update_period"):
        if getattr(a, key) < (2 if key == "num_bins" else 1):
            raise ConfigError(f"agent.{key} must be >= {2 if key == 'num_bins' else 1}, got {getattr(a, key)}")
    for key in ("epsilon", "epsilon_mean", "epsilon_std", "init_temperature", "init_alpha_mean", "init_alpha_std", "min_std"):
        if getattr(a, key) <= 0:
            raise ConfigError(f"agent.{key} must be > 0, got {getattr(a, key)}")
    if a.mpo_weight < 0 or a.bc_weight < 0 or a.mpo_weight + a.bc_weight == 0:
        raise ConfigError(f"agent.mpo_weight ({a.mpo_weight}) and agent.bc_weight ({a.bc_weight}) must be >= 0, not both 0")
    if not 0.0 <= a.retrace_lambda <= 1.0:
        raise ConfigError(f"agent.retrace_lambda must be in [0, 1], got {a.retrace_lambda}")
    p = cfg.planner
    if p.name != "none" and not a.agnostic_proposal and (
        p.proposal == "agnostic" or (p.proposal == "mixture" and "agnostic" in tuple(p.mixture_components))
    ):
        raise ConfigError("the planner's proposal uses the task-agnostic proposal: set agent.agnostic_proposal=true to train it")
    v_min, v_max = value_range(a, cfg.env.action_repeat)
    if v_max <= v_min:
        raise ConfigError(f"agent.v_max ({v_max}) must exceed agent.v_min ({v_min})")


def value_range(cfg: MPOConfig, action_repeat: int) -> Tuple[float, float]:
    """(v_min, v_max) of the critic's histogram (see MPOConfig.v_max)."""
    bound = cfg.reward_scale * action_repeat / (1.0 - cfg.discount)
    v_max = cfg.v_max if cfg.v_max is not None else bound
    v_min = cfg.v_min if cfg.v_min is not None else -bound
    return float(v_min), float(v_max)


def _positive(raw: jax.Array) -> jax.Array:
    return jax.nn.softplus(raw) + 1e-8


def _inverse_softplus(x: float) -> jax.Array:
    return jnp.asarray(x + jnp.log(-jnp.expm1(-x)), jnp.float32)


def weighted_mean(x: jax.Array, weights: jax.Array) -> jax.Array:
    """sum(w x) / max(sum(w), 1): a masked mean."""
    return jnp.sum(x * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def temperature_dual(q: jax.Array, temperature: jax.Array, epsilon: float, weights: Optional[jax.Array] = None) -> jax.Array:
    """The E-step dual g(eta) = eta eps + eta E_s [log (1/N) sum_n exp(Q(s, a_n) / eta)] (Abdolmaleki et al. 2018, Eq. 9).

    q [N, M]: Q of N sampled actions in M states; weights [M] (default ones). Convex in eta; its
    minimiser eta* makes KL(q_eta* || uniform over the N samples) = eps (where eps is attainable).
    """
    weights = jnp.ones(q.shape[1:], q.dtype) if weights is None else weights
    log_mean_exp = jax.nn.logsumexp(q / temperature, axis=0) - jnp.log(q.shape[0])
    return temperature * epsilon + temperature * weighted_mean(log_mean_exp, weights)


def e_step_weights(q: jax.Array, temperature: jax.Array) -> jax.Array:
    """q(a_n|s) / pi'(a_n|s) normalised over the N samples: softmax_n(Q / eta), [N, M], no gradient."""
    return jax.lax.stop_gradient(jax.nn.softmax(q / temperature, axis=0))


class MStep(NamedTuple):
    loss: jax.Array  # the policy's loss: weighted NLL of both halves + multipliers x KLs
    dual_loss: jax.Array  # the multipliers' loss: alpha (eps - KL)
    kl_mean: jax.Array
    kl_std: jax.Array


def decoupled_m_step(
    mean, std, old_mean, old_std, actions, weights, state_weights, alpha_mean, alpha_std, epsilon_mean, epsilon_std
) -> MStep:
    """Weighted maximum likelihood with decoupled KL trust regions (Abdolmaleki et al. 2018b, Sec. 4.2).

    mean, std, old_mean, old_std [M, A]: online and old (target) policy; actions [N, M, A] sampled
    from the old policy; weights [N, M] the E-step weights; state_weights [M] 0/1.

        L = - E_s sum_n w_n [log N(a_n; mu, Sigma_old) + log N(a_n; mu_old, Sigma)]
            + alpha_mu KL(pi_old || N(mu, Sigma_old)) + alpha_Sigma KL(pi_old || N(mu_old, Sigma))
        L_dual = alpha_mu (eps_mu - KL_mu) + alpha_Sigma (eps_Sigma - KL_Sigma),

    multipliers constants in L, KLs constants in L_dual: gradient descent on both is the
    Lagrangian saddle point that keeps the KLs near their bounds.
    """
    old_mean, old_std = jax.lax.stop_gradient(old_mean), jax.lax.stop_gradient(old_std)
    log_prob_mean = diag_gaussian_log_prob(mean[None], old_std[None], actions)  # [N, M]
    log_prob_std = diag_gaussian_log_prob(old_mean[None], std[None], actions)
    nll = -weighted_mean(jnp.sum(weights * (log_prob_mean + log_prob_std), axis=0), state_weights)
    kl_mean = weighted_mean(diag_gaussian_kl(old_mean, old_std, mean, old_std), state_weights)
    kl_std = weighted_mean(diag_gaussian_kl(old_mean, old_std, old_mean, std), state_weights)
    a_mean, a_std = jax.lax.stop_gradient(alpha_mean), jax.lax.stop_gradient(alpha_std)
    loss = nll + a_mean * kl_mean + a_std * kl_std
    dual_loss = alpha_mean * (epsilon_mean - jax.lax.stop_gradient(kl_mean)) + alpha_std * (
        epsilon_std - jax.lax.stop_gradient(kl_std)
    )
    return MStep(loss, dual_loss, kl_mean, kl_std)


def bc_loss(mean: jax.Array, std: jax.Array, actions: jax.Array, weights: jax.Array) -> jax.Array:
    """-J_BC (Byravan et al. Eq. 1): the masked mean of -log pi(a|s) of executed actions; [M, A], [M] -> []."""
    return -weighted_mean(diag_gaussian_log_prob(mean, std, actions), weights)


def retrace_log_rhos(log_pi, behaviour_log_prob, planned, done, mask) -> jax.Array:
    """log pi/mu of each window step [B, T], cut (c_t = 0) where a trace must not pass through step t:

    the action was planned (its density is unknown), an episode ended at t - 1 (step t belongs to
    the next one), or the step is masked out (mask 0). Step 0 never enters Retrace's traces.
    """
    started = jnp.concatenate([jnp.zeros_like(done[:, :1]), done[:, :-1]], axis=1) > 0.5
    cut = (planned > 0.5) | started | (mask < 0.5)
    return jnp.where(cut, _CUT, log_pi - behaviour_log_prob)


def make_mpo(cfg: MPOConfig, obs_size: int, action_size: int, total_env_steps: int, *, normalize_obs: bool = False,
             action_repeat: int = 1, **_context) -> Learner:
    """Builds the MPO (+ BC) learner; batches are (Transition [B, T], mask [B, T]) windows (`sample`)."""
    del total_env_steps
    policy = TanhMeanGaussianPolicy(action_size, tuple(cfg.policy_hidden_sizes), cfg.min_std)
    critic = DistributionalCritic(cfg.num_bins, tuple(cfg.critic_hidden_sizes))
    bins = jnp.linspace(*value_range(cfg, action_repeat), cfg.num_bins)
    policy_opt, critic_opt, dual_opt = optax.adam(cfg.policy_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.dual_lr)

    def init(key: PRNGKey) -> MPOState:
        policy_key, critic_key = jax.random.split(key)
        obs, action = jnp.zeros((1, obs_size)), jnp.zeros((1, action_size))
        policy_params = policy.init(policy_key, obs)
        critic_params = critic.init(critic_key, obs, action)
        duals = {
            "temperature": _inverse_softplus(cfg.init_temperature),
            "alpha_mean": _inverse_softplus(cfg.init_alpha_mean),
            "alpha_std": _inverse_softplus(cfg.init_alpha_std),
        }
        return MPOState(
            policy_params=policy_params,
            target_policy_params=jax.tree.map(jnp.copy, policy_params),
            critic_params=critic_params,
            target_critic_params=jax.tree.map(jnp.copy, critic_params),
            duals=duals,
            policy_opt_state=policy_opt.init(policy_params),
            critic_opt_state=critic_opt.init(critic_params),
            dual_opt_state=dual_opt.init(duals),
            steps=jnp.zeros((), jnp.int32),
        )

    def q_mean(params, obs, action):
        """E[Z(s, a)] under the histogram: [...]."""
        return two_hot_inverse(jax.nn.softmax(critic.apply(params, obs, jnp.clip(action, -1.0, 1.0))), bins)

    def critic_step(state: MPOState, seq: Transition, mask, obs, next_obs, next_values, log_rhos):
        """Retrace targets on the target critic, then the cross-entropy step of the online critic."""
        q_executed = q_mean(state.target_critic_params, obs, seq.action)  # [B, T]
        discounts = cfg.discount * (1.0 - seq.terminated)
        targets = jax.vmap(retrace_targets, in_axes=(0, 0, 0, 0, 0, None))(
            q_executed, next_values, cfg.reward_scale * seq.reward, discounts, log_rhos, cfg.retrace_lambda
        )
        target_probs = jax.lax.stop_gradient(two_hot(targets, bins))

        def loss_fn(params):
            logits = critic.apply(params, obs, seq.action)
            cross_entropy = -jnp.sum(target_probs * jax.nn.log_softmax(logits), axis=-1)
            return weighted_mean(cross_entropy, mask), two_hot_inverse(jax.nn.softmax(logits), bins)

        step = gradient_step(loss_fn, critic_opt, state.critic_params, state.critic_opt_state, has_aux=True)
        state = state.replace(critic_params=step.params, critic_opt_state=step.opt_state)
        return state, {"learner/critic_loss": step.loss, "learner/q_mean": weighted_mean(step.aux, mask),
                       "learner/retrace_target": weighted_mean(targets, mask)}

    def policy_step(state: MPOState, states, state_weights, sampled, q_samples, obs, action, mask):
        """E-step weights, the M-step + BC gradient step of the policy, then the duals' step.

        The two losses are separable (multipliers are constants in the policy's loss, KLs constants in
        the duals'), so each is one `gradient_step`; the duals' step sees the KLs of the policy before its step.
        """
        old_mean, old_std = policy.apply(state.target_policy_params, states)
        temperature = _positive(state.duals["temperature"])
        alpha_mean, alpha_std = _positive(state.duals["alpha_mean"]), _positive(state.duals["alpha_std"])
        weights = e_step_weights(q_samples, temperature)

        def policy_loss(params):
            mean, std = policy.apply(params, states)
            m = decoupled_m_step(mean, std, old_mean, old_std, sampled, weights, state_weights,
                                 alpha_mean, alpha_std, cfg.epsilon_mean, cfg.epsilon_std)
            bc_mean, bc_std = policy.apply(params, obs)
            bc = bc_loss(bc_mean, bc_std, action, mask)
            return cfg.mpo_weight * m.loss + cfg.bc_weight * bc, {
                "learner/kl_mean": m.kl_mean, "learner/kl_std": m.kl_std, "learner/bc_loss": bc,
                "learner/policy_loss": m.loss, "learner/std": weighted_mean(jnp.mean(std, -1), state_weights)}

        step = gradient_step(policy_loss, policy_opt, state.policy_params, state.policy_opt_state, has_aux=True)
        kl_mean, kl_std = step.aux["learner/kl_mean"], step.aux["learner/kl_std"]

        def dual_loss(duals):
            return (temperature_dual(q_samples, _positive(duals["temperature"]), cfg.epsilon, state_weights)
                    + _positive(duals["alpha_mean"]) * (cfg.epsilon_mean - kl_mean)
                    + _positive(duals["alpha_std"]) * (cfg.epsilon_std - kl_std))

        dual = gradient_step(dual_loss, dual_opt, state.duals, state.dual_opt_state)
        state = state.replace(policy_params=step.params, policy_opt_state=step.opt_state,
                              duals=dual.params, dual_opt_state=dual.opt_state)
        return state, {**step.aux, "learner/temperature": temperature}

    def update(key: PRNGKey, state: MPOState, batch, env_steps: Any, context: Optional[LearnContext] = None):
        """One MPO (+ BC) step on (windows [B, T], mask [B, T]) with raw observations."""
        del env_steps
        seq, mask = batch
        obs, next_obs = seq.obs, seq.next_obs
        if normalize_obs:
            obs, next_obs = normalize(context.obs_stats, obs), normalize(context.obs_stats, next_obs)
        # The states policy improvement runs on: each window's first observation and every next observation.
        states = jnp.concatenate([obs[:, :1], next_obs], axis=1)  # [B, T + 1, D]
        state_weights = jnp.concatenate([mask[:, :1], mask], axis=1)
        target_mean, target_std = policy.apply(state.target_policy_params, states)
        noise = jax.random.normal(key, (cfg.num_action_samples,) + target_mean.shape)
        sampled = target_mean[None] + target_std[None] * noise  # [N, B, T + 1, A]
        q_samples = jax.lax.stop_gradient(q_mean(state.target_critic_params, jnp.broadcast_to(states, sampled.shape[:-1] + states.shape[-1:]), sampled))
        next_values = jnp.mean(q_samples[:, :, 1:], axis=0)  # [B, T]: E_{pi'} Q'(s_{t+1}, .)

        log_pi = diag_gaussian_log_prob(target_mean[:, :-1], target_std[:, :-1], seq.action)
        planned = seq.extras.get("planned", jnp.zeros_like(mask))
        done = jnp.maximum(seq.terminated, seq.truncated)
        log_rhos = retrace_log_rhos(log_pi, seq.extras[BEHAVIOUR_LOG_PROB], planned, done, mask)
        state, critic_metrics = critic_step(state, seq, mask, obs, next_obs, next_values, log_rhos)

        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731  [B, T(+1), ...] -> [M, ...]
        state, policy_metrics = policy_step(
            state, flat(states), flat(state_weights), jax.vmap(flat)(sampled), jax.vmap(flat)(q_samples),
            flat(obs), flat(seq.action), flat(mask),
        )
        steps = state.steps + 1
        copy = steps % cfg.target_update_period == 0
        state = state.replace(
            steps=steps,
            target_policy_params=jax.tree.map(lambda t, o: jnp.where(copy, o, t), state.target_policy_params, state.policy_params),
            target_critic_params=jax.tree.map(lambda t, o: jnp.where(copy, o, t), state.target_critic_params, state.critic_params),
        )
        metrics: Metrics = {**critic_metrics, **policy_metrics,
                            "learner/alpha_mean": _positive(state.duals["alpha_mean"]),
                            "learner/alpha_std": _positive(state.duals["alpha_std"])}
        return state, metrics

    def sample(replay, key, replay_state):
        return replay.sample_sequences(key, replay_state, cfg.batch_size, cfg.seq_len)

    def policy_fn(params: Params, obs: jax.Array, key: PRNGKey, deterministic: Any = False) -> jax.Array:
        """obs [..., D] -> action [..., A] in [-1, 1]: the mean, or a clipped Gaussian sample."""
        mean, std = policy.apply(params, obs)
        sampled = jnp.clip(mean + std * jax.random.normal(key, mean.shape), -1.0, 1.0)
        if isinstance(deterministic, bool):
            return mean if deterministic else sampled
        return jnp.where(deterministic, mean, sampled)

    def log_prob(params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
        """log pi(a|s) of the (clipped, executed) action under the Gaussian policy: [...]."""
        mean, std = policy.apply(params, obs)
        return diag_gaussian_log_prob(mean, std, action)

    def q_value(state: MPOState, obs: jax.Array, key: PRNGKey) -> jax.Array:
        """E[Z(s, a)] / reward_scale of the online critic at one a ~ pi(s) (Byravan App. F.2's planner value, in
        the task's reward units: the critic's returns are of reward_scale * r): [...]."""
        return q_mean(state.critic_params, obs, policy_fn(state.policy_params, obs, key, False)) / cfg.reward_scale

    return Learner(
        init=init, update=update, policy_params=lambda s: s.policy_params, policy=policy_fn,
        value=q_value, q_value=q_value, sample=sample, log_prob=log_prob,
        ready_rows=cfg.seq_len,
    )
