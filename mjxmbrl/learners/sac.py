"""Soft actor-critic (Haarnoja et al. 2018) as in Amos et al. 2021, Sec. 3.2 and App. A.

One `update` does, on a batch of transitions:
  1. critic: soft Bellman residual against a Polyak-averaged target ensemble (Eq. 4-6),
     min over members (double Q);
  2. actor: `alpha * log pi(a|s) - min_i Q_i(s, a)`, a ~ pi reparameterised (Eq. 7),
     against the just-updated critic;
  3. temperature: `-log_alpha * (log pi + H_target)` (Eq. 8 in log-alpha form), with the
     target entropy constant or decayed over training (App. A.1, Eq. 14);
  4. target critic: `theta_targ <- theta_targ + tau (theta - theta_targ)`.

Two options beyond the paper, both off by default (docs/sac.md measures them):
  - `critic_layer_norm`: LayerNorm after every hidden layer of the critics (Ball et al. 2023,
    "Efficient Online Reinforcement Learning with Offline Data", arXiv:2302.02948, Sec. 3.2);
  - `n_step`: n-step soft targets on replay windows of n steps (Eq. 5 with the n-step return of
    Sutton and Barto 2018, Eq. 7.1, uncorrected for the policy change as in Barth-Maron et al.
    2018, arXiv:1804.08617, and Yarats et al. 2021, arXiv:2107.09645):
    `sum_{k<m} gamma^k r_{t+k} + gamma^m (1 - term) (min_i Q'_i(s_{t+m}, a') - alpha log pi(a'|s_{t+m}))`,
    m <= n cut at the end of the episode; the entropy bonus enters at the bootstrap state only.
"""

import dataclasses
from typing import Any, Callable, ClassVar, Dict, NamedTuple, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import optax

from mjxmbrl.envs.normalization import normalize
from mjxmbrl.learners.base import LearnContext, Learner
from mjxmbrl.nn.distributions import sample_tanh_gaussian, tanh_gaussian_mode
from mjxmbrl.nn.networks import CriticEnsemble, GaussianActor
from mjxmbrl.ops import gradient_step, polyak_update
from mjxmbrl.types import (
    ConfigError,
    Metrics,
    MjxmbrlError,
    Params,
    PRNGKey,
    Transition,
    valid_weights,
)

