"""Replay buffer: ring order, uniform sampling, sequence windows and masks, jit/pytree.

Most tests share one geometry (ENVS x ROWS, windows of T, fixed batch sizes)
so the jitted functions below compile once for the whole file.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmbrl.replay import (
    ReplayState,
    insert,
    make_replay,
    sample,
    sample_sequences,
    sequence_mask,
    sequence_starts,
)
from mjxmbrl.types import Transition

OBS, ACT = 3, 2
ENVS, ROWS, T = 3, 7, 4
B_UNIFORM, B_SEQ = 42_000, 4_096
REPLAY = make_replay(ROWS * ENVS + 2, ENVS, OBS, ACT)  # the remainder 2 is dropped: rows = 7

# Jitted once here: eager calls would compile every primitive separately, which dominates test time.
jit_insert = jax.jit(insert)
jit_sample = jax.jit(sample, static_argnums=2)
jit_sample_sequences = jax.jit(sample_sequences, static_argnums=(2, 3))
jit_sequence_starts = jax.jit(sequence_starts, static_argnums=(2, 3))


def step_transition(k, num_envs=ENVS, terminated=None, truncated=None):
    """Step k of all envs; obs[..., 0] = k (insertion counter), obs[..., 1] = env, obs[..., 2] = unique id."""
    env = np.arange(num_envs, dtype=np.float32)
    obs = np.stack([np.full(num_envs, k, np.float32), env, k * num_envs + env], axis=-1)
    zeros = np.zeros(num_envs, np.float32)
    return Transition(
        obs=jnp.asarray(obs),
        action=jnp.asarray(np.stack([np.full(num_envs, -k, np.float32), env], axis=-1)),
        reward=jnp.asarray(k * num_envs + env),
        next_obs=jnp.asarray(obs + 0.5),
        terminated=jnp.asarray(zeros if terminated is None else terminated),
        truncated=jnp.asarray(zeros if truncated is None else truncated),
    )


def filled(num_steps, dones=None, replay=REPLAY, num_envs=ENVS):
    """Inserts steps 0 .. num_steps-1; dones[k] = (terminated [E], truncated [E]) if given."""
    state = replay.init()
    for k in range(num_steps):
        term, trunc = (None, None) if dones is None else dones[k]
        state = jit_insert(state, step_transition(k, num_envs, term, trunc))
    return state


def test_init_shapes_and_dtypes():
    state = REPLAY.init()
    assert state.data.obs.shape == state.data.next_obs.shape == (ROWS, ENVS, OBS)
    assert state.data.action.shape == (ROWS, ENVS, ACT)
    for field in (state.data.reward, state.data.terminated, state.data.truncated):
        assert field.shape == (ROWS, ENVS)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.data))
    assert state.data.valid.shape == (ROWS, ENVS) and state.data.extras == {}
    assert state.ptr.dtype == jnp.int32 and state.size.dtype == jnp.int32
    assert int(state.ptr) == 0 and int(state.size) == 0


def test_insert_before_full():
    state = filled(3)
    assert int(state.ptr) == 3 and int(state.size) == 3
    np.testing.assert_array_equal(np.asarray(state.data.obs[:3, :, 0]), np.repeat(np.arange(3.0)[:, None], ENVS, 1))
    np.testing.assert_array_equal(np.asarray(state.data.obs[3:]), 0.0)


def test_insert_wraps_around_keeping_newest_rows_in_ring_order():
    n = 17
    state = filled(n)
    assert int(state.ptr) == n % ROWS == 3
    assert int(state.size) == ROWS
    # Row r holds the newest step k with k % 7 == r: steps 10..16 -> rows [14, 15, 16, 10, 11, 12, 13].
    expected_k = np.array([14, 15, 16, 10, 11, 12, 13], np.float32)
    env = np.arange(ENVS, dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(state.data.obs[:, :, 0]), np.repeat(expected_k[:, None], ENVS, 1))
    np.testing.assert_array_equal(np.asarray(state.data.obs[:, :, 1]), np.repeat(env[None], ROWS, 0))
    np.testing.assert_array_equal(np.asarray(state.data.reward), expected_k[:, None] * ENVS + env)
    np.testing.assert_array_equal(np.asarray(state.data.action[..., 0]), -np.repeat(expected_k[:, None], ENVS, 1))
    np.testing.assert_array_equal(np.asarray(state.data.next_obs), np.asarray(state.data.obs) + 0.5)
    # Reading from ptr onwards gives oldest -> newest.
    order = (int(state.ptr) + np.arange(ROWS)) % ROWS
    np.testing.assert_array_equal(np.asarray(state.data.obs[order, 0, 0]), np.arange(10, 17))


def test_insert_casts_bool_flags_and_rejects_bad_sizes():
    tr = step_transition(0)._replace(terminated=jnp.array([True, False, True]))
    state = jit_insert(REPLAY.init(), tr)
    assert state.data.terminated.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(state.data.terminated[0]), [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="transition.obs"):
        REPLAY.insert(REPLAY.init(), step_transition(0, num_envs=ENVS + 1))
    with pytest.raises(ValueError, match="capacity"):
        make_replay(3, 4, OBS, ACT)
    with pytest.raises(ValueError, match="seq_len"):
        REPLAY.sample_sequences(jax.random.PRNGKey(0), state, 2, ROWS + 1)


def stored_ids(state):
    """Unique id (k * ENVS + env) of every stored transition."""
    return set(np.asarray(state.data.obs[: int(state.size), :, 2]).ravel().tolist())


def test_uniform_sample_members_and_frequencies():
    state = filled(24)  # wrapped: steps 17..23 stored
    ids = stored_ids(state)
    assert ids == set(range(17 * ENVS, 24 * ENVS))

    batch = jit_sample(jax.random.PRNGKey(0), state, B_UNIFORM)
    assert batch.obs.shape == (B_UNIFORM, OBS) and batch.action.shape == (B_UNIFORM, ACT)
    assert batch.reward.shape == batch.terminated.shape == (B_UNIFORM,)
    got = np.asarray(batch.obs[:, 2])
    assert set(got.tolist()) <= ids
    # All fields of one sample come from the same stored transition.
    np.testing.assert_array_equal(np.asarray(batch.reward), got)
    np.testing.assert_array_equal(np.asarray(batch.action[:, 0]), -np.asarray(batch.obs[:, 0]))
    np.testing.assert_array_equal(np.asarray(batch.next_obs), np.asarray(batch.obs) + 0.5)

    counts = np.array([np.sum(got == i) for i in sorted(ids)])
    expected = B_UNIFORM / len(ids)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    # 20 degrees of freedom: P(chi2 > 55) ~ 4e-5; a biased or partial sampler gives hundreds.
    assert chi2 < 55.0, (chi2, counts)


def test_uniform_sample_before_full_only_reads_filled_rows():
    state = filled(3)
    batch = jit_sample(jax.random.PRNGKey(1), state, B_UNIFORM)
    got = np.asarray(batch.obs[:, 2])
    assert set(got.tolist()) == stored_ids(state) == set(range(3 * ENVS))
    # Unwritten rows are all zero; stored id 0 has obs 0 but next_obs 0.5.
    assert np.all(np.asarray(batch.next_obs) != 0.0)


ARRAY_FIELDS = tuple(f for f in Transition._fields if f != "extras")  # extras: a dict, empty here


def python_windows(state, starts, envs, seq_len):
    """Reference: windows and masks built step by step with plain Python loops."""
    data = jax.tree.map(np.asarray, state.data)
    rows, size = data.reward.shape[0], int(state.size)
    out = {f: [] for f in ARRAY_FIELDS}
    masks = []
    for start, env in zip(np.asarray(starts).tolist(), np.asarray(envs).tolist()):
        fields = {f: [] for f in ARRAY_FIELDS}
        mask, ended = [], False
        for t in range(seq_len):
            row = (start + t) % rows
            for f in ARRAY_FIELDS:
                fields[f].append(getattr(data, f)[row, env])
            ended = ended or data.valid[row, env] == 0.0  # an invalid step is masked with all after it
            mask.append(0.0 if (ended or t >= size) else 1.0)
            if max(data.terminated[row, env], data.truncated[row, env]) == 1.0:
                ended = True
        for f in ARRAY_FIELDS:
            out[f].append(np.stack(fields[f]))
        masks.append(mask)
    return Transition(**{f: np.stack(v) for f, v in out.items()}, extras={}), np.array(masks, np.float32)


def random_dones(seed, num_steps, p=0.15):
    rng = np.random.default_rng(seed)
    term = (rng.random((num_steps, ENVS)) < p).astype(np.float32)
    trunc = (rng.random((num_steps, ENVS)) < p).astype(np.float32)
    return list(zip(term, trunc))


@pytest.mark.parametrize("num_steps", [6, 23])  # not full / wrapped
def test_sample_sequences_matches_python_loop(num_steps):
    state = filled(num_steps, random_dones(num_steps, num_steps))
    key = jax.random.PRNGKey(3)
    starts, envs = jit_sequence_starts(key, state, B_SEQ, T)
    assert starts.shape == envs.shape == (B_SEQ,)
    assert starts.dtype == envs.dtype == jnp.int32
    batch, mask = jit_sample_sequences(key, state, B_SEQ, T)
    assert batch.obs.shape == (B_SEQ, T, OBS) and batch.action.shape == (B_SEQ, T, ACT)
    assert batch.reward.shape == mask.shape == (B_SEQ, T) and mask.dtype == jnp.float32
    ref_batch, ref_mask = python_windows(state, starts, envs, T)
    for f in ARRAY_FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(batch, f)), getattr(ref_batch, f), err_msg=f)
    np.testing.assert_array_equal(np.asarray(mask), ref_mask)
    assert 0.0 < np.asarray(mask).mean() < 1.0  # the dones really cut some windows


@pytest.mark.parametrize("num_steps", [T, ROWS, 10, 31])  # size == T, exactly full, wrapped, wrapped many times
def test_windows_never_cross_the_write_pointer(num_steps):
    state = filled(num_steps)
    batch, mask = jit_sample_sequences(jax.random.PRNGKey(4), state, B_SEQ, T)
    k = np.asarray(batch.obs[..., 0])  # insertion counter [B, T]
    np.testing.assert_array_equal(k, k[:, :1] + np.arange(T))
    np.testing.assert_array_equal(np.asarray(batch.obs[..., 1]), np.asarray(batch.obs[:, :1, 1]).repeat(T, 1))
    np.testing.assert_array_equal(np.asarray(mask), 1.0)
    oldest = max(0, num_steps - ROWS)
    assert k.min() >= oldest and k.max() <= num_steps - 1
    # Every allowed (start, env) is drawn, nothing else, with roughly equal frequency.
    pairs = k[:, 0].astype(int) * ENVS + np.asarray(batch.obs[:, 0, 1]).astype(int)
    allowed = [s * ENVS + e for s in range(oldest, num_steps - T + 1) for e in range(ENVS)]
    assert set(pairs.tolist()) == set(allowed)
    counts = np.array([np.sum(pairs == a) for a in allowed])
    expected = B_SEQ / len(allowed)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 40.0, (chi2, counts)  # at most 11 dof: P(chi2 > 40) ~ 3e-5


def test_sequence_starts_rows_after_wrap():
    state = filled(16)  # ptr = 2: the oldest row is 2, allowed start rows are 2, 3, 4, 5 (not 6, 0, 1)
    starts, envs = jit_sequence_starts(jax.random.PRNGKey(5), state, B_SEQ, T)
    assert set(np.asarray(starts).tolist()) == {2, 3, 4, 5}
    assert set(np.asarray(envs).tolist()) == set(range(ENVS))


def test_sequence_mask_exact():
    done = jnp.array(
        [
            [0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0],  # ends at t=0: only t=0 valid
            [0, 0, 1, 0, 1],  # ends at t=2
            [0, 0, 0, 0, 1],  # last step ends: all valid
            [0, 1, 1, 0, 0],  # two episode ends in a row
        ],
        jnp.float32,
    )
    expected = np.array(
        [
            [1, 1, 1, 1, 1],
            [1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1],
            [1, 1, 0, 0, 0],
        ],
        np.float32,
    )
    np.testing.assert_array_equal(np.asarray(sequence_mask(done)), expected)


def test_sample_sequences_masks_known_episode_ends():
    # size == T: the only start is row 0, so each env's window and mask are known.
    term = np.zeros((T, ENVS), np.float32)
    trunc = np.zeros((T, ENVS), np.float32)
    term[1, 0] = 1.0  # env 0: terminal at t=1
    trunc[2, 1] = 1.0  # env 1: time limit at t=2 ...
    term[3, 1] = 1.0  # ... and a terminal at t=3 in its next episode
    term[3, 2] = trunc[3, 2] = 1.0  # env 2: ends on the window's last step
    state = filled(T, list(zip(term, trunc)))
    batch, mask = jit_sample_sequences(jax.random.PRNGKey(6), state, B_SEQ, T)
    expected = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    env = np.asarray(batch.obs[:, 0, 1]).astype(int)
    assert set(env.tolist()) == set(range(ENVS))
    np.testing.assert_array_equal(np.asarray(mask), expected[env])
    np.testing.assert_array_equal(np.asarray(batch.obs[..., 0]), np.tile(np.arange(T), (B_SEQ, 1)))


def test_sequence_mask_zero_beyond_stored_size():
    state = filled(2)  # size < T: outside the contract, but the unwritten rows are still masked
    batch, mask = jit_sample_sequences(jax.random.PRNGKey(7), state, B_SEQ, T)
    np.testing.assert_array_equal(np.asarray(mask), np.tile([1.0, 1.0, 0.0, 0.0], (B_SEQ, 1)))
    np.testing.assert_array_equal(np.asarray(batch.obs[:, :2, 0]), np.tile([0.0, 1.0], (B_SEQ, 1)))


def test_state_is_pytree_and_works_under_jit_with_donation():
    batch_size = 8
    state = REPLAY.init()
    assert len(jax.tree.leaves(state)) == len(ARRAY_FIELDS) + 2  # the array fields, ptr and size (no extras)
    doubled = jax.tree.map(lambda x: x * 2, state)
    assert isinstance(doubled, ReplayState) and isinstance(doubled.data, Transition)

    traces = []

    @functools.partial(jax.jit, donate_argnums=0)
    def collect_and_sample(state, key, k0):
        traces.append(1)

        def body(state, k):
            env = jnp.arange(ENVS, dtype=jnp.float32)
            obs = jnp.stack([jnp.full((ENVS,), k), env, k * ENVS + env], -1)
            tr = Transition(
                obs=obs,
                action=jnp.stack([-jnp.full((ENVS,), k), env], -1),
                reward=k * ENVS + env,
                next_obs=obs + 0.5,
                terminated=jnp.zeros(ENVS),
                truncated=jnp.zeros(ENVS),
            )
            return REPLAY.insert(state, tr), None

        state, _ = jax.lax.scan(body, state, k0 + jnp.arange(5, dtype=jnp.float32))
        uniform_key, seq_key = jax.random.split(key)
        batch = REPLAY.sample(uniform_key, state, batch_size)
        seqs, mask = REPLAY.sample_sequences(seq_key, state, batch_size, T)
        return state, batch, seqs, mask

    key = jax.random.PRNGKey(8)
    state, _, _, _ = collect_and_sample(state, key, jnp.float32(0))
    state, batch, seqs, mask = collect_and_sample(state, key, jnp.float32(5))
    assert len(traces) == 1  # the second call reuses the compiled function
    assert int(state.ptr) == 10 % ROWS and int(state.size) == ROWS

    ref = filled(10)
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert batch.obs.shape == (batch_size, OBS)
    assert seqs.obs.shape == (batch_size, T, OBS) and mask.shape == (batch_size, T)
    assert np.all(np.asarray(batch.obs[:, 0]) >= 3)  # steps 3..9 are stored
    k = np.asarray(seqs.obs[..., 0])
    np.testing.assert_array_equal(k, k[:, :1] + np.arange(T))
    assert k.min() >= 3 and k.max() <= 9
    np.testing.assert_array_equal(np.asarray(mask), 1.0)


def test_extras_and_invalid_steps_are_stored_and_masked():
    """Extras travel with their transition; an invalid step (NaN physics) is masked with the rest of its window."""
    replay = make_replay(ROWS * ENVS, ENVS, OBS, ACT, {"planned": jax.ShapeDtypeStruct((), jnp.float32),
                                                       "log_prob": jax.ShapeDtypeStruct((2,), jnp.float32)})
    state = replay.init()
    for k in range(ROWS):
        valid = np.ones(ENVS, np.float32)
        if k == 2:
            valid[1] = 0.0
        tr = step_transition(k)._replace(
            valid=jnp.asarray(valid),
            extras={"planned": jnp.full((ENVS,), k % 2, jnp.float32), "log_prob": jnp.full((ENVS, 2), -k, jnp.float32)},
        )
        state = jit_insert(state, tr)
    batch, mask = jit_sample_sequences(jax.random.PRNGKey(0), state, 64, 4)
    k = np.asarray(batch.obs[..., 0])
    np.testing.assert_array_equal(np.asarray(batch.extras["planned"]), k % 2)
    np.testing.assert_array_equal(np.asarray(batch.extras["log_prob"]), -np.repeat(k[..., None], 2, -1))
    env1 = np.asarray(batch.obs[:, 0, 1]) == 1
    hits_invalid = env1 & (k[:, 0] <= 2) & (k[:, -1] >= 2)
    assert hits_invalid.any()
    for b in np.nonzero(hits_invalid)[0]:
        np.testing.assert_array_equal(np.asarray(mask[b]), (k[b] < 2).astype(np.float32))
    with pytest.raises(ValueError, match="extras"):
        insert(state, step_transition(0))
