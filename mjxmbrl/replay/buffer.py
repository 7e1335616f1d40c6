"""On-device ring replay buffer whose whole state is one pytree.

Layout. Transitions are stored time-major per environment: every field of
`ReplayState.data` has shape `[rows, num_envs, ...]` with
`rows = capacity // num_envs`. One call to `insert` writes one row (one step
of all `num_envs` environments) at the write pointer `ptr`; when the buffer is
full the oldest row is overwritten. Rows `(ptr - size) % rows, ...,
(ptr - 1) % rows` hold the stored steps from oldest to newest, so within one
env consecutive rows (modulo `rows`) are consecutive env steps.

Memory. The buffer holds `rows * num_envs * (2 * obs_size + action_size + 4 + E)`
float32 numbers (obs, next_obs, action, reward, terminated, truncated, valid,
and the E numbers of the agent's extras), i.e. four times that many bytes. With the default capacity of 1M
transitions and, say, obs_size=67 and action_size=21 that is 1e6 * 159 * 4 B = 636 MB of
device memory; size `replay.capacity` accordingly.

Observations can be kept in a narrower dtype (`ObsCodec`): pixel frames are stored as their uint8 levels,
a quarter of the float32 bytes, and decoded on every sample (train.py's `obs_codec`).

Every counter (`ptr`, `size`) lives in `ReplayState`, so the buffer is saved,
restored, donated and sharded like any other pytree. All functions are pure
and jittable; `batch_size` and `seq_len` are static Python ints.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from mjxmbrl.types import PRNGKey, Transition


@struct.dataclass
class ReplayState:
    """Ring buffer contents and counters.

    data: Transition with fields [rows, num_envs, ...] (float32):
        obs/next_obs [rows, num_envs, obs_size], action [rows, num_envs, action_size],
        reward/terminated/truncated/valid [rows, num_envs], extras {name: [rows, num_envs, ...]}.
    ptr: int32 scalar, the next row to write, in [0, rows).
    size: int32 scalar, rows filled so far, in [0, rows].
    """

    data: Transition
    ptr: jax.Array
    size: jax.Array

    @property
    def rows(self) -> int:
        return self.data.reward.shape[0]

    @property
    def num_envs(self) -> int:
        return self.data.reward.shape[1]


class ObsCodec(NamedTuple):
    """How `obs` and `next_obs` are kept: `dtype` in the buffer, `encode` [..., obs_size] float32 -> dtype on
    insert, `decode` dtype -> float32 on every sample. It must round-trip the env's observations exactly."""

    dtype: Any
    encode: Callable[[jax.Array], jax.Array]
    decode: Callable[[jax.Array], jax.Array]


class Replay(NamedTuple):
    """Pure functions of one replay buffer, bound to its sizes by `make_replay`.

    init() -> ReplayState
    insert(state, transition [num_envs, ...]) -> ReplayState
    sample(key, state, batch_size) -> Transition [batch_size, ...]
    sample_sequences(key, state, batch_size, seq_len)
        -> (Transition [batch_size, seq_len, ...], mask [batch_size, seq_len])
    sequence_starts(key, state, batch_size, seq_len) -> (rows [batch_size], envs [batch_size])
    """

    init: Callable[[], ReplayState]
    insert: Callable[[ReplayState, Transition], ReplayState]
    sample: Callable[[PRNGKey, ReplayState, int], Transition]
    sample_sequences: Callable[[PRNGKey, ReplayState, int, int], Tuple[Transition, jax.Array]]
    sequence_starts: Callable[[PRNGKey, ReplayState, int, int], Tuple[jax.Array, jax.Array]]