ENTROPY_SCHEDULES = ("constant", "decay")


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Soft actor-critic (Haarnoja et al. 2018; Amos et al. 2021 Sec. 3, Table 3)."""

    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {"entropy_schedule": ("constant", "decay")}

    name: str = "sac"
    hidden_sizes: Tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_alpha: float = 0.1
    discount: float = 0.99
    tau: float = 0.005
    num_critics: int = 2
    batch_size: int = 512
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    reward_scale: float = 1.0
    # Target entropy: "constant" uses target_entropy (None: -action_dim);
    # "decay" follows Amos et al. Eq. 14 from target_entropy_init to target_entropy_final.
    entropy_schedule: str = "constant"
    target_entropy: Optional[float] = None
    target_entropy_init: float = 0.0
    target_entropy_final: float = -1.0
    entropy_decay_beta: float = 1.0
    critic_layer_norm: bool = False  # LayerNorm in every hidden layer of the critics (Ball et al. 2023)
    n_step: int = 1  # steps of reward before the soft bootstrap (1: Eq. 5 as in the paper)


@flax.struct.dataclass
class SACState:
    actor_params: Params
    critic_params: Params  # each leaf stacked over critics: [num_critics, ...]
    target_critic_params: Params
    log_alpha: jax.Array  # [] float32
    actor_opt_state: Any
    critic_opt_state: Any
    alpha_opt_state: Any


def target_entropy_at(cfg: SACConfig, action_size: int, total_env_steps: int, env_steps: Any) -> jax.Array:
    """Target entropy H_t at `env_steps` (float32 scalar).

    "constant": `cfg.target_entropy`, or `-action_size` when None (Haarnoja et al. 2018).
    "decay": Amos et al. Eq. 14, `H_t = (H_init - H_final) (1 - t/T)^beta + H_final`
    with t = env_steps clipped to [0, T] and T = total_env_steps.
    """
    if cfg.entropy_schedule == "constant":
        value = -float(action_size) if cfg.target_entropy is None else float(cfg.target_entropy)
        return jnp.asarray(value, jnp.float32)
    if cfg.entropy_schedule == "decay":
        horizon = float(max(total_env_steps, 1))
        t = jnp.clip(jnp.asarray(env_steps, jnp.float32), 0.0, horizon)
        # Clipped again because XLA may turn t / T into t * (1 / T), which can leave 1 - t/T a hair
        # below 0 at t = T, and a negative base to a fractional beta is NaN.
        remaining = jnp.clip(1.0 - t / horizon, 0.0, 1.0) ** cfg.entropy_decay_beta
        h_init, h_final = cfg.target_entropy_init, cfg.target_entropy_final
        return jnp.asarray((h_init - h_final) * remaining + h_final, jnp.float32)
    raise MjxmbrlError(
        f"agent.entropy_schedule: '{cfg.entropy_schedule}' is not one of {', '.join(ENTROPY_SCHEDULES)}"
    )


def soft_td_target(
    reward: jax.Array,
    terminated: jax.Array,
    next_q: jax.Array,
    next_log_prob: jax.Array,
    alpha: jax.Array,
    discount: Any,
    reward_scale: float = 1.0,
) -> jax.Array:
    """Soft one-step critic target (Amos et al. Eq. 5-6 with double Q).

    `reward_scale * r + discount * (1 - terminated) * (min_i next_q_i - alpha * next_log_prob)`.
    reward, terminated, next_log_prob: [B]; next_q: [num_critics, B] target-critic values
    at (s', a'), a' ~ pi(s'); discount: a float, or [B] (n-step targets: gamma^m, with r the
    discounted sum of m rewards). Only true terminations cut the bootstrap: a time-limit
    truncation is not an end of the task, so it is deliberately not an argument.
    """
    next_value = jnp.min(next_q, axis=0) - alpha * next_log_prob
    return reward_scale * reward + discount * (1.0 - terminated) * next_value


def n_step_batch(window: Transition, mask: jax.Array, discount: float) -> Tuple[Transition, jax.Array]:
    """An n-step window as one transition for `soft_td_target` (Sutton and Barto 2018, Eq. 7.1).

    window: Transition [B, n, ...] of consecutive steps of one env; mask [B, n] (replay
    `sequence_mask`: 1 up to and including the step that ends the episode, and 0 after it or
    after an invalid step). With m = sum_k mask[b, k] steps of the episode in the window, returns
    (Transition [B, ...]: obs and action of step 0, reward `sum_{k<m} gamma^k r_k`, next_obs and
    terminated of step m - 1, valid = mask[:, 0]; bootstrap discount [B] `gamma^m`).
    """
    n = mask.shape[1]
    powers = discount ** jnp.arange(n, dtype=jnp.float32)  # [n]
    steps = jnp.sum(mask, axis=1)  # [B], m >= 1 where step 0 is valid
    last = jnp.maximum(steps.astype(jnp.int32) - 1, 0)  # [B]
    pick = lambda x: jnp.take_along_axis(x, last.reshape((-1,) + (1,) * (x.ndim - 1)), axis=1)[:, 0]
    first = jax.tree.map(lambda x: x[:, 0], window)
    batch = first._replace(
        reward=jnp.sum(window.reward * mask * powers[None], axis=1),
        next_obs=pick(window.next_obs),
        terminated=pick(window.terminated),
        valid=mask[:, 0],
    )
    return batch, discount ** jnp.maximum(steps, 1.0)


class SACCore(NamedTuple):
    """SAC's networks and its per-part gradient steps, shared by SAC and SAC-SVG(H).

    init(key) -> SACState
    actor_dist(actor_params, obs [..., D]) -> (pre-tanh mean, log_std) [..., A]
    q(critic_params, obs [..., D], action [..., A]) -> [num_critics, ...]
    td_target(state, key, batch, alpha) -> [B]: Eq. 5-6 soft one-step target (target critic, double Q)
    fit_critic(state, obs [N, D], action [N, A], target [N], weights [N]) -> (state, loss, q [num_critics, N])  (Eq. 4)
    fit_actor(state, loss_fn(actor_params) -> (loss, log_prob)) -> (state, loss, log_prob)
    fit_alpha(state, log_prob, target_entropy) -> (state, alpha_loss)                  (Eq. 8)
    update_target(state) -> state                                                      (Polyak)
    """

    init: Callable[..., SACState]
    actor_dist: Callable[..., Any]
    q: Callable[..., jax.Array]
    td_target: Callable[..., jax.Array]
    fit_critic: Callable[..., Any]
    fit_actor: Callable[..., Any]
    fit_alpha: Callable[..., Any]
    update_target: Callable[..., SACState]


def check_sac(cfg) -> None:
    """Config-time check of a run whose agent is SAC (or an agent built on its core, e.g. SVG)."""
    a = cfg.agent
    if a.entropy_schedule == "decay" and a.target_entropy_final > a.target_entropy_init:
        raise ConfigError(
            f"agent.target_entropy_final ({a.target_entropy_final}) exceeds agent.target_entropy_init "
            f"({a.target_entropy_init}): the decay of Amos et al. Eq. 14 anneals the target entropy down"
        )
    if a.batch_size <= 0:
        raise ConfigError(f"agent.batch_size must be positive, got {a.batch_size}")
    try:
        check_sac_config(a)
    except MjxmbrlError as err:
        raise ConfigError(str(err)) from None


def check_sac_config(cfg: SACConfig) -> None:
    if cfg.entropy_schedule not in ENTROPY_SCHEDULES:
        raise MjxmbrlError(
            f"agent.entropy_schedule: '{cfg.entropy_schedule}' is not one of {', '.join(ENTROPY_SCHEDULES)}"
        )
    if cfg.num_critics < 1:
        raise MjxmbrlError(f"agent.num_critics must be >= 1, got {cfg.num_critics}")
    if cfg.init_alpha <= 0:
        raise MjxmbrlError(f"agent.init_alpha must be positive, got {cfg.init_alpha}")
    if cfg.n_step < 1:
        raise MjxmbrlError(f"agent.n_step must be >= 1, got {cfg.n_step}")


def make_sac_core(cfg: SACConfig, obs_size: int, action_size: int) -> SACCore:
    """Builds SAC's actor, critic ensemble, temperature and their Adam optimisers from `cfg`."""
    check_sac_config(cfg)
    hidden = tuple(cfg.hidden_sizes)
    actor = GaussianActor(action_size, hidden, cfg.log_std_min, cfg.log_std_max)
    critic = CriticEnsemble(cfg.num_critics, hidden, layer_norm=cfg.critic_layer_norm)
    actor_opt = optax.adam(cfg.actor_lr)
    critic_opt = optax.adam(cfg.critic_lr)
    alpha_opt = optax.adam(cfg.alpha_lr)

    def init(key: PRNGKey) -> SACState:
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros((1, obs_size), jnp.float32)
        action = jnp.zeros((1, action_size), jnp.float32)
        actor_params = actor.init(actor_key, obs)
        critic_params = critic.init(critic_key, obs, action)
        log_alpha = jnp.asarray(jnp.log(cfg.init_alpha), jnp.float32)
        return SACState(
            actor_params=actor_params,
            critic_params=critic_params,
            # A copy, not an alias: a donated state must not hold one buffer twice.
            target_critic_params=jax.tree_util.tree_map(jnp.copy, critic_params),
            log_alpha=log_alpha,
            actor_opt_state=actor_opt.init(actor_params),
            critic_opt_state=critic_opt.init(critic_params),
            alpha_opt_state=alpha_opt.init(log_alpha),
        )

    def td_target(
        state: SACState, key: PRNGKey, batch: Transition, alpha: jax.Array, discount: Optional[jax.Array] = None
    ) -> jax.Array:
        """Eq. 5 on `batch`; discount [B] replaces cfg.discount for n-step batches (`n_step_batch`)."""
        # One next-action sample serves every critic member's target.
        next_mean, next_log_std = actor.apply(state.actor_params, batch.next_obs)
        next_action, next_log_prob = sample_tanh_gaussian(key, next_mean, next_log_std)
        next_q = critic.apply(state.target_critic_params, batch.next_obs, next_action)
        target = soft_td_target(
            batch.reward, batch.terminated, next_q, next_log_prob, alpha,
            cfg.discount if discount is None else discount, cfg.reward_scale,
        )
        return jax.lax.stop_gradient(target)

    def fit_critic(state: SACState, obs: jax.Array, action: jax.Array, target: jax.Array, weights: jax.Array):
        """Eq. 4 on N pairs; weights [N] 0/1 (0: an invalid transition, which must not move the critic)."""

        def critic_loss_fn(critic_params):
            q = critic.apply(critic_params, obs, action)  # [num_critics, N]
            return jnp.mean(jnp.square(q - target[None]) * weights[None]), q

        step = gradient_step(critic_loss_fn, critic_opt, state.critic_params, state.critic_opt_state, has_aux=True)
        return state.replace(critic_params=step.params, critic_opt_state=step.opt_state), step.loss, step.aux

    def fit_actor(state: SACState, loss_fn: Callable):
        step = gradient_step(loss_fn, actor_opt, state.actor_params, state.actor_opt_state, has_aux=True)
        return state.replace(actor_params=step.params, actor_opt_state=step.opt_state), step.loss, step.aux

    def fit_alpha(state: SACState, log_prob: jax.Array, target_entropy: jax.Array):
        # Eq. 8 with alpha = exp(log_alpha): entropy above target -> positive gradient -> alpha shrinks.
        entropy_gap = jax.lax.stop_gradient(jnp.mean(log_prob) + target_entropy)
        step = gradient_step(lambda la: -la * entropy_gap, alpha_opt, state.log_alpha, state.alpha_opt_state)
        return state.replace(log_alpha=step.params, alpha_opt_state=step.opt_state), step.loss

    def update_target(state: SACState) -> SACState:
        return state.replace(target_critic_params=polyak_update(state.target_critic_params, state.critic_params, cfg.tau))

    return SACCore(init, actor.apply, critic.apply, td_target, fit_critic, fit_actor, fit_alpha, update_target)


