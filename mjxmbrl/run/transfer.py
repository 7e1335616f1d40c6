"""Transfer: a fresh run starts from a trained run's world model and task-agnostic proposal.

Byravan et al. 2022, "Evaluating model-based planning and planner amortization for continuous control",
arXiv:2110.03363, Sec. 5.3-5.4 and App. F.3: a dynamics model and a proposal pre-trained on one task are
loaded into an agent learning another task with the same body, and kept frozen or fine-tuned. The `transfer`
config section (config.TransferConfig) names the source run and the parts; `transfer_parts` replaces those
parts of the new run's initial state with the source's, before the first step. What "frozen" means is the
agents' business: they skip the part's updates (agents/parts.make_model_learning, the actor-critic agent's
proposal BC step). A resumed run does not load them again: its checkpoint holds them.

What is copied: the model's parameters (`ModelState.params`, which hold its normalisation statistics too; between
tasks of one body with different task observations, the per-group MLP's networks and input statistics) and
the proposal's parameters; their optimiser states start fresh. Where the run normalises its networks' inputs
(env.normalize_obs) the proposal reads them through the agent's running statistics, so the source's statistics
are copied too and keep updating from there.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from mjxmbrl.types import MjxmbrlError


class TransferError(MjxmbrlError):
    """A source run whose parts this run cannot take."""


def _describe(tree: Any) -> dict:
    """{'path': (shape, dtype)} of every leaf, for comparing two parameter trees."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): (tuple(jnp.shape(x)), str(jnp.result_type(x))) for path, x in flat}


def _check_same_layout(what: str, source: Any, target: Any, source_run: str) -> None:
    got, want = _describe(source), _describe(target)
    if got == want:
        return
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    if differ:
        k = differ[0]
        detail = f"{k} is {got[k][0]} {got[k][1]} there, {want[k][0]} {want[k][1]} here"
    elif missing:
        detail = f"it lacks {missing[0]}"
    else:
        detail = f"it has {extra[0]}, which this run does not"
    raise TransferError(
        f"transfer.source_run {source_run}: its {what} does not fit this run ({detail}); the source must use the "
        "same body (observation and action sizes) and the same network sizes"
    )


def _transferred_model(cfg, source_cfg, source: Any, target: Any) -> Any:
    """The source's model params for this run: as they are for the same layout; for the per-group MLP of another
    task of the same body (e.g. AntWalkForward -> AntGTTP), its networks and input statistics
    (models/mlp.transfer_mlp_params); TransferError otherwise."""
    if _describe(source) == _describe(target) or cfg.model.name != "mlp" or source_cfg.env.name == cfg.env.name:
        _check_same_layout("world model", source, target, cfg.transfer.source_run)
        return source
    from mjxmbrl.envs.registry import get_spec
    from mjxmbrl.models.mlp import transfer_mlp_params

    try:
        return transfer_mlp_params(source, get_spec(source_cfg.env.name).obs_groups, target,
                                   get_spec(cfg.env.name).obs_groups)
    except ValueError as err:
        raise TransferError(
            f"transfer.source_run {cfg.transfer.source_run}: its per-group MLP ({source_cfg.env.name}) does not fit "
            f"this run ({cfg.env.name}): {err}; the tasks must share a body and the model's sizes"
        ) from None


def transfer_parts(cfg, agent_state: Any, source_cfg, source_agent: Any) -> Any:
    """The agent state of one seed with cfg.transfer's parts taken from `source_agent` (one seed's agent state).

    agent_state / source_agent: the agents' states (ActorCriticState, MPCState, ...: a `model` ModelState and,
    for proposals, a `proposal` AgnosticState and `obs_stats`). Raises TransferError where the source lacks a
    part or its shapes differ.
    """
    t = cfg.transfer
    source = t.source_run
    if t.model != "none":
        if source_cfg.model.name != cfg.model.name:
            raise TransferError(
                f"transfer.source_run {source} learned model '{source_cfg.model.name}', this run uses "
                f"'{cfg.model.name}': set model.name={source_cfg.model.name} (and its sizes)"
            )
        params = _transferred_model(cfg, source_cfg, source_agent.model.params, agent_state.model.params)
        agent_state = agent_state.replace(model=agent_state.model.replace(params=params))
    if t.proposal != "none":
        proposal = getattr(source_agent, "proposal", None)
        if not proposal:
            raise TransferError(
                f"transfer.source_run {source} (agent '{source_cfg.agent.name}') trained no task-agnostic proposal: "
                "train the source with agent mpo and agent.agnostic_proposal=true"
            )
        _check_same_layout("task-agnostic proposal", proposal.params, agent_state.proposal.params, source)
        agent_state = agent_state.replace(proposal=agent_state.proposal.replace(params=proposal.params))
        if cfg.env.normalize_obs:
            if jnp.shape(source_agent.obs_stats.mean) != jnp.shape(agent_state.obs_stats.mean):
                raise TransferError(
                    f"transfer.source_run {source} normalised observations of another size ({source_cfg.env.name}): "
                    "across tasks with different observations, transfer the proposal with env.normalize_obs=false"
                )
            if not source_cfg.env.normalize_obs:
                raise TransferError(
                    f"transfer.source_run {source} trained its proposal on raw observations, this run normalises "
                    "them (env.normalize_obs): use the same setting as the source"
                )
            agent_state = agent_state.replace(obs_stats=source_agent.obs_stats)
    return agent_state


def apply_transfer(cfg, ts: Any, restore: Callable[..., Any], stacked: bool) -> Any:
    """The run's initial TrainState `ts` with cfg.transfer applied (unchanged without a source run).

    restore(run_dir, seed_index) -> (config, components, TrainState of one seed) reads the source
    (run.loop.restore_run). A multi-seed run (stacked: leaves [num_seeds, ...]) gives every seed the same parts.
    """
    t = cfg.transfer
    if t.source_run is None:
        return ts
    source_cfg, _, source_ts = restore(t.source_run, t.source_seed_index)
    source_agent = source_ts.agent
    if stacked:  # every seed takes the same parts; what is not transferred keeps each seed's own initialisation
        seeds = jnp.shape(ts.env_steps)[0]
        source_agent = jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds,) + jnp.shape(x)), source_agent)
    return ts.replace(agent=transfer_parts(cfg, ts.agent, source_cfg, source_agent))