def init_replay(rows: int, num_envs: int, obs_size: int, action_size: int, extras_spec: Optional[Dict[str, Any]] = None,
                obs_dtype: Any = jnp.float32) -> ReplayState:
    """An empty buffer: all-zero arrays [rows, num_envs, ...], ptr = size = 0.

    extras_spec: {name: jax.ShapeDtypeStruct of one env's value} of the extras the
    acting agent stores with every transition (Transition.extras); None or {} for none.
    obs_dtype: the dtype of obs and next_obs (an `ObsCodec`'s; float32 without one).
    """

    def zeros(*shape, dtype=jnp.float32):
        return jnp.zeros((rows, num_envs, *shape), dtype)

    data = Transition(
        obs=zeros(obs_size, dtype=obs_dtype),
        action=zeros(action_size),
        reward=zeros(),
        next_obs=zeros(obs_size, dtype=obs_dtype),
        terminated=zeros(),
        truncated=zeros(),
        valid=zeros(),
        extras={name: zeros(*spec.shape, dtype=spec.dtype) for name, spec in (extras_spec or {}).items()},
    )
    return ReplayState(data=data, ptr=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def insert(state: ReplayState, transition: Transition) -> ReplayState:
    """Writes one step of all envs (fields [num_envs, ...]) at row `ptr`.

    Values are cast to the buffer's dtype (so bool `terminated` is fine).
    `ptr` advances modulo `rows`; `size` grows until it reaches `rows`, after
    which each insert overwrites the oldest row. Shapes are checked at trace
    time and a mismatch raises ValueError naming the field.
    """
    rows = state.rows
    if transition.valid is None:
        transition = transition._replace(valid=jnp.ones_like(state.data.valid[0]))
    if transition.extras is None:
        transition = transition._replace(extras={})
    if set(transition.extras) != set(state.data.extras):
        raise ValueError(
            f"replay insert: transition.extras has keys {sorted(transition.extras)}, the buffer stores {sorted(state.data.extras)}"
        )
    for (path, buf), x in zip(jax.tree_util.tree_flatten_with_path(state.data)[0], jax.tree.leaves(Transition(*transition))):
        if tuple(jnp.shape(x)) != tuple(buf.shape[1:]):
            raise ValueError(
                f"replay insert: transition{jax.tree_util.keystr(path)} has shape {tuple(jnp.shape(x))}, "
                f"expected {tuple(buf.shape[1:])} (num_envs leading)"
            )
    data = jax.tree.map(
        lambda buf, x: jax.lax.dynamic_update_index_in_dim(buf, jnp.asarray(x, buf.dtype), state.ptr, 0),
        state.data,
        Transition(*transition),
    )
    return ReplayState(
        data=data,
        ptr=((state.ptr + 1) % rows).astype(jnp.int32),
        size=jnp.minimum(state.size + 1, rows).astype(jnp.int32),
    )


def _rows_and_envs(key: PRNGKey, num_rows: jax.Array, num_envs: int, batch_size: int):
    """Uniform (row offset in [0, num_rows), env in [0, num_envs)) pairs, [batch_size] each.

    One randint over the flat index (int32: fine up to 2**31 transitions)
    rather than one per axis, which halves the compiled random-number code.
    """
    flat = jax.random.randint(key, (batch_size,), 0, num_rows * num_envs, dtype=jnp.int32)
    return flat // num_envs, flat % num_envs


def sample(key: PRNGKey, state: ReplayState, batch_size: int) -> Transition:
    """Uniform sample with replacement over all stored (row, env) transitions.

    Returns Transition with fields [batch_size, ...]. The filled rows are
    [0, size) whether or not the ring has wrapped, so (row, env) is drawn
    uniformly from [0, size) x [0, num_envs): every one of the size * num_envs
    stored transitions has probability 1 / (size * num_envs). Requires
    size >= 1; on an empty buffer it returns zeros.
    """
    rows, envs = _rows_and_envs(key, jnp.maximum(state.size, 1), state.num_envs, batch_size)
    return jax.tree.map(lambda buf: buf[rows, envs], state.data)


def _check_seq_len(state: ReplayState, seq_len: int) -> None:
    if not 1 <= seq_len <= state.rows:
        raise ValueError(f"replay: seq_len={seq_len} must be in [1, rows={state.rows}] (rows = capacity // num_envs)")


def sequence_starts(
    key: PRNGKey, state: ReplayState, batch_size: int, seq_len: int
) -> Tuple[jax.Array, jax.Array]:
    """Start rows and envs of `batch_size` windows of `seq_len` consecutive rows.

    Starts are uniform over the `size - seq_len + 1` positions whose whole
    window lies in stored, time-contiguous data: counted from the oldest row
    `(ptr - size) % rows` (row 0 before the ring is full, `ptr` after), so no
    window crosses the write pointer and mixes newest with oldest data. Envs
    are uniform over [0, num_envs). Requires size >= seq_len (the caller
    guarantees it); otherwise every start is the oldest row and
    `sample_sequences` masks the steps beyond `size`.

    Returns (rows [batch_size] int32 in [0, rows), envs [batch_size] int32).
    """
    _check_seq_len(state, seq_len)
    rows = state.rows
    oldest = (state.ptr - state.size) % rows
    num_starts = jnp.maximum(state.size - seq_len + 1, 1)
    offsets, envs = _rows_and_envs(key, num_starts, state.num_envs, batch_size)
    return ((oldest + offsets) % rows).astype(jnp.int32), envs.astype(jnp.int32)


def sequence_mask(done: jax.Array) -> jax.Array:
    """mask[..., t] = 1 iff no step s < t of the window has done[..., s] = 1.

    done: [..., T] 0/1. The step that ends an episode keeps mask 1 (its
    transition is valid: next_obs is the true final observation); every later
    step belongs to another episode and gets 0. Returns float32 [..., T].
    """
    done = (done > 0.5).astype(jnp.int32)
    dones_before = jnp.cumsum(done, axis=-1) - done
    return (dones_before == 0).astype(jnp.float32)


def gather_sequences(
    state: ReplayState, starts: jax.Array, envs: jax.Array, seq_len: int
) -> Tuple[Transition, jax.Array]:
    """Windows rows starts[b] .. starts[b] + seq_len - 1 (mod rows) of env envs[b].

    starts, envs: [B] int. Returns (Transition [B, seq_len, ...], mask [B, seq_len]
    float32): `sequence_mask` of done = max(terminated, truncated), also zero
    for window steps t >= size (which hold no stored data yet) and for invalid
    transitions (`valid` = 0: a non-finite next observation) and every step after them.
    """
    t = jnp.arange(seq_len, dtype=jnp.int32)
    row_idx = (starts[:, None] + t[None, :]) % state.rows  # [B, T]
    env_idx = jnp.broadcast_to(envs[:, None], row_idx.shape)  # [B, T]
    batch = jax.tree.map(lambda buf: buf[row_idx, env_idx], state.data)
    # An invalid step (NaN physics) ends the usable part of its window: it and every later step get 0.
    done = jnp.maximum(jnp.maximum(batch.terminated, batch.truncated), 1.0 - batch.valid)
    mask = sequence_mask(done) * (t[None, :] < state.size).astype(jnp.float32) * batch.valid
    return batch, mask


def sample_sequences(
    key: PRNGKey, state: ReplayState, batch_size: int, seq_len: int
) -> Tuple[Transition, jax.Array]:
    """Windows of `seq_len` consecutive steps of one env, with episode masks.

    Starts come from `sequence_starts(key, ...)` (same key, so the two agree);
    see there for which windows are allowed and `sequence_mask` for the mask.
    Requires size >= seq_len. Returns (Transition [batch_size, seq_len, ...],
    mask [batch_size, seq_len] float32).
    """
    starts, envs = sequence_starts(key, state, batch_size, seq_len)
    return gather_sequences(state, starts, envs, seq_len)


def make_replay(capacity: int, num_envs: int, obs_size: int, action_size: int, extras_spec: Optional[Dict[str, Any]] = None,
                obs_codec: Optional[ObsCodec] = None) -> Replay:
    """Binds the buffer functions to their sizes.

    capacity: transitions over all envs; `rows = capacity // num_envs` steps of
    each env are kept (the remainder is dropped). Device memory is
    `rows * num_envs * (2 * obs_size + action_size + 4 + E)` float32 numbers (E: the extras),
    the 2 * obs_size in the codec's dtype with `obs_codec` (insert encodes, every sample decodes).
    """
    if num_envs < 1 or obs_size < 1 or action_size < 1:
        raise ValueError(
            f"replay: num_envs={num_envs}, obs_size={obs_size}, action_size={action_size} must be positive"
        )
    rows = capacity // num_envs
    if rows < 1:
        raise ValueError(f"replay: capacity={capacity} must hold at least one step of all {num_envs} envs")
    if rows * num_envs >= 2**31:
        raise ValueError(f"replay: capacity={capacity} exceeds the int32 index range (2**31 transitions)")

    if obs_codec is None:  # float32 as given: insert casts, sampling returns the stored numbers
        obs_codec = ObsCodec(jnp.float32, lambda obs: obs, lambda obs: obs)

    def coded(t: Transition, f: Callable[[jax.Array], jax.Array]) -> Transition:
        return t._replace(obs=f(t.obs), next_obs=f(t.next_obs))

    def sample_decoded_sequences(key, state, batch_size, seq_len):
        batch, mask = sample_sequences(key, state, batch_size, seq_len)
        return coded(batch, obs_codec.decode), mask

    return Replay(
        init=lambda: init_replay(rows, num_envs, obs_size, action_size, extras_spec, obs_codec.dtype),
        insert=lambda state, transition: insert(state, coded(transition, obs_codec.encode)),
        sample=lambda key, state, batch_size: coded(sample(key, state, batch_size), obs_codec.decode),
        sample_sequences=sample_decoded_sequences,
        sequence_starts=sequence_starts,
    )