def sac_actor_loss(core: SACCore, critic_params: Params, obs: jax.Array, key: PRNGKey, alpha: jax.Array) -> Callable:
    """loss_fn(actor_params) -> (mean_B[alpha log pi(a|s) - min_i Q_i(s, a)], log_prob [B]), a ~ pi (Eq. 7).

    The critic enters only as a closure constant: the loss moves actor params alone.
    """

    def loss_fn(actor_params):
        mean, log_std = core.actor_dist(actor_params, obs)
        action, log_prob = sample_tanh_gaussian(key, mean, log_std)
        q_pi = jnp.min(core.q(critic_params, obs, action), axis=0)
        return jnp.mean(alpha * log_prob - q_pi), log_prob

    return loss_fn


def sac_metrics(critic_loss, actor_loss, alpha_loss, alpha, log_prob, target_entropy, q) -> Metrics:
    """The learner/ metrics of one SAC-style update (SAC and SAC-SVG(H)); `alpha` is the one its losses used."""
    return {
        "learner/critic_loss": critic_loss,
        "learner/actor_loss": actor_loss,
        "learner/alpha_loss": alpha_loss,
        "learner/alpha": alpha,
        "learner/entropy": -jnp.mean(log_prob),
        "learner/target_entropy": target_entropy,
        "learner/q_mean": jnp.mean(q),
    }


