"""Replay sampling laid out over a device mesh (data parallelism; see mjxmbrl/run/devices.py)."""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def shard_batches(replay, mesh: Mesh):
    """The replay functions with every sampled batch laid out along its batch axis over the mesh.

    Without it GSPMD gathers the sampled rows from the env-sharded buffer and
    replicates the batch, so every device repeats the whole learner update.
    With it each device runs the forward and backward pass of its share of the
    batch and XLA all-reduces the gradients (the losses are means over the
    global batch). What is sampled and computed is unchanged: only the layout.
    """
    batch_sharding = NamedSharding(mesh, P(mesh.axis_names[0]))  # the mesh's one axis: the envs

    def constrain(tree):
        return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, batch_sharding), tree)

    def sample(key, state, batch_size):
        return constrain(replay.sample(key, state, batch_size))

    def sample_sequences(key, state, batch_size, seq_len):
        return constrain(replay.sample_sequences(key, state, batch_size, seq_len))

    return replay._replace(sample=sample, sample_sequences=sample_sequences)
