"""Simulator-state snapshots small enough to keep with every replay transition, and their restore.

An MJX State holds far more than the dynamics need (contacts, Jacobians, sensor buffers: 31 KB per
env for the DM Control humanoid). What one step of `mjx.step` reads from the previous data is the
configuration and velocity, the actuator activations, the time and the constraint solver's warm
start; everything else it recomputes. So a snapshot keeps those fields (`SIM_FIELDS`), the mocap
bodies' positions where the task has any (FingerReorient's target: `data.mocap_pos`), and the
wrapper's step counter (the time limit), as replay extras named `sim_<field>` (flat arrays: the
replay stores them like any other extras), and `restore` writes them into a template State of the
same task (a fresh reset), which steps exactly as the recorded state did. POLO's N-step targets
(Lowrey et al. 2019, arXiv:1811.01848, Eq. 7) plan from restored replay states.
"""

from __future__ import annotations

from typing import Any, Dict

import jax
import jax.numpy as jnp

SIM_FIELDS = ("qpos", "qvel", "act", "time", "qacc_warmstart")
MOCAP_FIELD = "mocap_pos"  # kept only where the task has mocap bodies (a target the task moves)
PREFIX = "sim_"


def _fields(data: Any) -> tuple:
    return SIM_FIELDS + ((MOCAP_FIELD,) if data.mocap_pos.shape[-2] > 0 else ())


def snapshot(state: Any) -> Dict[str, jax.Array]:
    """State (any leading batch axes) -> {"sim_qpos": [..., nq], ..., "sim_steps": [...]} (+ "sim_mocap_pos")."""
    out = {PREFIX + f: getattr(state.data, f) for f in _fields(state.data)}
    out[PREFIX + "steps"] = state.info["steps"]
    return out


def snapshot_spec(state_one: Any) -> Dict[str, jax.ShapeDtypeStruct]:
    """The replay extras spec of one env's snapshot, from one env's State (or its eval_shape)."""
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in snapshot(state_one).items()}


def restore(template: Any, snap: Dict[str, jax.Array], obs: jax.Array) -> Any:
    """One env's State: `template` (a State of the same task) with the snapshot's fields and `obs`.

    reward, done and the wrapper's terminal flags are cleared: a restored state is a live one.
    """
    fields = _fields(template.data)
    data = template.data.replace(**{f: snap[PREFIX + f].astype(getattr(template.data, f).dtype) for f in fields})
    info = dict(template.info)
    zero = jnp.zeros((), jnp.float32)
    info.update(steps=snap[PREFIX + "steps"].astype(jnp.int32), terminated=zero, truncated=zero, final_obs=obs)
    return template.replace(data=data, obs=obs, reward=zero, done=zero, info=info)
