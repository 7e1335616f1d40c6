"""Dreamer, and Policy+Grad-MPC on top of it.

Dreamer: Hafner, Lillicrap, Ba, Norouzi 2020, "Dream to Control: Learning Behaviors by Latent
Imagination", arXiv:1912.01603, Alg. 1. Policy+Grad-MPC: S V, Jalagam, LeCun, Sobal 2023,
"Gradient-based Planning with World Models", arXiv:2312.17227, Sec. 6 (Eq. 6), App. A.4 (Eqs. 10-13).

  - World model: the run's learned latent model (model.name rssm: any model with `Model.filter`),
    fitted on replay windows in `learn` (agents/parts.py `make_model_learning`: model.updates_per_step
    updates on every train.update_every-th vectorised step, past the warm-up).
  - Behaviour: an actor q_phi(a | s) and a value v_psi(s) on the model's latent, learned in imagination
    (learners/dreamer.py): train.updates_per_step updates on the same steps, after the model's, each
    from the filtered latents of agent.batch_size windows of agent.seq_len replay steps, imagining
    agent.imagine_horizon steps ahead.
  - Acting: the carry holds each env's belief, filtered from every observation and executed action
    (agents/parts.py `make_belief_filter`). "explore": an actor sample plus N(0, exploration_noise^2),
    clipped to [-1, 1] (Dreamer's additive Gaussian exploration); "policy": the actor's mode;
    "eval": the planner if there is one, else the actor's mode.
  - Policy+Grad-MPC (planner.name grad, init policy, proposal policy, value dreamer, reward model): the
    planner plans from the belief, its candidates initialised from the actor on the latent (its mode,
    `plan_init`), and ascends r_0 + ... + gamma^H v_psi(s_H) (Eq. 6) by gradient through the model.
    It acts in evaluation only: the paper's Table 2 compares it with the pure policy of one trained
    Dreamer, here eval/return (planner) and eval/policy_return (actor) of the same run.

The actor reads the latent, not the observation, so the run exports no policy (`policy_params` is
None): serving it on raw observations would need the model's filter over the episode.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from mjxmbrl.agents.base import EVAL, EXPLORE, POLICY, Agent, make_update_due, root_streams, run_if, scan_updates, training_progress
from mjxmbrl.agents.parts import make_belief_filter, make_model_learning, make_planning_actor
from mjxmbrl.learners.dreamer import latent_features, make_behaviour, posterior_states
from mjxmbrl.planners.base import PlanParams
from mjxmbrl.types import ConfigError


@dataclasses.dataclass(frozen=True)
class DreamerConfig:
    """Dreamer's behaviour learning; defaults are Dreamer v1's (Hafner et al. 2020, danijar/dreamer)."""

    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {"plan_init": ("mode", "sample")}

    name: str = "dreamer"
    actor_hidden_sizes: Tuple[int, ...] = (400, 400, 400, 400)  # Dreamer v1: 4 ELU layers of 400
    value_hidden_sizes: Tuple[int, ...] = (400, 400, 400)  # Dreamer v1: 3 ELU layers of 400
    actor_lr: float = 8e-5
    value_lr: float = 8e-5
    adam_eps: float = 1e-7  # Dreamer v1 builds tf.optimizers.Adam(lr): TensorFlow's default epsilon
    grad_clip: float = 100.0  # global norm, actor and value alike
    imagine_horizon: int = 15  # H
    discount: float = 0.99  # gamma
    return_lambda: float = 0.95  # lambda of V_lambda
    discount_weights: bool = True  # weight imagined step t by gamma^t in both losses (Dreamer v1)
    batch_size: int = 50  # B windows of replay whose filtered latents start the imagination ...
    seq_len: int = 50  # ... each of T steps: N = B x T starts
    init_std: float = 5.0  # the actor's initial pre-tanh std (softplus offset)
    mean_scale: float = 5.0  # mean = mean_scale * tanh(raw / mean_scale)
    min_std: float = 1e-4
    exploration_noise: float = 0.3  # std of the Gaussian added to the actor's sample in training
    # The action the planner's policy proposal takes from the actor: its mode (deterministic: with zero
    # planner iterations Policy+Grad-MPC is the pure policy) or a sample.
    plan_init: str = "mode"


def check_dreamer(cfg) -> None:
    a, p = cfg.agent, cfg.planner
    if not _has_latent_filter(cfg):
        raise ConfigError(
            f"agent dreamer learns its behaviour in the latent state of a learned latent world model that it filters "
            f"while acting: set model.name=rssm (model '{cfg.model.name}' has no learned latent filter)"
        )
    for key in ("imagine_horizon", "batch_size", "seq_len"):
        if getattr(a, key) < 1:
            raise ConfigError(f"agent.{key} must be >= 1, got {getattr(a, key)}")
    if any(size < 1 for size in tuple(a.actor_hidden_sizes) + tuple(a.value_hidden_sizes)):
        raise ConfigError("agent.actor_hidden_sizes and agent.value_hidden_sizes must be positive")
    for key in ("actor_lr", "value_lr", "adam_eps", "grad_clip", "init_std", "mean_scale", "min_std"):
        if getattr(a, key) <= 0:
            raise ConfigError(f"agent.{key} must be > 0, got {getattr(a, key)}")
    if not 0.0 < a.discount <= 1.0 or not 0.0 <= a.return_lambda <= 1.0:
        raise ConfigError(f"agent.discount must be in (0, 1] and agent.return_lambda in [0, 1], got {a.discount}, {a.return_lambda}")
    if a.exploration_noise < 0:
        raise ConfigError(f"agent.exploration_noise must be >= 0, got {a.exploration_noise}")
    if a.seq_len * cfg.env.num_envs > cfg.replay.capacity:
        raise ConfigError(f"agent.seq_len ({a.seq_len}) does not fit in the replay buffer ({cfg.replay.capacity // cfg.env.num_envs} steps per env)")
    if p.name == "none":
        return
    if p.reward != "model":
        raise ConfigError("agent dreamer plans with the reward its value was trained on: set planner.reward=model")
    if p.value not in ("dreamer", "none"):
        raise ConfigError(f"agent dreamer: planner.value must be dreamer (its latent value) or none, got {p.value}")
    components = tuple(p.mixture_components) if p.proposal == "mixture" else (p.proposal,)
    if any(c not in ("policy", "gaussian") for c in components):
        raise ConfigError("agent dreamer: the planner's proposal must be policy (its actor) or gaussian")
    if p.value == "dreamer" and p.discount != a.discount:
        raise ConfigError(
            f"planner.discount ({p.discount}) must equal agent.discount ({a.discount}): the value it bootstraps on "
            "was trained with that discount"
        )


def dreamer_defaults(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Dreamer's default for the model section (raw YAML dict): the RSSM, when no model is named."""
    model = dict(raw.get("model") or {})
    model.setdefault("name", "rssm")
    return {**raw, "model": model}


