"""Checkpoints of the whole train state (Orbax) and small policy exports.

A checkpoint holds any pytree of arrays: flax struct dataclasses, NamedTuples,
dicts, MJX `Data` (whose custom pytree nodes carry hashed numpy arrays in their
treedefs). It is stored flat, so the format never depends on how a node type
serialises itself:

    <directory>/<step>/arrays     Orbax PyTree {"a00000": ndarray, ...}, one entry per non-empty leaf
    <directory>/<step>/index      JSON: per leaf its `keystr` path, dtype, shape, crc32, storage key
    <directory>/<step>/metadata   JSON: the caller's dict (config, env_steps, wandb id, ...)

Orbax writes a step into a temporary directory and renames it into place once
every item is complete, so an exception or Ctrl-C during `save` never leaves a
step that `latest_step()`/`restore()` would pick. Restoring goes into the
structure of a `like_state` (a fresh state or its `jax.eval_shape`); paths,
shapes and dtypes are checked first, so a mismatch names the offending leaf, and
each array is checked against its crc32, so restored state is bit-identical to
what was saved or an error is raised.

Policy exports (`export_policy` / `load_policy`) are one msgpack file with the
actor parameters and extra arrays (e.g. observation statistics) plus a JSON
sidecar with the metadata, for evaluation without the training code's state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import jax
import numpy as np

from mjxmbrl.run.disk import (
    DiskFull,
    atomic_write_all,
    disk_full_as_error,
    free_space,
    is_disk_full,
)
from mjxmbrl.types import MjxmbrlError

FORMAT = "mjxmbrl-checkpoint-v1"
POLICY_FORMAT = "mjxmbrl-policy-v1"
POLICY_FILE = "policy.msgpack"
POLICY_META_FILE = "meta.json"


class CheckpointError(MjxmbrlError):
    """Missing, empty, corrupt or mismatching checkpoint; the message is one line."""


# ---------------------------------------------------------------------------
# pytree <-> flat host arrays


def _is_key_dtype(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _describe(dtype: Any, shape: Tuple[int, ...]) -> str:
    return f"{dtype}[{','.join(str(int(d)) for d in shape)}]"


def _leaf_dtype_shape(leaf: Any) -> Tuple[str, Tuple[int, ...]]:
    """(dtype string, logical shape) of an array, ShapeDtypeStruct or Python scalar."""
    if hasattr(leaf, "dtype") and hasattr(leaf, "shape"):
        dtype = leaf.dtype
        return str(dtype if _is_key_dtype(dtype) else np.dtype(dtype)), tuple(int(d) for d in leaf.shape)
    arr = np.asarray(leaf)
    return str(arr.dtype), tuple(arr.shape)


def _crc(arr: np.ndarray) -> int:
    flat = np.asarray(arr, order="C").reshape(-1)
    return zlib.crc32(flat.view(np.uint8) if flat.size else b"") & 0xFFFFFFFF


def _flatten(state: Any) -> Tuple[List[Dict[str, Any]], Dict[str, np.ndarray]]:
    """Leaves of `state` as host arrays: (index entries, {storage key: non-empty array})."""
    with_path, _ = jax.tree_util.tree_flatten_with_path(state)
    paths = [jax.tree_util.keystr(p) for p, _ in with_path]
    leaves = [leaf for _, leaf in with_path]
    key_impls: List[Optional[str]] = []
    raw = []
    for leaf in leaves:
        if hasattr(leaf, "dtype") and _is_key_dtype(leaf.dtype):
            key_impls.append(str(jax.random.key_impl(leaf)))
            raw.append(jax.random.key_data(leaf))
        else:
            key_impls.append(None)
            raw.append(leaf)
    host = jax.device_get(raw)  # one batched device -> host transfer
    index, arrays = [], {}
    for i, (path, leaf, impl, value) in enumerate(zip(paths, leaves, key_impls, host)):
        dtype, shape = _leaf_dtype_shape(leaf)
        value = np.asarray(value)
        entry = {"path": path, "dtype": dtype, "shape": list(shape), "stored_dtype": str(value.dtype),
                 "stored_shape": list(value.shape), "key_impl": impl, "crc32": _crc(value), "key": None}
        # Orbax refuses zero-size arrays (MJX Data has many); their shape and dtype say it all.
        if value.size > 0:
            entry["key"] = f"a{i:05d}"
            arrays[entry["key"]] = np.asarray(value, order="C")
        index.append(entry)
    return index, arrays


def _jsonable(value: Any, where: str) -> Any:
    """Plain JSON types from numpy/jax scalars, tuples and paths; anything else is an error."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
        return np.asarray(value).item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(f"checkpoint metadata{where} is not JSON-serialisable ({type(value).__name__})")


