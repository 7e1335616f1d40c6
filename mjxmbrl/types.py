"""Shared type aliases and records.

Records that flow through the train step are `NamedTuple`s (cheap pytrees);
carried state is a `flax.struct.dataclass` defined next to the code that owns it.
"""

from typing import Any, Dict, NamedTuple

import jax

PRNGKey = jax.Array
Params = Any  # a pytree of arrays
Metrics = Dict[str, jax.Array]


class Transition(NamedTuple):
    """One environment transition, batched on leading axes.

    `next_obs` is the true next observation, also when the episode ended and the
    env auto-reset (the reset observation is never stored as a successor).
    `terminated` marks a true terminal state (no bootstrap); `truncated` marks a
    time-limit cut (bootstrap from `next_obs`). `done = terminated | truncated`
    marks the end of an episode in the buffer's time order.
    """

    obs: jax.Array  # [..., obs_dim]
    action: jax.Array  # [..., act_dim]
    reward: jax.Array  # [...]
    next_obs: jax.Array  # [..., obs_dim]
    terminated: jax.Array  # [...] float 0/1
    truncated: jax.Array  # [...] float 0/1
    # [...] float 0/1: 0 marks a transition whose next observation or reward was not finite (NaN physics).
    # The train step stores such a transition with next_obs := obs and reward := 0 and losses give it
    # weight 0, so it cannot poison a critic or a model. None (e.g. a hand-made batch) means all valid.
    valid: Any = None
    # What the acting agent asked the replay to keep with each transition ({} for none), each leaf [...]
    # or [..., k]: the planned flag of planner-in-the-loop acting (Byravan et al. Alg. 1), the behaviour
    # log-probability of the executed action for off-policy corrections (Retrace), ...
    extras: Any = None


class MjxmbrlError(Exception):
    """A user-facing error: the CLI prints its message alone and exits non-zero."""


class ConfigError(MjxmbrlError):
    """A config file or override that is not valid (raised by config.py and every method's check)."""


def valid_weights(batch: Transition) -> Any:
    """The 0/1 loss weights of a batch's transitions ([...] float32; ones when `batch.valid` is None)."""
    import jax.numpy as jnp

    if batch.valid is None:
        return jnp.ones(jnp.shape(batch.reward), jnp.float32)
    return batch.valid