def make_policy_fns(core: SACCore, reward_scale: float = 1.0):
    """(policy_params, policy, value, q_value) of a tanh-Gaussian actor with a critic ensemble (Learner fields).

    The critic regresses `reward_scale * r`; value and q_value are a planner's terminal values, added to returns
    of the task's reward, so they are divided by reward_scale back into the task's units.
    """

    def policy_params(state: SACState) -> Params:
        return state.actor_params

    def policy(params: Params, obs: jax.Array, key: PRNGKey, deterministic: Any = False) -> jax.Array:
        """obs [..., D] -> action [..., A] in [-1, 1]; `deterministic` may be a bool or a traced bool."""
        mean, log_std = core.actor_dist(params, obs)
        if isinstance(deterministic, bool):
            if deterministic:
                return tanh_gaussian_mode(mean)
            return sample_tanh_gaussian(key, mean, log_std)[0]
        sampled = sample_tanh_gaussian(key, mean, log_std)[0]
        return jnp.where(deterministic, tanh_gaussian_mode(mean), sampled)

    def value(state: SACState, obs: jax.Array, key: PRNGKey) -> jax.Array:
        """Soft state value `(min_i Q_i(s, a) - alpha log pi(a|s)) / reward_scale`, a ~ pi (Eq. 6, one sample): [...]."""
        mean, log_std = core.actor_dist(state.actor_params, obs)
        action, log_prob = sample_tanh_gaussian(key, mean, log_std)
        q = jnp.min(core.q(state.critic_params, obs, action), axis=0)
        return (q - jnp.exp(state.log_alpha) * log_prob) / reward_scale

    def q_value(state: SACState, obs: jax.Array, key: PRNGKey) -> jax.Array:
        """mean_i Q_i(s, a) / reward_scale, a ~ pi(s), no entropy term (Byravan et al. 2022 App. F.2, one action): [...]."""
        mean, log_std = core.actor_dist(state.actor_params, obs)
        action, _ = sample_tanh_gaussian(key, mean, log_std)
        return jnp.mean(core.q(state.critic_params, obs, action), axis=0) / reward_scale

    return policy_params, policy, value, q_value