def _weak(x: jax.Array) -> jax.Array:
    """Marks x weakly typed, as the leaf it replaces was (keeps dtype promotion and jit caches)."""
    try:
        from jax._src.lax import lax as lax_internal

        return lax_internal._convert_element_type(x, np.dtype(x.dtype), weak_type=True)
    except Exception:  # private API moved: a strong type differs only in promotion corner cases
        return x


def _like_leaf(like: Any, value: np.ndarray, key_impl: Optional[str]) -> Any:
    """`value` (host array) as the kind of leaf `like` is: jax array (same sharding), numpy, scalar."""
    if isinstance(like, np.ndarray):
        return value
    if isinstance(like, (bool, int, float, complex)) and not isinstance(like, np.generic):
        return type(like)(value.item())
    if isinstance(like, np.generic):
        return value[()]
    sharding = getattr(like, "sharding", None)
    if isinstance(like, jax.Array) and not like.committed:
        sharding = None  # stay uncommitted, like the original
    if isinstance(getattr(sharding, "mesh", None), jax.sharding.AbstractMesh):
        sharding = None  # eval_shape under a mesh: no devices to place on, use the default
    out = jax.device_put(value, sharding) if sharding is not None else jax.device_put(value)
    if key_impl is not None:
        out = jax.random.wrap_key_data(out, impl=key_impl)
    elif getattr(like, "weak_type", False):
        out = _weak(out)
    return out


# ---------------------------------------------------------------------------
# Checkpointer


@contextlib.contextmanager
def _quiet_orbax(level: int = logging.ERROR):
    """Keeps Orbax's absl messages below `level` (e.g. warnings about a half-written
    step) off the console; our own CheckpointError carries the message."""
    logger = logging.getLogger("absl")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


_hook_installed = False


def _silence_closed_loop_callbacks() -> None:
    """After a failed Orbax read or write, tensorstore may complete callbacks on
    Orbax's already-closed event loop; Python then prints a stray 'Event loop is
    closed' traceback for each. Drop exactly those, pass everything else on."""
    global _hook_installed
    if _hook_installed:
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        if unraisable.exc_type is RuntimeError and "Event loop is closed" in str(unraisable.exc_value):
            return
        previous(unraisable)

    sys.unraisablehook = hook
    _hook_installed = True


