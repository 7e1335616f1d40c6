"""Seeds and devices: S seeds in one program, envs sharded over a 1-D device mesh.

Seeds. With `train.num_seeds = S > 1` every leaf of the `TrainState` gets a
leading seed axis [S, ...] (seed values `train.seed + i`), the jitted chunk is
`jit(vmap(scan(train_step)))` and checkpoints hold the stacked state. With
S = 1 the state has no seed axis, exactly as a single run always had, so old
run directories and every consumer of one seed's state keep working.

Devices. `train.devices` builds a 1-D mesh with axis `ENV_AXIS` over D
devices. The env state, the agent's per-env carry (planner warm starts, filtered latents), the running episode
returns and the replay buffer's env axis are sharded over it; learner and
model parameters, optimiser states, observation statistics, the PRNG key and
the counters are replicated. GSPMD partitions the one jitted program: each
device steps its num_envs / D envs, and because every loss is a mean over the
global batch, the gradient of the replicated parameters is reduced across
devices by XLA. Sharding never changes what the program computes, only where,
so a D-device run matches the 1-device run up to the order of float sums.

With S > 1 the env axis (not the seed axis) is sharded: one rule for every S,
no constraint between S and D, and the same divisibility check as one seed
(num_envs % D == 0). Sharding the seed axis instead would need no gradient
reduction but only works when D divides S.

Multi-host: `init_distributed` calls `jax.distributed.initialize()` (when
`train.distributed` is true or `JAX_COORDINATOR_ADDRESS` is set) before the
first device query; the mesh then spans every process's devices, process 0
alone writes files (`is_writer`), and `to_host` / `place` move the state
between the global sharded arrays and host numpy for checkpoints.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mjxmbrl.config import ConfigError

ENV_AXIS = "envs"


# ---- seeds -----------------------------------------------------------------------


def is_stacked(cfg) -> bool:
    """Whether the run's state carries a leading seed axis (num_seeds > 1)."""
    return cfg.train.num_seeds > 1


def seed_slice(tree: Any, index: int) -> Any:
    """Seed `index` of a stacked pytree (leading axis removed)."""
    return jax.tree.map(lambda x: x[index], tree)


def scalar(x: Any) -> int:
    """A per-run counter as a Python int: the counter itself, or seed 0's when stacked (all seeds agree)."""
    return int(np.asarray(x).reshape(-1)[0])


# ---- processes and meshes --------------------------------------------------------


def init_distributed(train_cfg) -> bool:
    """Joins a multi-host job when asked (train.distributed, or JAX_COORDINATOR_ADDRESS set).

    Must run before anything touches a device. jax.distributed.initialize()
    auto-detects SLURM / Open MPI / Kubernetes; otherwise JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID say where process 0 listens, how many
    processes there are and which one this is. Returns whether the job is distributed.
    """
    wanted = bool(train_cfg.distributed) or bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
    if not wanted or jax.distributed.is_initialized():
        return jax.distributed.is_initialized()
    kwargs = {}
    for name, key in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        if os.environ.get(key):
            try:
                kwargs[name] = int(os.environ[key])
            except ValueError:
                raise ConfigError(f"{key} must be an integer, got {os.environ[key]!r}") from None
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as err:  # no cluster detected, coordinator unreachable, ...
        text = " ".join(str(err).split())[:300]
        raise ConfigError(
            "train.distributed: jax.distributed.initialize() failed "
            f"({err.__class__.__name__}: {text}); set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID "
            "or run under SLURM / Open MPI"
        ) from None
    return True


def is_writer() -> bool:
    """Process 0 alone writes metrics, checkpoints, the summary and the policy."""
    return jax.process_index() == 0


def auto_device_count(available: int, num_envs: int) -> int:
    """The most devices, at most `available`, that split `num_envs` evenly (train.devices=0 on one host)."""
    return max(d for d in range(1, available + 1) if num_envs % d == 0)


def make_mesh(cfg) -> Mesh:
    """The 1-D mesh of `train.devices` devices, checked against what is available and env.num_envs.

    train.devices=0 (automatic): on one host, the most local devices that divide env.num_envs (all
    of them for a num_envs that all divide; 1 for a single env, e.g. the DMC-100k configs); on several
    hosts, every device of the job.
    """
    init_distributed(cfg.train)
    available = jax.device_count()
    wanted = cfg.train.devices or available
    if cfg.train.devices == 0 and jax.process_count() == 1:
        wanted = auto_device_count(available, cfg.env.num_envs)
    if wanted > available:
        kinds = sorted({d.platform for d in jax.devices()})
        raise ConfigError(
            f"train.devices={wanted}, but only {available} {'/'.join(kinds)} device(s) are available "
            "(train.devices=0 uses all of them)"
        )
    if jax.process_count() > 1 and wanted != available:
        raise ConfigError(
            f"a multi-host run uses every device of every process: train.devices={wanted}, but the job has {available}; "
            "set train.devices=0"
        )
    if cfg.env.num_envs % wanted != 0:
        divisors = [d for d in range(wanted, 0, -1) if cfg.env.num_envs % d == 0]
        raise ConfigError(
            f"train.devices=0 uses all {wanted} devices, which do not divide env.num_envs={cfg.env.num_envs}: every "
            f"device steps an equal share of the envs (set train.devices={divisors[0]} or a multiple of {wanted} envs)"
        )
    return Mesh(np.array(jax.devices()[:wanted]), (ENV_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def state_shardings(state_shape: Any, mesh: Mesh, num_envs: int, stacked: bool) -> Any:
    """A TrainState-shaped tree of NamedShardings: env axes over the mesh, the rest replicated.

    `state_shape` is a TrainState (arrays or `jax.eval_shape` structs). The env
    axis is axis 0 of env_state / carry / episode_return leaves and axis 1 of
    the replay rows [rows, num_envs, ...]; a seed axis in front shifts both by one.
    A leaf whose axis is not num_envs long (none today) stays replicated.
    """
    rep = replicated(mesh)
    offset = 1 if stacked else 0

    def along(axis: int):
        sharded = NamedSharding(mesh, P(*([None] * axis), ENV_AXIS))

        def pick(leaf):
            shape = getattr(leaf, "shape", ())
            return sharded if len(shape) > axis and shape[axis] == num_envs else rep

        return pick

    everything = jax.tree.map(lambda _: rep, state_shape)
    return everything.replace(
        env_state=jax.tree.map(along(offset), state_shape.env_state),
        carry=jax.tree.map(along(offset), state_shape.carry),
        episode_return=jax.tree.map(along(offset), state_shape.episode_return),
        replay=everything.replay.replace(data=jax.tree.map(along(offset + 1), state_shape.replay.data)),
    )


def place(tree: Any, shardings: Any) -> Any:
    """Puts a host (or single-device) tree onto the mesh with `shardings`, in any number of processes."""
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)

    def put(x, sharding):
        value = np.asarray(x)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree, shardings)


def to_host(tree: Any) -> Any:
    """The whole tree as host numpy arrays (gathered from every process when sharded across hosts).

    A collective in a multi-host job: every process must call it, even those that write nothing.
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def barrier(name: str) -> None:
    """Waits for every process (a no-op with one)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
