"""Checkpoint round trips (bit-identical), retention, mismatch and corruption errors,
atomicity under a crash mid-save, MJX state, and policy export."""

import re
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from mjxmbrl.run.checkpoints import (
    Checkpointer,
    CheckpointError,
    export_policy,
    load_policy,
)
from mjxmbrl.run.disk import DiskFull
from mjxmbrl.types import MjxmbrlError


class Pair(NamedTuple):
    x: jax.Array
    y: jax.Array


@struct.dataclass
class Inner:
    pair: Pair
    table: dict


@struct.dataclass
class State:
    inner: Inner
    raw_key: jax.Array  # uint32[2], jax.random.PRNGKey
    typed_key: jax.Array  # key<fry>[3], jax.random.key
    step: jax.Array
    empty: jax.Array
    scale: jax.Array  # weakly typed scalar


def make_state(seed: int = 0) -> State:
    k = jax.random.PRNGKey(seed)
    k1, k2 = jax.random.split(k)
    floats = jax.random.normal(k1, (4, 5), jnp.float32)
    # A NaN with a payload and -0.0: only a bitwise comparison sees them survive.
    floats = floats.at[0, 0].set(jax.lax.bitcast_convert_type(jnp.uint32(0x7FC0_1234), jnp.float32)).at[0, 1].set(-0.0)
    return State(
        inner=Inner(
            pair=Pair(x=floats, y=jnp.arange(7, dtype=jnp.int32) - 3),
            table={
                "u": jax.random.bits(k2, (3, 2), jnp.uint32),
                "nested": {"b": jnp.array([True, False]), "h": jnp.arange(4, dtype=jnp.bfloat16) / 3},
            },
        ),
        raw_key=jax.random.PRNGKey(seed + 11),
        typed_key=jax.random.split(jax.random.key(seed + 7), 3),
        step=jnp.asarray(seed * 100, jnp.int32),
        empty=jnp.zeros((0, 3), jnp.float32),
        scale=jnp.asarray(0.5),
    )