class Checkpointer:
    """Host-side Orbax checkpoint manager for one run's train state.

    `save(step, state, metadata)` writes `directory/<step>/` synchronously and
    atomically and keeps the newest `keep` steps; `restore(like_state, step)`
    returns `(state, metadata)` bit-identical to what was saved.
    """

    def __init__(self, directory: str | Path, keep: int = 3):
        if keep < 1:
            raise CheckpointError(f"keep must be at least 1, got {keep}")
        self.directory = Path(directory)  # as given, for messages; Orbax gets the absolute path
        self.keep = int(keep)
        self._manager = None
        self._writer = False

    # -- orbax plumbing -------------------------------------------------------

    def _mgr(self, create: bool):
        """The Orbax manager, built lazily: reading never creates or cleans anything on disk.

        A writer (`create=True`) also removes temporary directories that a
        crashed earlier save left behind (they are never listed as steps).
        """
        if self._manager is not None and create and not self._writer:
            self.close()
        if self._manager is None:
            if not create and not self.directory.is_dir():
                return None
            import orbax.checkpoint as ocp

            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep,
                enable_async_checkpointing=False,
                create=create,
                cleanup_tmp_directories=create,
            )
            self._manager = ocp.CheckpointManager(self.directory.absolute(), options=options)
            self._writer = create
        return self._manager

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries --------------------------------------------------------------

    def all_steps(self) -> List[int]:
        """Complete checkpoints on disk, oldest first (unfinished temporary saves excluded)."""
        with _quiet_orbax():
            mgr = self._mgr(create=False)
            if mgr is None:
                return []
            mgr.reload()
            return sorted(int(s) for s in mgr.all_steps())

    def latest_step(self) -> Optional[int]:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def _resolve(self, step: Optional[int]) -> int:
        if not self.directory.exists():
            raise CheckpointError(f"checkpoint directory {self.directory} does not exist")
        if not self.directory.is_dir():
            raise CheckpointError(f"checkpoint directory {self.directory} is not a directory")
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        if step is None:
            return steps[-1]
        if int(step) not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory} (available: {steps})")
        return int(step)

    def _read_json(self, step: int, *names: str) -> Dict[str, Any]:
        import orbax.checkpoint as ocp

        args = ocp.args.Composite(**{name: ocp.args.JsonRestore() for name in names})
        try:
            with _quiet_orbax():
                out = self._mgr(create=False).restore(step, args=args)
            result = {name: out[name] for name in names}
        except Exception as err:
            raise self._corrupt(step, err) from None
        for name in names:
            if not isinstance(result[name], dict):
                raise self._corrupt(step, f"{name} is not a JSON object")
        return result

    def _corrupt(self, step: int, why: Any) -> CheckpointError:
        if isinstance(why, BaseException):
            text = " ".join(str(why).split()) or why.__class__.__name__
            why = f"{why.__class__.__name__}: {text[:200]}"
        others = [s for s in self.all_steps() if s != step]
        hint = f"; other steps: {others}" if others else ""
        return CheckpointError(f"checkpoint step {step} in {self.directory} is unreadable or corrupt ({why}){hint}")

    def read_metadata(self, step: Optional[int] = None) -> Dict[str, Any]:
        """The metadata dict saved with `step` (default: the latest)."""
        step = self._resolve(step)
        return self._read_json(step, "metadata")["metadata"]

    # -- save -----------------------------------------------------------------

    def save(self, step: int, state: Any, metadata: Optional[Dict[str, Any]] = None) -> None:
        """Writes `state` (any pytree of arrays) and `metadata` (JSON-able) as `directory/<step>/`.

        Blocks until the files are complete and renamed into place, then keeps
        the newest `keep` steps. Steps after `step` are deleted first: they
        belong to a timeline that a resume from an earlier checkpoint has
        abandoned (and Orbax would otherwise drop the new step as the oldest).
        Re-saving an existing step replaces it, and only that replacement is not
        atomic (the run loop never does it: it saves after each new chunk).
        A full disk raises `DiskFull` after removing the partial step; the
        complete steps before it stay.
        """
        import orbax.checkpoint as ocp

        step = int(step)
        if step < 0:
            raise CheckpointError(f"checkpoint step must be >= 0, got {step}")
        metadata = _jsonable(dict(metadata or {}), "")
        index, arrays = _flatten(state)
        index_doc = {"format": FORMAT, "step": step, "leaves": index}
        items = {"arrays": ocp.args.PyTreeSave(arrays)} if arrays else {}
        items.update(index=ocp.args.JsonSave(index_doc), metadata=ocp.args.JsonSave(metadata))
        _silence_closed_loop_callbacks()  # a failed write leaves tensorstore callbacks aimed at a closed loop
        try:
            # Orbax logs a failed write with a traceback per writer thread; the exception says it once.
            with _quiet_orbax(logging.CRITICAL):
                mgr = self._mgr(create=True)
                mgr.reload()
                for old in sorted(s for s in mgr.all_steps() if s >= step):
                    mgr.delete(old)
                mgr.save(step, args=ocp.args.Composite(**items), force=True)
                mgr.wait_until_finished()
        except Exception as err:
            if not is_disk_full(err):
                raise
            free = free_space(self.directory)
            self._discard(step)
            latest = self.latest_step()
            kept = f"kept step {latest}" if latest is not None else "no complete checkpoint is on disk"
            raise DiskFull(
                f"no space left on device writing checkpoint {self.directory / str(step)} ({free} free); "
                f"removed the partial checkpoint, {kept}"
            ) from None

    def _discard(self, step: int) -> None:
        """Removes what a failed save of `step` left: Orbax's temporary directory, or the step itself."""
        with contextlib.suppress(Exception), _quiet_orbax(logging.CRITICAL):
            self.close()  # a failed save leaves the manager unusable; the next call builds a new one
        self._manager = None
        for leftover in [self.directory / str(step), *self.directory.glob(f"{step}.orbax-checkpoint-tmp*")]:
            shutil.rmtree(leftover, ignore_errors=True)

    # -- restore --------------------------------------------------------------

    def restore(self, like_state: Any, step: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
        """Restores `step` (default: latest) into the structure of `like_state`.

        `like_state` is a freshly initialised state or `jax.eval_shape` of one;
        every leaf path, dtype and shape must match the checkpoint. Returns
        `(state, metadata)`; jax leaves go to the sharding of the `like_state`
        leaf (default device for ShapeDtypeStructs without one).
        """
        import orbax.checkpoint as ocp

        step = self._resolve(step)
        docs = self._read_json(step, "index", "metadata")
        index_doc, metadata = docs["index"], docs["metadata"]
        if index_doc.get("format") != FORMAT or not isinstance(index_doc.get("leaves"), list):
            raise self._corrupt(step, f"index format is {index_doc.get('format')!r}, expected {FORMAT!r}")
        saved = index_doc["leaves"]

        with_path, treedef = jax.tree_util.tree_flatten_with_path(like_state)
        where = f"checkpoint step {step} in {self.directory}"
        saved_by_path = {e["path"]: e for e in saved}
        like_paths = [jax.tree_util.keystr(p) for p, _ in with_path]
        for path, (_, like) in zip(like_paths, with_path):
            entry = saved_by_path.get(path)
            if entry is None:
                raise CheckpointError(f"{where} has no leaf {path} that the state to restore into has")
            dtype, shape = _leaf_dtype_shape(like)
            if entry["dtype"] != dtype or tuple(entry["shape"]) != shape:
                raise CheckpointError(
                    f"{where}: leaf {path} is {_describe(entry['dtype'], entry['shape'])} in the checkpoint "
                    f"but {_describe(dtype, shape)} in the state to restore into"
                )
        like_set = set(like_paths)
        extra = [e["path"] for e in saved if e["path"] not in like_set]
        if extra:
            raise CheckpointError(f"{where} has leaf {extra[0]} that the state to restore into lacks ({len(extra)} such leaves)")

        keys = [e["key"] for e in saved if e.get("key")]
        loaded: Dict[str, np.ndarray] = {}
        if keys:
            restore_args = {k: ocp.RestoreArgs(restore_type=np.ndarray) for k in keys}
            try:
                with _quiet_orbax():
                    out = self._mgr(create=False).restore(
                        step, args=ocp.args.Composite(arrays=ocp.args.PyTreeRestore(restore_args=restore_args))
                    )
                loaded = dict(out["arrays"])
            except Exception as err:
                _silence_closed_loop_callbacks()
                raise self._corrupt(step, err) from None

        leaves = []
        for path, (_, like) in zip(like_paths, with_path):
            entry = saved_by_path[path]
            stored_dtype, stored_shape = np.dtype(entry["stored_dtype"]), tuple(entry["stored_shape"])
            if entry.get("key"):
                value = loaded.get(entry["key"])
                if value is None:
                    raise self._corrupt(step, f"array for leaf {path} is missing")
                value = np.asarray(value)
            else:
                value = np.zeros(stored_shape, stored_dtype)
            if value.dtype != stored_dtype or value.shape != stored_shape:
                raise self._corrupt(step, f"leaf {path} reads back as {_describe(value.dtype, value.shape)}")
            if _crc(value) != entry["crc32"]:
                raise self._corrupt(step, f"checksum mismatch in leaf {path}")
            leaves.append(_like_leaf(like, value, entry.get("key_impl")))
        return jax.tree_util.tree_unflatten(treedef, leaves), metadata


# ---------------------------------------------------------------------------
# policy export


def _to_host_state_dict(tree: Any) -> Any:
    from flax import serialization

    def host(x):
        if hasattr(x, "dtype") and _is_key_dtype(x.dtype):
            x = jax.random.key_data(x)
        return np.asarray(jax.device_get(x))

    return serialization.to_state_dict(jax.tree_util.tree_map(host, tree))


def _restore_like(like: Any, state_dict: Any, what: str, path: Path) -> Any:
    """`state_dict` into the structure of `like`, checking every leaf's dtype and shape."""
    from flax import serialization

    try:
        restored = serialization.from_state_dict(like, state_dict)
    except Exception as err:
        raise CheckpointError(f"policy {path}: {what} does not match the expected structure ({' '.join(str(err).split())[:200]})") from None
    like_leaves = jax.tree_util.tree_flatten_with_path(like)[0]
    got_leaves = jax.tree_util.tree_leaves(restored)
    if len(got_leaves) != len(like_leaves):
        raise CheckpointError(f"policy {path}: {what} has {len(got_leaves)} arrays, expected {len(like_leaves)}")
    out = []
    for (p, l), g in zip(like_leaves, got_leaves):
        g = np.asarray(g)
        dtype, shape = _leaf_dtype_shape(l)
        is_key = hasattr(l, "dtype") and _is_key_dtype(l.dtype)
        if not is_key and (str(g.dtype) != dtype or g.shape != shape):
            raise CheckpointError(
                f"policy {path}: {what}{jax.tree_util.keystr(p)} is {_describe(g.dtype, g.shape)}, expected {_describe(dtype, shape)}"
            )
        out.append(_like_leaf(l, g, str(jax.random.key_impl(l)) if is_key and isinstance(l, jax.Array) else None))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), out)


