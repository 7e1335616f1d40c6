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
    # [...] float 0/1: the planner chose this action (Byravan et al. Alg. 1 acting mix); the replay stores
    # zeros when a transition comes without it (None), e.g. from a model-free agent.
    planned: Any = None


class MjxmbrlError(Exception):
    """A user-facing error: the CLI prints its message alone and exits non-zero."""
