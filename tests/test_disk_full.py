"""A full disk (ENOSPC) during a training run: one `error:` line naming the path and the free
space, the half-written file removed, nothing written before lost or cut, and `--resume`
continuing from the newest complete checkpoint once space is freed.

The disk fills up by a write that is made to fail partway with OSError(ENOSPC): a
checkpoint item, a metrics row, the policy export, summary.json, the learning curve.
"""

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import mjxmbrl.run.disk as disk
import mjxmbrl.run.logging as run_logging
from mjxmbrl.cli import main
from mjxmbrl.run.checkpoints import Checkpointer, export_policy, load_policy
from mjxmbrl.run.disk import (
    DiskFull,
    _format_bytes,
    atomic_write_all,
    free_space,
    is_disk_full,
)
from mjxmbrl.run.logging import MetricsWriter, read_metrics

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "train.total_env_steps=1600",
    "train.warmup_env_steps=400",
    "train.log_every=400",
    "train.eval_every=800",
    "train.checkpoint_every=400",
    "train.eval_episodes=2",
    "log.progress=false",
    "log.wandb=disabled",
]
TIMING = ("time/wall_s", "train/env_steps_per_s")
SUMMARY_TIMING = ("wall_time_s", "compile_and_first_chunk_s", "env_steps_per_s", "env_steps_per_s_all_seeds")


def enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FillsUp:
    """A binary file on a disk that fills up: the first write containing `marker` puts half
    its bytes on the disk, then raises ENOSPC."""

    def __init__(self, file, marker: bytes):
        self._file, self._marker = file, marker

    def write(self, data) -> int:
        data = bytes(data)
        if self._marker in data:
            self._file.write(data[: len(data) // 2])
            self._file.flush()
            raise enospc()
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def fill_up_on(monkeypatch, module, name_part: str, marker: bytes = b"") -> None:
    """Makes `open` in `module` hand out a filling-up file for paths whose name contains `name_part`."""

    def fake_open(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        return _FillsUp(f, marker) if name_part in Path(path).name else f

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def fail_checkpoint_item(monkeypatch, step: int) -> None:
    """The metadata item of checkpoint `step` fails with ENOSPC after its arrays and index were written."""
    import orbax.checkpoint as ocp

    original = ocp.handlers.JsonCheckpointHandler._save_fn

    async def save_fn(self, x, directory):
        if Path(str(directory)).parent.name.startswith(f"{step}.") and Path(str(directory)).name.startswith("metadata"):
            Path(str(directory)).mkdir(parents=True, exist_ok=True)
            (Path(str(directory)) / "metadata").write_text('{"half": ')
            raise enospc()
        return await original(self, x, directory)

    monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "_save_fn", save_fn)


def rows_without_timing(path: Path) -> list:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(path)]


def train_cli(capsys, *args) -> tuple:
    """Runs `mjxmbrl train ...` in this process: (exit code, the stderr lines)."""
    capsys.readouterr()
    code = main(["train", *map(str, args)])
    return code, capsys.readouterr().err.strip().splitlines()


def the_error(lines: list) -> str:
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1 and not any("Traceback" in l for l in lines), lines
    return errors[0]


# ---- the pieces --------------------------------------------------------------------------------


def test_format_bytes_exact():
    assert [_format_bytes(n) for n in (0, 1023, 1024, 1536, 5 * 1024**2 + 512 * 1024, 3 * 1024**3)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.5 MiB", "3.0 GiB",
    ]


def test_free_space_of_a_path_not_yet_there(tmp_path):
    assert re.fullmatch(r"\d+ B|\d+\.\d (KiB|MiB|GiB|TiB)", free_space(tmp_path / "not" / "yet" / "there"))


def test_is_disk_full_recognises_oserror_tensorstore_text_and_causes():
    assert is_disk_full(enospc())
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    # tensorstore (Orbax's array writer) reports the OS error inside a ValueError's text
    assert is_disk_full(ValueError("RESOURCE_EXHAUSTED: Failed to write 16154 bytes to file 8 [os_error_code='28']"))
    assert not is_disk_full(ValueError("RESOURCE_EXHAUSTED: out of memory"))
    try:
        try:
            raise enospc()
        except OSError as err:
            raise RuntimeError("commit failed") from err
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)