def export_policy(path: str | Path, params: Any, extra_arrays: Optional[Dict[str, Any]] = None, meta: Optional[Dict[str, Any]] = None) -> Path:
    """Writes a self-contained policy to the directory `path`; returns `path`.

    `path/policy.msgpack` (flax msgpack) holds `params` (actor parameters),
    `extra_arrays` (name -> array or pytree, e.g. observation statistics) and
    `meta`; `path/meta.json` repeats `meta` for people and tools. Each file is
    replaced atomically; a full disk (`DiskFull`) leaves an earlier export as it was.
    """
    from flax import serialization

    path = Path(path)
    meta = _jsonable(dict(meta or {}), "")
    doc = {
        "format": POLICY_FORMAT,
        "params": _to_host_state_dict(params),
        "extra": {str(k): _to_host_state_dict(v) for k, v in (extra_arrays or {}).items()},
        "meta_json": json.dumps(meta),
    }
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"cannot export policy: {path} exists and is not a directory")
    with disk_full_as_error(path, "the policy"):
        path.mkdir(parents=True, exist_ok=True)
    atomic_write_all({
        path / POLICY_FILE: serialization.msgpack_serialize(doc),
        path / POLICY_META_FILE: (json.dumps(meta, indent=2) + "\n").encode(),
    })
    return path


