"""Actor-critic agents (SAC, SAC-SVG(H)), optionally with a world model and a planner in the loop.

The agent is a composition of parts:
  - a learner (learners/sac.py, learners/svg.py): K updates per env step on
    single-step replay batches, inside `learn`, once past the warm-up and once
    the buffer holds a batch;
  - an optional world model, fitted on replay sequences in the same `learn`
    (agents/parts.py); SVG unrolls it in its actor loss;
  - an optional planner acting in the envs (Byravan et al. 2022, Alg. 1): per
    env and step the planner's action with probability p_plan, else the learned
    policy pi_theta's; the planner's proposal and terminal value may use the
    learner's policy and critic.

Evaluation modes: "eval" is the actor (the planner when there is one, else the
deterministic policy), "policy" the amortized policy's mean alone (Byravan et
al. Fig. 2's solid and dotted lines); an agent without a planner has "eval" only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from mjxmbrl.agents.base import (
    EVAL,
    EXPLORE,
    POLICY,
    Agent,
    root_streams,
    run_if,
    scan_updates,
)
from mjxmbrl.agents.parts import make_model_learning, make_planning_actor
from mjxmbrl.envs.normalization import RunningStats, init_stats, normalize, update_stats
from mjxmbrl.learners.base import LearnContext
from mjxmbrl.planners.base import PlanParams


@struct.dataclass
class ActorCriticState:
    learner: Any  # the learner's state (networks, optimisers)
    model: Any  # ModelState of a learned world model, or {} without one
    obs_stats: RunningStats  # running observation moments the networks' inputs are normalised with (if enabled)


def make_actor_critic_agent(cfg, parts, make_learner) -> Agent:
    """Builds the agent of `cfg.agent` (SACConfig, SVGConfig) from `parts` (agents.AgentParts).

    make_learner(agent_cfg, obs_size, action_size, total_env_steps, model=, normalize_obs=, has_termination=)
    -> Learner builds the learner; the planner (cfg.planner, if any) is bound to it for its proposal and value.
    """
    spec, replay, model, trainer = parts.spec, parts.replay, parts.model, parts.model_trainer
    num_envs, norm = cfg.env.num_envs, cfg.env.normalize_obs
    warmup, total = cfg.train.warmup_env_steps, cfg.train.total_env_steps
    num_updates, batch_size = cfg.train.updates_per_step, cfg.agent.batch_size
    learner = make_learner(
        cfg.agent, spec.obs_size, spec.action_size, total,
        model=model, normalize_obs=norm, has_termination=spec.has_termination,
    )
    learn_model = make_model_learning(trainer, cfg.model, replay, num_envs, warmup)
    planning = None
    if cfg.planner.name != "none":
        from mjxmbrl.planners import make_planner

        planner = make_planner(cfg.planner, model, cfg.env, spec.obs_size, spec.action_size, learner)[0]
        planning = make_planning_actor(planner, model, spec.obs_size)

    def init(root_key):
        learner_key, model_key = root_streams(root_key)
        return ActorCriticState(
            learner=learner.init(learner_key),
            model=trainer.init(model_key) if trainer is not None else {},
            obs_stats=init_stats(spec.obs_size),
        )

    def init_carry(key, n):
        return planning.init_carry(key, n) if planning is not None else {}

    def net_obs(state, obs):
        return normalize(state.obs_stats, obs) if norm else obs

    def plan_params(state):
        return PlanParams(
            model=state.model.params if trainer is not None else {},
            policy=learner.policy_params(state.learner),
            value=(state.learner, state.obs_stats),
            obs_stats=state.obs_stats,
        )

    def act(key, state, carry, env_state, env_steps, mode):
        policy_params = learner.policy_params(state.learner)
        if planning is None or mode == POLICY or (mode == EXPLORE and cfg.planner.p_plan == 0.0):
            action = learner.policy(policy_params, net_obs(state, env_state.obs), key, mode != EXPLORE)
            extras = {"planned": jnp.zeros((env_state.obs.shape[0],))} if planning is not None else {}
            return action, carry, extras, {}
        k_plan, k_policy, k_mix = jax.random.split(key, 3)
        progress = env_steps.astype(jnp.float32) / total
        planned_action, carry, planner_state, metrics = planning.plan(k_plan, carry, env_state, plan_params(state), progress)
        if mode == EVAL:
            return planned_action, planning.keep(carry, planner_state, jnp.ones(planned_action.shape[:1], bool)), {}, metrics
        policy_action = learner.policy(policy_params, net_obs(state, env_state.obs), k_policy, False)
        use_plan = jax.random.uniform(k_mix, planned_action.shape[:1]) < cfg.planner.p_plan
        action = jnp.where(use_plan[:, None], planned_action, policy_action)
        # Before the warm-up ends the train step executes uniform actions: nothing planned is executed.
        executed = use_plan & (env_steps >= warmup)
        metrics = {**metrics, "train/planned_fraction": jnp.mean(executed.astype(jnp.float32))}
        return action, planning.keep(carry, planner_state, executed), {"planned": executed.astype(jnp.float32)}, metrics

    def observe(state, transition):
        return state.replace(obs_stats=update_stats(state.obs_stats, transition.obs)) if norm else state

    def fit_learner(key, learner_state, replay_state, obs_stats, env_steps, model_state):
        context = LearnContext(model_params=model_state.params if trainer is not None else {}, obs_stats=obs_stats)

        def one_update(learner_state, update_key):
            sample_key, update_key = jax.random.split(update_key)
            batch = replay.sample(sample_key, replay_state, batch_size)
            return learner.update(update_key, learner_state, batch, env_steps, context)

        return scan_updates(one_update, key, learner_state, num_updates)

    def learn(key, state, replay_state, env_steps):
        model_key = jax.random.fold_in(key, 1)
        can_learn = (num_updates > 0) & (env_steps >= warmup) & (replay_state.size * num_envs >= batch_size)
        learner_state, learner_metrics = state.learner, {}
        if num_updates > 0:
            learner_state, learner_metrics = run_if(
                can_learn, fit_learner, key, state.learner, replay_state, state.obs_stats, env_steps, state.model
            )
        model_state, model_metrics, model_learning = learn_model(model_key, state.model, replay_state, env_steps)
        metrics = {
            "train/learning": can_learn.astype(jnp.float32),
            "train/model_learning": model_learning.astype(jnp.float32),
            "train/updates": can_learn.astype(jnp.int32) * num_updates,
            **learner_metrics,
            **model_metrics,
        }
        return state.replace(learner=learner_state, model=model_state), metrics

    return Agent(
        init=init,
        init_carry=init_carry,
        act=act,
        observe=observe,
        learn=learn,
        policy_params=lambda state: learner.policy_params(state.learner),
        extras_spec={"planned": jax.ShapeDtypeStruct((), jnp.float32)} if planning is not None else {},
        eval_modes=(EVAL, POLICY) if planning is not None else (EVAL,),
        obs_stats=lambda state: state.obs_stats,
        policy=learner.policy,
    )