def test_atomic_write_all_replaces_nothing_when_one_file_does_not_fit(tmp_path, monkeypatch):
    a, b = tmp_path / "a.bin", tmp_path / "b.json"
    a.write_bytes(b"old a")
    b.write_bytes(b"old b")
    fill_up_on(monkeypatch, disk, "b.json")
    with pytest.raises(DiskFull) as info:
        atomic_write_all({a: b"new a" * 100, b: b"new b" * 100})
    assert re.fullmatch(rf"no space left on device writing {re.escape(str(b))} \(.+ free\)", str(info.value))
    assert a.read_bytes() == b"old a" and b.read_bytes() == b"old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json"]  # no temporary files left
    monkeypatch.undo()
    atomic_write_all({a: b"new a", b: b"new b"})
    assert a.read_bytes() == b"new a" and b.read_bytes() == b"new b"


def test_metrics_writer_cuts_off_the_half_written_row(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    fill_up_on(monkeypatch, run_logging, "metrics.jsonl", marker=b'"env_steps": 300')
    writer = MetricsWriter(path)
    writer.write({"env_steps": 100, "x": 1.0})
    writer.write({"env_steps": 200, "x": 2.0})
    before = path.read_bytes()
    with pytest.raises(DiskFull, match=rf"^no space left on device writing {re.escape(str(path))} \(.+ free\)$"):
        writer.write({"env_steps": 300, "x": 3.0})
    assert path.read_bytes() == before  # the half line is gone, the rows before it are whole
    writer.close()
    monkeypatch.undo()
    with MetricsWriter(path) as again:  # space freed: the next row starts on a line of its own
        again.write({"env_steps": 300, "x": 3.0})
    assert [r["env_steps"] for r in read_metrics(path)] == [100, 200, 300]


def test_checkpoint_that_does_not_fit_is_removed_and_the_previous_one_kept(tmp_path, monkeypatch):
    ckpt = Checkpointer(tmp_path, keep=3)
    ckpt.save(100, {"w": np.arange(5.0)}, {"env_steps": 100})
    fail_checkpoint_item(monkeypatch, 200)
    with pytest.raises(DiskFull) as info:
        ckpt.save(200, {"w": np.arange(5.0) + 1}, {"env_steps": 200})
    assert re.fullmatch(
        rf"no space left on device writing checkpoint {re.escape(str(tmp_path / '200'))} \(.+ free\); "
        r"removed the partial checkpoint, kept step 100",
        str(info.value),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["100"]  # no <step>.orbax-checkpoint-tmp left behind
    monkeypatch.undo()
    ckpt.save(200, {"w": np.arange(5.0) + 1}, {"env_steps": 200})  # the same Checkpointer works again
    state, meta = Checkpointer(tmp_path).restore({"w": np.zeros(5)})
    assert meta == {"env_steps": 200} and np.array_equal(state["w"], np.arange(5.0) + 1)


def test_first_checkpoint_that_does_not_fit_says_none_is_kept(tmp_path, monkeypatch):
    fail_checkpoint_item(monkeypatch, 100)
    with pytest.raises(DiskFull, match=r"removed the partial checkpoint, no complete checkpoint is on disk$"):
        Checkpointer(tmp_path).save(100, {"w": np.arange(5.0)})
    assert list(tmp_path.iterdir()) == []


def test_policy_export_that_does_not_fit_keeps_the_previous_export(tmp_path, monkeypatch):
    export_policy(tmp_path / "policy", {"w": np.ones(3, np.float32)}, {"obs": np.zeros(2)}, {"env_steps": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "policy").iterdir()}
    for name in ("policy.msgpack", "meta.json"):
        fill_up_on(monkeypatch, disk, name)
        with pytest.raises(DiskFull, match=rf"writing {re.escape(str(tmp_path / 'policy' / name))} \(.+ free\)$"):
            export_policy(tmp_path / "policy", {"w": np.full(3, 2, np.float32)}, {"obs": np.ones(2)}, {"env_steps": 2})
        monkeypatch.undo()
        assert {p.name: p.read_bytes() for p in (tmp_path / "policy").iterdir()} == before
    params, _, meta = load_policy(tmp_path / "policy")
    assert meta == {"env_steps": 1} and np.array_equal(params["w"], np.ones(3, np.float32))


# ---- a whole run -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run with room to spare: the metrics and summary a resumed run must reproduce."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", str(ROOT / "configs/debug.yaml"), *TINY, f"log.runs_dir={runs}", "log.run_name=ref"]) == 0
    return runs / "ref"


def _assert_resumes_to_the_reference(capsys, run: Path, reference: Path) -> None:
    code, lines = train_cli(capsys, "--resume", run)
    assert code == 0, lines
    assert rows_without_timing(run / "metrics.jsonl") == rows_without_timing(reference / "metrics.jsonl")
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (run, reference))
    for key in SUMMARY_TIMING:
        summary.pop(key), expected.pop(key)
    assert summary == expected
    assert (run / "policy" / "policy.msgpack").is_file() and (run / "learning_curve.png").is_file()


def test_disk_full_during_a_checkpoint(tmp_path, monkeypatch, capsys, reference):
    run = tmp_path / "r"
    fail_checkpoint_item(monkeypatch, 800)
    code, lines = train_cli(capsys, ROOT / "configs/debug.yaml", *TINY, f"log.runs_dir={tmp_path}", "log.run_name=r")
    assert code == 1
    assert re.fullmatch(
        rf"error: no space left on device writing checkpoint {re.escape(str(run / 'checkpoints' / '800'))} \(.+ free\); "
        rf"removed the partial checkpoint, kept step 400; free some space, then continue from env step 400 with "
        rf"`mjxmbrl train --resume {re.escape(str(run))}`",
        the_error(lines),
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["400"]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "learning_curve.png", "metrics.jsonl"]
    assert [r["env_steps"] for r in read_metrics(run / "metrics.jsonl")] == [400, 800]
    monkeypatch.undo()
    _assert_resumes_to_the_reference(capsys, run, reference)


def test_disk_full_during_a_metrics_row(tmp_path, monkeypatch, capsys, reference):
    run = tmp_path / "r"
    fill_up_on(monkeypatch, run_logging, "metrics.jsonl", marker=b'"env_steps": 1200')
    code, lines = train_cli(capsys, ROOT / "configs/debug.yaml", *TINY, f"log.runs_dir={tmp_path}", "log.run_name=r")
    assert code == 1
    assert re.fullmatch(
        rf"error: no space left on device writing {re.escape(str(run / 'metrics.jsonl'))} \(.+ free\); "
        rf"free some space, then continue from env step 800 with `mjxmbrl train --resume {re.escape(str(run))}`",
        the_error(lines),
    )
    text = (run / "metrics.jsonl").read_text()
    assert text.endswith("\n") and [json.loads(l)["env_steps"] for l in text.splitlines()] == [400, 800]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["400", "800"]
    monkeypatch.undo()
    _assert_resumes_to_the_reference(capsys, run, reference)


@pytest.mark.parametrize("target", ["policy.msgpack", "meta.json", "summary.json", "learning_curve.png"])
def test_disk_full_at_the_end_of_a_run(tmp_path, monkeypatch, capsys, reference, target):
    run = tmp_path / "r"
    if target == "learning_curve.png":
        from matplotlib.figure import Figure

        def savefig(self, fname, *args, **kwargs):
            Path(fname).write_bytes(b"\x89PNG half")
            raise enospc()

        monkeypatch.setattr(Figure, "savefig", savefig)
    else:
        fill_up_on(monkeypatch, disk, target)
    code, lines = train_cli(capsys, ROOT / "configs/debug.yaml", *TINY, f"log.runs_dir={tmp_path}", "log.run_name=r")
    assert code == 1
    where = run / "policy" / target if target in ("policy.msgpack", "meta.json") else run / target
    assert re.fullmatch(
        rf"error: no space left on device writing {re.escape(str(where))} \(.+ free\); "
        rf"free some space, then continue from env step 1600 with `mjxmbrl train --resume {re.escape(str(run))}`",
        the_error(lines),
    )
    written = {"checkpoints", "config.yaml", "metrics.jsonl"}
    written |= {"learning_curve.png", "policy"} if target != "learning_curve.png" else set()
    assert sorted(p.name for p in run.iterdir()) == sorted(written)  # no half-written or temporary file
    if target in ("policy.msgpack", "meta.json"):
        assert list((run / "policy").iterdir()) == []  # neither file replaced, no temporary file left
    elif target == "summary.json":
        assert sorted(p.name for p in (run / "policy").iterdir()) == ["meta.json", "policy.msgpack"]
    assert rows_without_timing(run / "metrics.jsonl") == rows_without_timing(reference / "metrics.jsonl")
    monkeypatch.undo()
    _assert_resumes_to_the_reference(capsys, run, reference)
