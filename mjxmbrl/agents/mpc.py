"""MPC alone: a planner acts in every step; only a learned world model (if any) is trained.

With the oracle this is planning on the true simulator (Byravan et al. 2022,
Table 1 "ground truth"; POLO's MPC baseline, Lowrey et al. 2019); with a
learned model it is PETS-style MPC from scratch, the model fitted on replay
sequences in the same jitted step (model.updates_per_step updates on every
train.update_every-th vectorised step). No policy is learned: the planner's
proposal is the fixed Gaussian and there is no terminal value (`mjxmbrl plan`
with `planner.source_run` plans with a trained run's policy and value instead).

With the RSSM and CEM this is PlaNet (Hafner et al. 2019, "Learning Latent
Dynamics for Planning from Pixels", arXiv:1811.04551), with the gradient
planner Grad-MPC (S V, Jalagam, LeCun, Sobal 2023, "Gradient-based Planning
with World Models", arXiv:2312.17227, Alg. 1): both plan from the filtered
belief in training and evaluation, and explore in training by adding
N(0, exploration_noise^2) to the planned action (PlaNet's 0.3, App. A.7).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from mjxmbrl.agents.base import EVAL, EXPLORE, Agent, make_update_due, root_streams, training_progress
from mjxmbrl.agents.parts import make_model_learning, make_planning_actor
from mjxmbrl.planners.base import PlanParams
from mjxmbrl.types import ConfigError


@dataclasses.dataclass(frozen=True)
class MPCAgentConfig:
    """MPC with a planner over the oracle or a learned model, no policy learning."""

    name: str = "mpc"
    # std of the Gaussian noise added to the planned action while training (mode explore), clipped to the
    # action bounds: PlaNet's exploration noise 0.3 (App. A.7 of the gradient-planning paper); 0: none.
    exploration_noise: float = 0.0


@struct.dataclass
class MPCState:
    model: object  # ModelState of a learned model, or {} for the oracle


def check_mpc(cfg) -> None:
    if cfg.agent.exploration_noise < 0:
        raise ConfigError(f"agent.exploration_noise must be >= 0, got {cfg.agent.exploration_noise}")
    if cfg.planner.name == "none":
        raise ConfigError("agent mpc acts by planning: set planner.name (smc, cem, mppi or grad) and model.name")
    if cfg.planner.proposal != "gaussian" or cfg.planner.value != "none":
        raise ConfigError(
            "agent mpc learns no policy or value: set planner.proposal=gaussian and planner.value=none "
            "(a trained run's policy and value plan through `mjxmbrl plan` with planner.source_run)"
        )


def make_mpc_agent(cfg, parts) -> Agent:
    from mjxmbrl.planners import make_planner

    spec, model, trainer = parts.spec, parts.model, parts.model_trainer
    planner = make_planner(cfg.planner, model, cfg.env, spec.obs_size, spec.action_size)[0]
    planning = make_planning_actor(planner, model, spec.obs_size)
    learn_model = make_model_learning(
        trainer, cfg.model, parts.replay, cfg.env.num_envs, cfg.train.warmup_env_steps, frozen=cfg.transfer.model == "frozen"
    )
    noise = float(cfg.agent.exploration_noise)
    update_due = make_update_due(cfg)

    def init(root_key):
        return MPCState(model=trainer.init(root_streams(root_key)[1]) if trainer is not None else {})

    def act(key, state, carry, env_state, env_steps, mode):
        pp = PlanParams(model=state.model.params if trainer is not None else {})
        progress = training_progress(cfg, env_steps)
        action, carry, planner_state, metrics = planning.plan(key, carry, env_state, pp, progress)
        carry = planning.keep(carry, planner_state, jnp.ones(action.shape[:1], bool))
        if mode == EXPLORE and noise > 0:
            # fold_in: the plan keeps the key it had without noise (eval and `mjxmbrl plan` are unchanged)
            action = jnp.clip(action + noise * jax.random.normal(jax.random.fold_in(key, 1), action.shape), -1.0, 1.0)
        return action, carry, {}, metrics

    def learn(key, state, replay_state, env_steps):
        model_state, metrics, ready = learn_model(key, state.model, replay_state, env_steps, update_due(env_steps))
        return state.replace(model=model_state), {
            "train/learning": jnp.zeros((), jnp.float32),
            "train/model_learning": ready.astype(jnp.float32),
            **metrics,
        }

    return Agent(
        init=init,
        init_carry=planning.init_carry,
        act=act,
        observe=lambda state, transition: state,
        learn=learn,
        policy_params=lambda state: None,
        eval_modes=(EVAL,),
    )