def make_sac(
    cfg: SACConfig, obs_size: int, action_size: int, total_env_steps: int, *, normalize_obs: bool = False, **_context
) -> Learner:
    """Builds the SAC learner (see `Learner` in learners/base.py for the signatures).

    `normalize_obs`: the networks read observations normalised with the run's statistics.
    `_context` (model, has_termination) is for model-based learners; SAC ignores it.
    """
    core = make_sac_core(cfg, obs_size, action_size)

    def update(
        key: PRNGKey, state: SACState, batch: Transition, env_steps: Any, context: Optional[LearnContext] = None
    ) -> Tuple[SACState, Metrics]:
        """One SAC step on `batch` (leaves [B, ...], raw obs); env_steps drives H_target.

        Metrics are scalars; `learner/alpha` is the temperature used in this step's losses.
        """
        discount = None
        if cfg.n_step > 1:  # `sample` gave windows of n steps
            batch, discount = n_step_batch(*batch, cfg.discount)
        if normalize_obs:
            stats = context.obs_stats
            batch = batch._replace(obs=normalize(stats, batch.obs), next_obs=normalize(stats, batch.next_obs))
        next_action_key, actor_key = jax.random.split(key)
        alpha = jnp.exp(state.log_alpha)
        target_entropy = target_entropy_at(cfg, action_size, total_env_steps, env_steps)
        target = core.td_target(state, next_action_key, batch, alpha, discount)
        state, critic_loss, q = core.fit_critic(state, batch.obs, batch.action, target, valid_weights(batch))
        state, actor_loss, log_prob = core.fit_actor(state, sac_actor_loss(core, state.critic_params, batch.obs, actor_key, alpha))
        state, alpha_loss = core.fit_alpha(state, log_prob, target_entropy)
        state = core.update_target(state)
        return state, sac_metrics(critic_loss, actor_loss, alpha_loss, alpha, log_prob, target_entropy, q)

    def sample_windows(replay, key: PRNGKey, replay_state) -> Tuple[Transition, jax.Array]:
        return replay.sample_sequences(key, replay_state, cfg.batch_size, cfg.n_step)

    policy_params, policy, value, q_value = make_policy_fns(core, cfg.reward_scale)
    return Learner(
        init=core.init, update=update, policy_params=policy_params, policy=policy, value=value, q_value=q_value,
        sample=sample_windows if cfg.n_step > 1 else None, ready_rows=cfg.n_step,
    )