def load_policy(path: str | Path, like_params: Any = None, like_extra: Optional[Dict[str, Any]] = None) -> Tuple[Any, Dict[str, Any], Dict[str, Any]]:
    """Reads an `export_policy` directory -> `(params, extra_arrays, meta)`.

    Without templates, pytrees come back as flax state dicts (nested dicts of
    numpy arrays; tuples/lists/dataclasses as dicts). Pass `like_params` and/or
    `like_extra` (name -> template) to get the original types back, checked
    leaf by leaf for dtype and shape.
    """
    from flax import serialization

    path = Path(path)
    file = path / POLICY_FILE if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"no exported policy at {path} (missing {file.name})")
    try:
        doc = serialization.msgpack_restore(file.read_bytes())
        if not isinstance(doc, dict) or doc.get("format") != POLICY_FORMAT:
            raise ValueError(f"format is not {POLICY_FORMAT}")
        params, extra, meta = doc["params"], dict(doc["extra"]), json.loads(doc["meta_json"])
    except Exception as err:
        raise CheckpointError(f"exported policy {file} is unreadable or corrupt ({err.__class__.__name__}: {' '.join(str(err).split())[:200]})") from None
    if like_params is not None:
        params = _restore_like(like_params, params, "params", path)
    for name, like in (like_extra or {}).items():
        if name not in extra:
            raise CheckpointError(f"policy {path} has no extra array '{name}' (has: {sorted(extra)})")
        extra[name] = _restore_like(like, extra[name], f"extra['{name}']", path)
    return params, extra, meta


def load_seed_policy(path: str | Path, like_extra: Optional[Dict[str, Any]] = None, seed_index: Optional[int] = None) -> Tuple[Any, Dict[str, Any], Dict[str, Any]]:
    """`load_policy` for the export of a one- or multi-seed run.

    A multi-seed run exports every array with a leading seed axis (its
    meta.json says `stacked: true` and lists `seeds`); the `like_extra`
    templates are of one seed and get that axis here. `seed_index` picks one
    seed's arrays (index i is `seeds[i]`); None keeps the seed axis.
    """
    path = Path(path)
    meta_file = path / POLICY_META_FILE
    stacked, count = False, 1
    if meta_file.is_file():
        try:
            sidecar = json.loads(meta_file.read_text())
        except ValueError as err:
            raise CheckpointError(f"policy metadata {meta_file} is unreadable ({err})") from None
        stacked, count = bool(sidecar.get("stacked", False)), len(sidecar.get("seeds", [0]))
    if seed_index is not None and not 0 <= seed_index < count:
        raise CheckpointError(f"seed index {seed_index} is out of range: the policy in {path} has {count} seed(s)")
    if stacked:
        like_extra = {
            name: jax.tree_util.tree_map(lambda x: np.zeros((count,) + np.shape(x), np.asarray(x).dtype), like)
            for name, like in (like_extra or {}).items()
        }
    params, extra, meta = load_policy(path, like_extra=like_extra)
    if stacked and seed_index is not None:
        params = jax.tree_util.tree_map(lambda x: x[seed_index], params)
        extra = {name: jax.tree_util.tree_map(lambda x: x[seed_index], value) for name, value in extra.items()}
    return params, extra, meta