def host_bits(tree):
    """Leaves as (dtype, shape, raw bytes), key arrays by their key data."""

    def bits(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return ("key", str(leaf.dtype), leaf.shape, np.asarray(jax.random.key_data(leaf)).tobytes())
        arr = np.asarray(leaf)
        return (str(arr.dtype), arr.shape, arr.tobytes())

    return [bits(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def assert_bit_identical(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    assert host_bits(a) == host_bits(b)


def test_round_trip_is_bit_identical(tmp_path):
    state = make_state(3)
    ckpt = Checkpointer(tmp_path / "ckpt", keep=3)
    meta = {"config": {"env": {"name": "toy"}, "sizes": (256, 256)}, "env_steps": np.int64(300), "wall": 1.5}
    ckpt.save(300, state, meta)
    assert ckpt.all_steps() == [300] and ckpt.latest_step() == 300

    restored, got_meta = Checkpointer(tmp_path / "ckpt", keep=3).restore(make_state(0))
    assert_bit_identical(restored, state)
    assert got_meta == {"config": {"env": {"name": "toy"}, "sizes": [256, 256]}, "env_steps": 300, "wall": 1.5}
    assert isinstance(restored.inner.pair.x, jax.Array)
    assert restored.scale.weak_type and not restored.step.weak_type
    assert ckpt.read_metadata()["env_steps"] == 300


def test_restore_into_eval_shape(tmp_path):
    state = make_state(1)
    ckpt = Checkpointer(tmp_path, keep=1)
    ckpt.save(5, state, {})
    like = jax.eval_shape(lambda: make_state(0))
    restored, _ = ckpt.restore(like)
    assert_bit_identical(restored, state)
    assert jax.dtypes.issubdtype(restored.typed_key.dtype, jax.dtypes.prng_key)


def test_numpy_and_python_leaves(tmp_path):
    state = {"np": np.arange(6, dtype=np.float64).reshape(2, 3), "py": 3, "f": np.float32(2.5)}
    ckpt = Checkpointer(tmp_path, keep=1)
    ckpt.save(0, state, {})
    restored, _ = ckpt.restore({"np": np.zeros((2, 3)), "py": 0, "f": np.float32(0)})
    assert isinstance(restored["np"], np.ndarray) and np.array_equal(restored["np"], state["np"])
    assert restored["py"] == 3 and type(restored["py"]) is int
    assert restored["f"] == np.float32(2.5)


def test_keep_only_newest(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2)
    for step in (10, 20, 30, 40):
        ckpt.save(step, make_state(step), {"env_steps": step})
    assert ckpt.all_steps() == [30, 40]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["30", "40"]
    restored, meta = ckpt.restore(make_state(0), step=30)
    assert_bit_identical(restored, make_state(30))
    assert meta["env_steps"] == 30
    with pytest.raises(CheckpointError, match=r"no checkpoint for step 10 .*available: \[30, 40\]"):
        ckpt.restore(make_state(0), step=10)


def test_saving_an_earlier_step_replaces_the_abandoned_future(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2)
    for step in (10, 20, 30):
        ckpt.save(step, make_state(step), {})
    ckpt.save(25, make_state(25), {})  # resumed from 20, then saved 25
    assert ckpt.all_steps() == [20, 25]
    assert_bit_identical(ckpt.restore(make_state(0))[0], make_state(25))


def test_mismatch_names_the_path(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=1)
    ckpt.save(1, make_state(1), {})
    good = make_state(0)
    wrong_shape = good.replace(inner=good.inner.replace(pair=Pair(x=jnp.zeros((4, 6)), y=good.inner.pair.y)))
    with pytest.raises(CheckpointError, match=r"\.inner\.pair\.x is float32\[4,5\] in the checkpoint but float32\[4,6\]"):
        ckpt.restore(wrong_shape)
    wrong_dtype = good.replace(step=jnp.zeros((), jnp.float32))
    with pytest.raises(CheckpointError, match=r"\.step is int32\[\] .* float32\[\]"):
        ckpt.restore(wrong_dtype)
    missing = good.replace(inner=good.inner.replace(table={**good.inner.table, "extra": jnp.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"has no leaf \.inner\.table\['extra'\]"):
        ckpt.restore(missing)
    fewer = good.replace(inner=good.inner.replace(table={"u": good.inner.table["u"]}))
    with pytest.raises(CheckpointError, match=r"has leaf \.inner\.table\['nested'\]\['b'\] that the state to restore into lacks"):
        ckpt.restore(fewer)


def test_missing_and_empty_directory(tmp_path):
    missing = Checkpointer(tmp_path / "nope", keep=1)
    assert missing.latest_step() is None and missing.all_steps() == []
    with pytest.raises(CheckpointError, match=r"nope does not exist"):
        missing.restore(make_state(0))
    assert not (tmp_path / "nope").exists()  # reading never creates anything

    (tmp_path / "empty").mkdir()
    empty = Checkpointer(tmp_path / "empty", keep=1)
    assert empty.latest_step() is None
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*empty"):
        empty.restore(make_state(0))
    with pytest.raises(CheckpointError):
        empty.read_metadata()
    assert issubclass(CheckpointError, MjxmbrlError)


def _data_files(step_dir: Path):
    return sorted((p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_index", "delete_arrays", "garbage_step"])
def test_corrupt_checkpoint_raises_one_line_error(tmp_path, damage):
    state = make_state(2)
    ckpt = Checkpointer(tmp_path, keep=3)
    ckpt.save(1, make_state(1), {})
    ckpt.save(2, state, {})
    step_dir = tmp_path / "2"
    if damage == "truncate":
        for f in _data_files(step_dir):
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "flip":
        # Every data file: OCDBT leaves superseded b-tree nodes of the same size
        # beside the live ones, and flipping only one of those is harmless.
        for f in _data_files(step_dir):
            data = bytearray(f.read_bytes())
            data[len(data) // 2] ^= 0x10
            f.write_bytes(bytes(data))
    elif damage == "delete_index":
        (step_dir / "index" / "metadata").unlink()
    elif damage == "delete_arrays":
        import shutil

        shutil.rmtree(step_dir / "arrays")
    elif damage == "garbage_step":
        import shutil

        shutil.rmtree(step_dir)
        step_dir.mkdir()
        (step_dir / "garbage").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError) as info:
        ckpt.restore(make_state(0))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "step 2" in message
    assert "other steps: [1]" in message
    assert_bit_identical(ckpt.restore(make_state(0), step=1)[0], make_state(1))


def test_silent_bit_rot_is_caught_by_the_checksum(tmp_path):
    # Incompressible data is stored raw, so a flipped bit decodes fine; only the crc32 sees it.
    state = {"w": jax.random.normal(jax.random.PRNGKey(0), (256, 256))}
    ckpt = Checkpointer(tmp_path, keep=1)
    ckpt.save(1, state, {})
    f = _data_files(tmp_path / "1")[-1]
    assert f.stat().st_size > 200_000
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"checksum mismatch in leaf \['w'\]"):
        ckpt.restore(state)


@pytest.mark.parametrize("failure", ["disk_full_before_commit", "ctrl_c_at_start"])
def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch, failure):
    import orbax.checkpoint as ocp

    ckpt = Checkpointer(tmp_path, keep=3)
    ckpt.save(100, make_state(1), {"env_steps": 100})

    if failure == "disk_full_before_commit":
        # Every array is fully written, then the save dies before the step is committed.
        original = ocp.handlers.PyTreeCheckpointHandler.async_save

        async def write_then_fail(self, *args, **kwargs):
            futures = await original(self, *args, **kwargs)
            for f in futures or []:
                f.result()
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(ocp.handlers.PyTreeCheckpointHandler, "async_save", write_then_fail)
        expected = DiskFull
    else:

        async def interrupted(self, *args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "async_save", interrupted)
        expected = KeyboardInterrupt
    with pytest.raises(expected) as info:
        ckpt.save(200, make_state(2), {"env_steps": 200})
    monkeypatch.undo()

    if failure == "disk_full_before_commit":
        # One line naming the step and the free space; the partial step is removed at once.
        assert re.fullmatch(
            rf"no space left on device writing checkpoint {re.escape(str(tmp_path / '200'))} \(.+ free\); "
            r"removed the partial checkpoint, kept step 100",
            str(info.value),
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == ["100"]
    else:
        # The unfinished step is on disk only as a temporary directory, never as a step.
        assert any(p.name.startswith("200") and p.name != "200" for p in tmp_path.iterdir())
    for reader in (ckpt, Checkpointer(tmp_path, keep=3)):
        assert reader.latest_step() == 100 and reader.all_steps() == [100]
        restored, meta = reader.restore(make_state(0))
        assert_bit_identical(restored, make_state(1))
        assert meta == {"env_steps": 100}

    if failure == "disk_full_before_commit":
        # A fresh writer (the restarted run) cleans up and saves normally.
        writer = Checkpointer(tmp_path, keep=3)
        writer.save(200, make_state(2), {"env_steps": 200})
        assert writer.all_steps() == [100, 200]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["100", "200"]
        assert_bit_identical(writer.restore(make_state(0))[0], make_state(2))


def test_unserialisable_metadata_is_rejected_before_writing(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=1)
    with pytest.raises(CheckpointError, match=r"metadata\.bad is not JSON-serialisable \(object\)"):
        ckpt.save(1, make_state(0), {"bad": object()})
    assert ckpt.all_steps() == []


@pytest.fixture(scope="module")
def cartpole_env():
    registry = pytest.importorskip("mujoco_playground").registry
    return registry.load("CartpoleSwingup", config_overrides={"impl": "jax"})


def _check_mjx_round_trip(tmp_path, state):
    ckpt = Checkpointer(tmp_path, keep=1)
    ckpt.save(0, state, {"env": "CartpoleSwingup"})
    restored, meta = ckpt.restore(state)
    assert_bit_identical(restored, state)
    assert type(restored.data) is type(state.data) and type(restored.data._impl) is type(state.data._impl)
    assert meta == {"env": "CartpoleSwingup"}
    restored2, _ = ckpt.restore(jax.eval_shape(lambda: state))
    assert_bit_identical(restored2, state)


def test_mjx_data_state_round_trip(tmp_path, cartpole_env):
    # The Playground State around an MJX Data (custom pytree nodes with numpy arrays
    # in their treedefs, zero-size contact arrays) without compiling reset.
    import mujoco
    from mujoco import mjx
    from mujoco_playground._src import mjx_env

    mj_data = mujoco.MjData(cartpole_env.mj_model)
    mj_data.qpos[:] = [0.1, 3.0]
    mujoco.mj_forward(cartpole_env.mj_model, mj_data)
    state = mjx_env.State(
        data=mjx.put_data(cartpole_env.mj_model, mj_data, impl="jax"),
        obs=jnp.arange(5.0),
        reward=jnp.zeros(()),
        done=jnp.zeros(()),
        metrics={"reward/upright": jnp.ones(())},
        info={"rng": jax.random.PRNGKey(3), "time_out": jnp.zeros(())},
    )
    _check_mjx_round_trip(tmp_path, state)


@pytest.mark.slow
def test_mjx_playground_reset_state_round_trip(tmp_path, cartpole_env):
    # ~10-20 s on a 2-core CPU, nearly all of it compiling reset.
    _check_mjx_round_trip(tmp_path, jax.jit(cartpole_env.reset)(jax.random.PRNGKey(0)))


def test_policy_export_round_trip(tmp_path):
    params = {"params": {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.zeros(3)}}}
    stats = Pair(x=jnp.array([1.0, 2.0]), y=jnp.asarray(7, jnp.int32))
    out = export_policy(tmp_path / "policy", params, {"obs_stats": stats}, {"env": "toy", "obs_size": np.int64(2)})
    assert (out / "policy.msgpack").is_file() and (out / "meta.json").is_file()

    got_params, extra, meta = load_policy(out)
    assert meta == {"env": "toy", "obs_size": 2}
    np.testing.assert_array_equal(got_params["params"]["dense"]["kernel"], params["params"]["dense"]["kernel"])
    np.testing.assert_array_equal(extra["obs_stats"]["x"], stats.x)  # a state dict without a template

    like = Pair(x=jnp.zeros(2), y=jnp.zeros((), jnp.int32))
    got_params, extra, _ = load_policy(out, like_params=params, like_extra={"obs_stats": like})
    assert isinstance(extra["obs_stats"], Pair)
    assert_bit_identical(extra["obs_stats"], stats)
    assert_bit_identical(got_params, params)

    with pytest.raises(CheckpointError, match=r"obs_stats.*\.x is float32\[2\], expected float32\[3\]"):
        load_policy(out, like_extra={"obs_stats": Pair(x=jnp.zeros(3), y=jnp.zeros((), jnp.int32))})
    with pytest.raises(CheckpointError, match="no exported policy"):
        load_policy(tmp_path / "missing")
    (out / "policy.msgpack").write_bytes(b"\x93garbage")
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_policy(out)