def _has_latent_filter(cfg) -> bool:
    """The model is learned and keeps a latent it filters (Model.filter), e.g. the RSSM; not mlp, gru, oracle."""
    if cfg.model.name in ("none", "oracle"):
        return False
    from mjxmbrl.models import make_model

    model = make_model(cfg.model, cfg.env)
    return model.filter is not None and model.loss is not None and not model.uses_sim_state


@struct.dataclass
class DreamerState:
    behaviour: Any  # learners.dreamer.BehaviourState: actor, value and their optimisers
    model: Any  # ModelState of the latent world model


def make_dreamer_agent(cfg, parts) -> Agent:
    from mjxmbrl.planners import make_planner, proposals

    a, spec, replay, model, trainer = cfg.agent, parts.spec, parts.replay, parts.model, parts.model_trainer
    num_envs, warmup = cfg.env.num_envs, cfg.train.warmup_env_steps
    num_updates, update_due = cfg.train.updates_per_step, make_update_due(cfg)
    latent = jax.eval_shape(lambda k: model.initial_state(model.init(k), jnp.zeros((spec.obs_size,)), k), jax.random.PRNGKey(0))
    feature_size = jax.eval_shape(latent_features, latent).shape[0]
    behaviour = make_behaviour(model, feature_size, spec.action_size, a)
    learn_model = make_model_learning(trainer, cfg.model, replay, num_envs, warmup, frozen=cfg.transfer.model == "frozen")
    beliefs = make_belief_filter(model, spec.obs_size)
    planning = None
    if cfg.planner.name != "none":
        planner = make_planner(
            cfg.planner, model, cfg.env, spec.obs_size, spec.action_size,
            value_fn=lambda value_params, x, key: behaviour.value(value_params, x),
            policy=proposals.head_policy_proposal(behaviour.policy, a.plan_init == "mode"),
            head_features=latent_features,
        )[0]
        planning = make_planning_actor(planner, model, spec.obs_size)

    def init(root_key):
        learner_key, model_key = root_streams(root_key)
        return DreamerState(behaviour=behaviour.init(learner_key), model=trainer.init(model_key))

    def init_carry(key, n):
        return planning.init_carry(key, n) if planning is not None else {"belief": beliefs.init(key, n)}

    def act(key, state, carry, env_state, env_steps, mode):
        model_params, actor_params = state.model.params, state.behaviour.actor
        if mode == EVAL and planning is not None:
            pp = PlanParams(model=model_params, policy=actor_params, value=state.behaviour.value)
            progress = training_progress(cfg, env_steps)
            action, carry, planner_state, metrics = planning.plan(key, carry, env_state, pp, progress)
            return action, planning.keep(carry, planner_state, jnp.ones(action.shape[:1], bool)), {}, metrics
        k_belief, k_act, k_noise = jax.random.split(key, 3)
        belief = beliefs.update(k_belief, carry["belief"], env_state, model_params)
        x = jax.vmap(latent_features)(belief)
        action = behaviour.policy(actor_params, x, k_act, mode != EXPLORE)
        if mode == EXPLORE and a.exploration_noise > 0:
            action = jnp.clip(action + a.exploration_noise * jax.random.normal(k_noise, action.shape), -1.0, 1.0)
        return action, {**carry, "belief": belief}, {}, {}

    def fit(key, behaviour_state, replay_state, model_params):
        def one_update(behaviour_state, k):
            k_sample, k_filter, k_update = jax.random.split(k, 3)
            batch, mask = replay.sample_sequences(k_sample, replay_state, a.batch_size, a.seq_len)
            starts, weights = posterior_states(model, model_params, batch, mask, k_filter)
            return behaviour.update(k_update, behaviour_state, model_params, starts, weights)

        return scan_updates(one_update, key, behaviour_state, num_updates)

    def learn(key, state, replay_state, env_steps):
        k_model, k_behaviour = jax.random.split(key)
        due = update_due(env_steps)
        model_state, model_metrics, model_ready = learn_model(k_model, state.model, replay_state, env_steps, due)
        ready = (num_updates > 0) & (env_steps >= warmup) & (replay_state.size >= a.seq_len)
        ready = ready & (replay_state.size * num_envs >= a.batch_size)
        if due is not None:
            ready = ready & due
        metrics = {}
        behaviour_state = state.behaviour
        if num_updates > 0:
            behaviour_state, metrics = run_if(ready, fit, k_behaviour, behaviour_state, replay_state, model_state.params)
        return state.replace(behaviour=behaviour_state, model=model_state), {
            "train/learning": ready.astype(jnp.float32),
            "train/model_learning": model_ready.astype(jnp.float32),
            "train/updates": ready.astype(jnp.int32) * num_updates,
            **metrics,
            **model_metrics,
        }

    return Agent(
        init=init,
        init_carry=init_carry,
        act=act,
        observe=lambda state, transition: state,
        learn=learn,
        policy_params=lambda state: None,
        eval_modes=(EVAL, POLICY) if planning is not None else (EVAL,),
    )
