"""Actor-critic agents (SAC, SAC-SVG(H), MPO + BC), optionally with a world model and a planner in the loop.

The agent is a composition of parts:
  - a learner (learners/sac.py, svg.py, mpo.py): K updates on every k-th env
    step (train.updates_per_step, train.update_every: the rate limit of
    Byravan et al. 2022 App. E) on the batches the learner asks for (single
    steps, or MPO's windows of T steps with the behaviour log-probabilities
    stored at acting time), inside `learn`, once past the warm-up and once the
    buffer holds a batch;
  - an optional task-agnostic proposal (learners/agnostic.py, Byravan App.
    E.2) fitted by BC on single-step batches in the same updates (not when it
    was transferred from another run and is kept frozen: run/transfer.py);
  - an optional world model, fitted on replay sequences in the same `learn`
    (agents/parts.py); SVG unrolls it in its actor loss;
  - an optional planner acting in the envs (Byravan et al. 2022, Alg. 1): per
    env and step the planner's action with probability p_plan, else the learned
    policy pi_theta's; the planner's proposal and terminal value may use the
    learner's policy and critic, or the task-agnostic proposal. It plans
    through the world model, or through the true simulator while the learned
    model is fitted alongside (planner.through=oracle: an expert's data for a
    pre-trained model, Byravan Sec. 5.1).

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
    make_update_due,
    root_streams,
    run_if,
    scan_updates,
    training_progress,
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
    proposal: Any = None  # AgnosticState of the task-agnostic proposal, or {} without one


def make_actor_critic_agent(cfg, parts, make_learner) -> Agent:
    """Builds the agent of `cfg.agent` (SACConfig, SVGConfig, MPOConfig) from `parts` (agents.AgentParts).

    make_learner(agent_cfg, obs_size, action_size, total_env_steps, model=, normalize_obs=, has_termination=,
    action_repeat=) -> Learner builds the learner; the planner (cfg.planner, if any) is bound to it for its
    proposal and value.
    """
    spec, replay, model, trainer = parts.spec, parts.replay, parts.model, parts.model_trainer
    num_envs, norm = cfg.env.num_envs, cfg.env.normalize_obs
    warmup, total = cfg.train.warmup_env_steps, cfg.train.total_env_steps
    num_updates, batch_size = cfg.train.updates_per_step, cfg.agent.batch_size
    update_due = make_update_due(cfg)
    learner = make_learner(
        cfg.agent, spec.obs_size, spec.action_size, total,
        model=model, normalize_obs=norm, has_termination=spec.has_termination, action_repeat=cfg.env.action_repeat,
    )
    agnostic = None
    if getattr(cfg.agent, "agnostic_proposal", False):
        from mjxmbrl.learners.agnostic import make_agnostic_proposal

        a = cfg.agent
        agnostic = make_agnostic_proposal(spec.obs_size, spec.action_size, spec.task_groups, a.agnostic_hidden_sizes,
                                          a.agnostic_lr, getattr(a, "min_std", 1e-4))
    proposal_frozen = cfg.transfer.proposal == "frozen"  # a transferred proposal kept fixed (run/transfer.py)
    learn_model = make_model_learning(trainer, cfg.model, replay, num_envs, warmup, frozen=cfg.transfer.model == "frozen")
    planning = None
    if cfg.planner.name != "none":
        from mjxmbrl.planners import make_planner

        plan_model = model
        if cfg.planner.through == "oracle":  # plan on the simulator; the learned `model` is only fitted (its trainer)
            from mjxmbrl.models import make_model
            from mjxmbrl.models.oracle import OracleModelConfig

            plan_model = make_model(OracleModelConfig(), cfg.env)
        planner, _, proposal = make_planner(cfg.planner, plan_model, cfg.env, spec.obs_size, spec.action_size, learner, agnostic)
        planning = make_planning_actor(planner, plan_model, spec.obs_size)
    acts_from_proposal = planning is not None and cfg.planner.act_from == "proposal"
    # Uniform actions on [-1, 1]^A during the warm-up: their density, for off-policy corrections.
    uniform_log_prob = -spec.action_size * jnp.log(2.0)

    def init(root_key):
        learner_key, model_key = root_streams(root_key)
        return ActorCriticState(
            learner=learner.init(learner_key),
            model=trainer.init(model_key) if trainer is not None else {},
            obs_stats=init_stats(spec.obs_size),
            proposal=agnostic.init(jax.random.fold_in(model_key, 1)) if agnostic is not None else {},
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
            proposal=state.proposal.params if agnostic is not None else None,
        )

    def behaviour_extras(state, env_state, action, planned, env_steps):
        """What the replay keeps of this step: the planned flag, the behaviour log-probability."""
        extras = {"planned": planned.astype(jnp.float32)} if planning is not None else {}
        if learner.log_prob is not None:
            log_prob = learner.log_prob(learner.policy_params(state.learner), net_obs(state, env_state.obs), action)
            extras["behaviour_log_prob"] = jnp.where(env_steps < warmup, uniform_log_prob, log_prob)
        return extras

    def act(key, state, carry, env_state, env_steps, mode):
        policy_params = learner.policy_params(state.learner)
        if planning is None or mode == POLICY or (mode == EXPLORE and cfg.planner.p_plan == 0.0 and not acts_from_proposal):
            action = learner.policy(policy_params, net_obs(state, env_state.obs), key, mode != EXPLORE)
            if mode != EXPLORE:  # evaluation stores nothing
                return action, carry, {}, {}
            planned = jnp.zeros((env_state.obs.shape[0],), bool)
            return action, carry, behaviour_extras(state, env_state, action, planned, env_steps), {}
        k_plan, k_policy, k_mix = jax.random.split(key, 3)
        progress = training_progress(cfg, env_steps)
        if mode == EVAL:
            planned_action, carry, planner_state, metrics = planning.plan(k_plan, carry, env_state, plan_params(state), progress)
            return planned_action, planning.keep(carry, planner_state, jnp.ones(planned_action.shape[:1], bool)), {}, metrics
        use_plan = jax.random.uniform(k_mix, env_state.obs.shape[:1]) < cfg.planner.p_plan
        # Before the warm-up ends the train step executes uniform actions: nothing planned is executed.
        executed = use_plan & (env_steps >= warmup)
        planned_action, carry, planner_state, metrics = plan_where_needed(
            k_plan, carry, env_state, plan_params(state), progress, jnp.any(executed)
        )
        if acts_from_proposal:  # Byravan Sec. 5.4: the actor samples the planner's (mixture) proposal
            policy_action = proposal(plan_params(state), env_state.obs, k_policy, progress)
            # Where the sample may come from another component than the policy, its density under the policy is
            # not the behaviour's: flag it like a planned action, so the learner's off-policy traces are cut there.
            other = (~use_plan) & (non_policy_weight(progress) > 0.0) & (env_steps >= warmup)
        else:
            policy_action = learner.policy(policy_params, net_obs(state, env_state.obs), k_policy, False)
            other = jnp.zeros_like(use_plan)
        action = jnp.where(use_plan[:, None], planned_action, policy_action)
        metrics = {**metrics, "train/planned_fraction": jnp.mean(executed.astype(jnp.float32))}
        extras = behaviour_extras(state, env_state, action, executed | other, env_steps)
        return action, planning.keep(carry, planner_state, executed), extras, metrics

    def non_policy_weight(progress):
        """[] the probability that the planner's proposal samples a component other than the learned policy."""
        p = cfg.planner
        if p.proposal != "mixture":
            return jnp.asarray(0.0 if p.proposal == "policy" else 1.0)
        w = p.mixture_start + (p.mixture_end - p.mixture_start) * jnp.clip(progress, 0.0, 1.0)
        first, second = p.mixture_components
        return (first != "policy") * w + (second != "policy") * (1.0 - w)

    def plan_where_needed(key, carry, env_state, pp, progress, needed):
        """The planner's step where some env executes its action (a model with a belief plans always, since
        its filter must see every step); elsewhere zeros and `train/planning` 0, saving the plan's cost."""
        if plan_model.filter is not None:
            action, carry, planner_state, metrics = planning.plan(key, carry, env_state, pp, progress)
            return action, carry, planner_state, {**metrics, "train/planning": jnp.ones(())}

        def plan(_):
            action, new_carry, planner_state, metrics = planning.plan(key, carry, env_state, pp, progress)
            return action, new_carry, planner_state, {**metrics, "train/planning": jnp.ones(())}

        shapes = jax.eval_shape(plan, None)

        def skip(_):
            action, new_carry, planner_state, metrics = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
            # Nothing executed: the next plan of every env starts afresh (as `keep` does for unexecuted plans).
            fresh = planning.init_carry(key, env_state.obs.shape[0])["planner"]
            return action, {**carry, "planner": fresh}, fresh, metrics

        return jax.lax.cond(needed, plan, skip, None)

    def observe(state, transition):
        return state.replace(obs_stats=update_stats(state.obs_stats, transition.obs)) if norm else state

    def sample_batch(key, replay_state):
        if learner.sample is not None:
            return learner.sample(replay, key, replay_state)
        return replay.sample(key, replay_state, batch_size)

    def fit(key, states, replay_state, obs_stats, env_steps, model_state):
        """K learner updates (and K BC steps of the task-agnostic proposal) in one scan; states = (learner, proposal)."""
        context = LearnContext(model_params=model_state.params if trainer is not None else {}, obs_stats=obs_stats)

        def one_update(states, update_key):
            learner_state, proposal_state = states
            sample_key, update_key = jax.random.split(update_key)
            learner_state, metrics = learner.update(update_key, learner_state, sample_batch(sample_key, replay_state),
                                                    env_steps, context)
            if agnostic is not None and not proposal_frozen:
                steps = replay.sample(jax.random.fold_in(sample_key, 1), replay_state, batch_size)
                obs = normalize(obs_stats, steps.obs) if norm else steps.obs
                proposal_state, proposal_metrics = agnostic.update(proposal_state, obs, steps.action, steps.valid)
                metrics = {**metrics, **proposal_metrics}
            return (learner_state, proposal_state), metrics

        return scan_updates(one_update, key, states, num_updates)

    def learn(key, state, replay_state, env_steps):
        model_key = jax.random.fold_in(key, 1)
        can_learn = (num_updates > 0) & (env_steps >= warmup) & (replay_state.size * num_envs >= batch_size)
        if learner.ready_rows > 1:
            can_learn = can_learn & (replay_state.size >= learner.ready_rows)
        due = update_due(env_steps)  # the rate limit: None (always) or every update_every-th vectorised step
        if due is not None:
            can_learn = can_learn & due
        states, learner_metrics = (state.learner, state.proposal), {}
        if num_updates > 0:
            states, learner_metrics = run_if(
                can_learn, fit, key, states, replay_state, state.obs_stats, env_steps, state.model
            )
        model_state, model_metrics, model_learning = learn_model(model_key, state.model, replay_state, env_steps, due)
        metrics = {
            "train/learning": can_learn.astype(jnp.float32),
            "train/model_learning": model_learning.astype(jnp.float32),
            "train/updates": can_learn.astype(jnp.int32) * num_updates,
            **learner_metrics,
            **model_metrics,
        }
        return state.replace(learner=states[0], model=model_state, proposal=states[1]), metrics

    return Agent(
        init=init,
        init_carry=init_carry,
        act=act,
        observe=observe,
        learn=learn,
        policy_params=lambda state: learner.policy_params(state.learner),
        extras_spec=extras_spec(planning is not None, learner.log_prob is not None),
        eval_modes=(EVAL, POLICY) if planning is not None else (EVAL,),
        obs_stats=lambda state: state.obs_stats,
        policy=learner.policy,
    )


def extras_spec(plans: bool, stores_log_prob: bool) -> dict:
    """What the replay keeps per transition: the planned flag (planner in the loop) and the behaviour log-prob."""
    spec = {"planned": jax.ShapeDtypeStruct((), jnp.float32)} if plans else {}
    if stores_log_prob:
        spec["behaviour_log_prob"] = jax.ShapeDtypeStruct((), jnp.float32)
    return spec
