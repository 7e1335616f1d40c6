"""The shared rollout-and-score core of every planner.

A planner sees the world through three functions bound at build time:

    step(plan_params, z [P], actions [P, A], key) -> (z' [P], reward [P], alive [P])
        one vmapped model step of all particles, with the step's reward from the
        task's known `reward_fn(obs, action, next_obs)` on the model's predicted
        observations, or from the model's own reward (learned head, or the
        simulator's reward for the oracle); `alive` is 0 once a particle's
        episode has terminated (oracle termination, or a learned termination
        probability < 0.5), so rewards after a terminal state do not count;
    value(plan_params, z [P], key) -> [P]
        the terminal value V(s_H) of the particles' observations: the learner's
        soft value or plain mean Q (Byravan App. F.2), each a mean over K policy
        actions (planners/__init__.py `make_value_fn`), or zeros without bootstrapping;
        with `head_features` the value reads the model state's features instead
        (the Dreamer value v(s) on the RSSM's latent [h, s]);
    score(plan_params, z0 [P], actions [P, H, A], key) -> returns [P]
        sum_t gamma^t r_t + gamma^H V(s_H) (Byravan et al. Alg. 3 `evaluate_actions`;
        gradient-based planning Eq. 6), scan over H, vmap over particles.

The learned heads (the terminal value and the policy proposals, which read
`observe(plan_params, z)`) see the model's predicted observations by default; an
agent whose heads are trained on the model's latent state (Dreamer's actor and
value) passes `head_features(z) -> [F]`, and `observe` returns those features.

`PlanParams` carries what changes between calls (model, policy and value
parameters); everything static (sizes, horizons, reward choice) is closed over.
Each planner file (smc.py, cem.py, mppi.py, grad.py) holds only its own rules.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from mjxmbrl.types import ConfigError, Metrics, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class PlannerConfig:
    """Settings every planner shares: horizon, discount, reward, proposal, value, and where learned parts come from."""

    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {
        "reward": ("known", "model"),
        "proposal": ("gaussian", "policy", "agnostic", "mixture"),
        "value": ("none", "soft", "q", "optimistic", "dreamer"),
        "act_from": ("policy", "proposal"),
        "through": ("model", "oracle"),
    }

    horizon: int = 10  # agent steps (each spans env.action_repeat control steps)
    discount: float = 0.99
    reward: str = "known"  # known: the task's reward_fn on predicted observations | model: the model's own reward
    # gaussian | policy (the learned policy) | agnostic (the task-agnostic proposal, Byravan App. E.2) |
    # mixture (the first of mixture_components with probability w, else the second)
    proposal: str = "gaussian"
    proposal_sigma: float = 0.5  # std of the fixed Gaussian proposal
    mixture_components: Tuple[str, str] = ("policy", "gaussian")  # two of gaussian, policy, agnostic
    mixture_start: float = 0.0  # weight of the first component at the start of training ...
    mixture_end: float = 1.0  # ... and at the end (Byravan Sec. 5.4 anneals from agnostic to policy)
    # 0: w moves from mixture_start to mixture_end over the whole run (its env steps); M > 0: over the first M
    # learner updates, then stays at mixture_end (Byravan App. F.3: from 1 to 0 over M learner steps).
    mixture_learner_steps: int = 0
    # Terminal value V(s_H), averaged over value_samples policy actions a ~ pi(s_H): none | soft (the learner's
    # soft value min_i Q_i(s, a) - alpha log pi(a|s)) | q (mean_i Q_i(s, a), no entropy term: Byravan App. F.2).
    # Default none: a planner must run without a learner (oracle MPC, `mjxmbrl plan`), and F.2 finds bootstrapping
    # task-dependent (it helps on walking, hurts on GTTP). value_samples = 10 as in F.2.
    # optimistic: POLO's value ensemble aggregated by log-sum-exp (Lowrey et al. 2019 Eq. 6; agent polo only).
    # dreamer: the Dreamer value v_psi(s_H) on the latent (agent dreamer only; Policy+Grad-MPC, S V et al. 2023, Eq. 6).
    value: str = "none"
    value_samples: int = 10
    source_run: Optional[str] = None  # run directory whose checkpoint supplies policy, value and learned model
    # Acting in training (Byravan Alg. 1): per env and step, the planner's action with probability p_plan, else
    # the learned policy's (an agent without a policy always plans).
    p_plan: float = 1.0
    # What the actor samples when it does not plan: policy (Alg. 1's pi_theta, the learned policy) | proposal (the
    # planner's proposal, e.g. Byravan Sec. 5.4's mixture of a reloaded task-agnostic proposal and the policy, "from
    # which the actor samples exclusively at the start"; agents sac/svg/mpo with a planner).
    act_from: str = "policy"
    # What the planner rolls out while training: model (the run's model.name) | oracle (the true MJX simulator,
    # while the run's learned model.name is still fitted on the replay alongside: a planning expert whose data
    # trains a model, Byravan Sec. 5.1's "pre-trained model ... trained on data from a successful agent";
    # agents sac, svg and mpo).
    through: str = "model"


@dataclasses.dataclass(frozen=True)
class NoPlannerConfig:
    """No planner: the agent acts with its policy."""

    name: str = "none"


def check_planner_common(cfg) -> None:
    """Rejects settings no planner can work with, before anything runs (each planner's check calls it)."""
    from mjxmbrl.envs.registry import ENV_SPECS

    p = cfg.planner
    if p.horizon < 1:
        raise ConfigError(f"planner.horizon must be >= 1, got {p.horizon}")
    if not 0.0 < p.discount <= 1.0:
        raise ConfigError(f"planner.discount must be in (0, 1], got {p.discount}")
    for key in ("num_particles", "num_samples", "num_candidates", "iterations", "value_samples"):
        value = getattr(p, key, None)
        if value is not None and value < 1:
            raise ConfigError(f"planner.{key} must be >= 1, got {value}")
    for key in ("temperature", "learning_rate", "noise_sigma", "sigma_init", "proposal_sigma"):
        value = getattr(p, key, None)
        if value is not None and value <= 0:
            raise ConfigError(f"planner.{key} must be > 0, got {value}")
    if p.mixture_learner_steps < 0:
        raise ConfigError(f"planner.mixture_learner_steps must be >= 0 (0: over the whole run), got {p.mixture_learner_steps}")
    if not 0.0 <= p.p_plan <= 1.0:
        raise ConfigError(f"planner.p_plan must be in [0, 1], got {p.p_plan}")
    components = tuple(p.mixture_components)
    if len(components) != 2 or any(c not in ("gaussian", "policy", "agnostic") for c in components):
        raise ConfigError(f"planner.mixture_components must be two of gaussian, policy, agnostic; got {list(components)}")
    if p.value == "optimistic" and cfg.agent.name != "polo":
        raise ConfigError("planner.value=optimistic is POLO's value ensemble: it needs agent polo (others: none, soft or q)")
    if p.value == "dreamer" and cfg.agent.name != "dreamer":
        raise ConfigError("planner.value=dreamer is the Dreamer value on the latent: it needs agent dreamer (others: none, soft or q)")
    if cfg.model.name == "none":
        raise ConfigError("a planner needs a model: set model.name (oracle, or a learned model)")
    if p.through == "oracle":
        if cfg.agent.name not in ("sac", "svg", "mpo"):
            raise ConfigError(f"planner.through=oracle fits a learned model beside an actor-critic agent (sac, svg, mpo), "
                              f"not agent {cfg.agent.name}; plan on the simulator with model.name=oracle instead")
        if cfg.model.name == "oracle":
            raise ConfigError("planner.through=oracle needs a learned model.name to fit alongside (mlp, gru, ensemble, rssm); "
                              "with model.name=oracle the planner already rolls out the simulator")
        # (the oracle's own check, that the task runs on MJX, is config.py's: planners do not import models)
    spec = ENV_SPECS.get(cfg.env.name)
    on_simulator = cfg.model.name == "oracle" or p.through == "oracle"  # the simulator's own reward scores plans
    if p.reward == "known":
        if spec is not None and spec.reward_fn is None and not on_simulator:
            raise ConfigError(
                f"planner.reward=known, but env '{cfg.env.name}' has no known reward function; use planner.reward=model"
            )
    elif cfg.model.name in ("mlp", "ensemble") and not cfg.model.learn_reward and not on_simulator:
        raise ConfigError("planner.reward=model needs a reward model: set model.learn_reward=true (or planner.reward=known)")


class PlanParams(NamedTuple):
    """Parameters a plan reads: model params ({} for the oracle), proposal policy and value (learner) params."""

    model: Params
    policy: Params = None
    value: Params = None
    obs_stats: Any = None
    proposal: Params = None  # the task-agnostic proposal's parameters (planner.proposal agnostic or in a mixture)  # the agent's observation statistics when its networks read normalised observations


class Planner(NamedTuple):
    """init(key) -> planner_state;
    plan(key, planner_state, obs [D], belief, plan_params, progress=0.0) -> (action [A], planner_state, metrics).

    `belief` is the model's own state of this env kept by the acting agent: the
    filtered latent of a latent model, the simulator State for the oracle; None
    starts from `obs` (models/base.py). `progress` in [0, 1] is the fraction of
    training done (annealed proposals).
    """

    init: Callable[[PRNGKey], Any]
    plan: Callable[..., Any]


class RolloutCore(NamedTuple):
    initial_particles: Callable[..., Any]  # (plan_params, obs, key, P, belief) -> z [P]
    observe: Callable[..., jax.Array]  # (plan_params, z [P]) -> what the heads read: obs [P, D], or features [P, F]
    step: Callable[..., Any]  # (plan_params, z [P], a [P, A], key) -> (z', r [P], alive [P])
    value: Callable[..., jax.Array]  # (plan_params, z [P], key) -> [P]
    score: Callable[..., jax.Array]  # (plan_params, z0 [P], actions [P, H, A], key) -> [P]
    rollout: Callable[..., Any]  # (plan_params, z0 [P], actions [P, H, A], step_keys [H]) -> (z_H, return [P], weight [P])
    discount: float


def make_rollout_core(
    model,
    discount: float,
    reward_fn: Optional[Callable] = None,
    reward_scale: float = 1.0,
    value_fn: Optional[Callable] = None,
    head_features: Optional[Callable] = None,
) -> RolloutCore:
    """Binds a model, a reward and an optional terminal value into the shared core.

    model: a models.base.Model. reward_fn: known reward (obs, action, next_obs)
    -> [] applied to the model's observations and multiplied by `reward_scale`
    (the action repeat: the known reward is per control step and one model step
    spans `action_repeat` of them); None uses model.reward. value_fn:
    (value_params, obs [P, D], key) -> [P], or None for no bootstrap.
    head_features: z -> [F] of one model state, what `observe` returns (and so what the value and the
    proposals read) instead of the model's predicted observation; the known reward still reads the
    predicted observations.
    """
    if reward_fn is None and model.reward is None:
        raise ValueError(f"model '{model.name}' has no reward: give the task's known reward or learn a reward head")

    def predict(pp: PlanParams, z):
        return jax.vmap(lambda zi: model.observation(pp.model, zi))(z)

    def observe(pp: PlanParams, z):
        return predict(pp, z) if head_features is None else jax.vmap(head_features)(z)

    def initial_particles(pp: PlanParams, obs, key, num_particles: int, belief=None):
        return model.initial_particles(pp.model, obs, key, num_particles, belief)

    def step(pp: PlanParams, z, actions, key):
        keys = jax.random.split(key, actions.shape[0])
        z_next = jax.vmap(lambda zi, ai, ki: model.step(pp.model, zi, ai, ki))(z, actions, keys)
        if reward_fn is not None:
            reward = reward_scale * reward_fn(predict(pp, z), actions, predict(pp, z_next))
        else:
            reward = jax.vmap(lambda zi, ai, zn: model.reward(pp.model, zi, ai, zn))(z, actions, z_next)
        if model.termination is not None:
            terminal = jax.vmap(lambda zi, ai, zn: model.termination(pp.model, zi, ai, zn))(z, actions, z_next)
            alive = (terminal < 0.5).astype(jnp.float32)
        else:
            alive = jnp.ones_like(reward)
        return z_next, reward, alive

    def value(pp: PlanParams, z, key):
        if value_fn is None:
            return jnp.zeros(jax.tree.leaves(z)[0].shape[:1], jnp.float32)
        return value_fn(pp.value, observe(pp, z), key)

    def rollout(pp: PlanParams, z0, actions, step_keys):
        """Particles z0 [P] through actions [P, H, A] (step_keys [H]) -> (z_H [P], return [P], weight [P]).

        return = sum_t gamma^t alive_t r_t; weight = gamma^H alive_H, what a terminal value is scaled by.
        """

        def body(carry, inputs):
            z, ret, alive, scale = carry
            a, k = inputs
            z, r, still = step(pp, z, a, k)
            ret = ret + scale * alive * r
            alive = alive * still
            return (z, ret, alive, scale * discount), None

        n = actions.shape[0]
        init = (z0, jnp.zeros((n,), jnp.float32), jnp.ones((n,), jnp.float32), jnp.asarray(1.0, jnp.float32))
        (z, ret, alive, scale), _ = jax.lax.scan(body, init, (jnp.swapaxes(actions, 0, 1), step_keys))
        return z, ret, scale * alive

    def score(pp: PlanParams, z0, actions, key):
        """Discounted return of each particle's action sequence plus the discounted terminal value."""
        step_keys = jax.random.split(key, actions.shape[1] + 1)
        z, ret, weight = rollout(pp, z0, actions, step_keys[:-1])
        return ret + weight * value(pp, z, step_keys[-1])

    return RolloutCore(initial_particles, observe, step, value, score, rollout, discount)


def shift_plan(plan: jax.Array, fill: Optional[jax.Array] = None) -> jax.Array:
    """Warm start: the plan [H, A] advanced one step, [a_1, ..., a_{H-1}, fill].

    fill [A] is the new last action; None repeats a_{H-1}.
    """
    last = plan[-1:] if fill is None else fill[None]
    return jnp.concatenate([plan[1:], last], axis=0)


def clip_actions(actions: jax.Array) -> jax.Array:
    """Actions live in [-1, 1]^A in every env of the registry."""
    return jnp.clip(actions, -1.0, 1.0)


def plan_metrics(returns: jax.Array, prefix: str = "planner/") -> Metrics:
    return {f"{prefix}return_mean": jnp.mean(returns), f"{prefix}return_max": jnp.max(returns)}
