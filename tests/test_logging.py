"""metrics.jsonl, W&B (offline and failing), progress lines, RunLogger and plots."""

import io
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from mjxmbrl.run.curves import plot_learning_curve, plot_runs
from mjxmbrl.run.logging import (
    MetricsFileError,
    MetricsWriter,
    Progress,
    RunLogger,
    WandbLogger,
    read_metrics,
    rewrite_metrics,
)

REPO = Path(__file__).resolve().parents[1]


def strict_json(line):
    def reject(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(line, parse_constant=reject)


def test_metrics_rows_are_valid_json_with_python_scalars(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    with MetricsWriter(path) as writer:
        writer.write({"env_steps": jnp.asarray(1000), "train/loss": jnp.float32(0.25), "train/ok": np.bool_(True), "name": "a"})
        writer.write({"env_steps": np.int64(2000), "eval/return": float("nan"), "x/inf": np.float32(np.inf), "x/ninf": -math.inf,
                      "x/vec": np.array([1.0, np.nan])})
        # Visible on disk before close: each row is flushed.
        assert len(path.read_text().splitlines()) == 2
    lines = path.read_text().splitlines()
    first, second = strict_json(lines[0]), strict_json(lines[1])
    assert first == {"env_steps": 1000, "train/loss": 0.25, "train/ok": True, "name": "a"}
    assert type(first["env_steps"]) is int and type(first["train/loss"]) is float
    assert second == {"env_steps": 2000, "eval/return": "nan", "x/inf": "inf", "x/ninf": "-inf", "x/vec": [1.0, "nan"]}

    rows = read_metrics(path)
    assert rows[0] == first
    assert math.isnan(rows[1]["eval/return"]) and rows[1]["x/inf"] == math.inf and rows[1]["x/ninf"] == -math.inf
    assert rows[1]["x/vec"][0] == 1.0 and math.isnan(rows[1]["x/vec"][1])


def test_env_steps_is_required(tmp_path):
    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    with pytest.raises(ValueError, match="env_steps"):
        writer.write({"train/loss": 1.0})
    with pytest.raises(ValueError, match="whole number"):
        writer.write({"env_steps": 1.5})
    assert not (tmp_path / "metrics.jsonl").exists()
    writer.write({"env_steps": 3.0})
    writer.close()
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"env_steps": 3}]


def test_read_metrics_damage(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_metrics(path) == []
    path.write_text('{"env_steps": 1}\n{"env_steps": 2}\n{"env_steps": 3, "trai')  # crash mid-write
    assert [r["env_steps"] for r in read_metrics(path)] == [1, 2]
    path.write_text('{"env_steps": 1}\nnot json\n{"env_steps": 3}\n')
    with pytest.raises(MetricsFileError, match=r"metrics.jsonl:2"):
        read_metrics(path)


def test_rewrite_metrics_keeps_only_given_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsWriter(path) as w:
        for s in (1, 2, 3):
            w.write({"env_steps": s, "v": float("inf") if s == 2 else s})
    rows = read_metrics(path)
    rewrite_metrics(path, [r for r in rows if r["env_steps"] <= 2])
    assert [strict_json(l) for l in path.read_text().splitlines()] == [{"env_steps": 1, "v": 1}, {"env_steps": 2, "v": "inf"}]


def test_wandb_offline_writes_offline_run_dir(tmp_path):
    pytest.importorskip("wandb")
    logger = WandbLogger("offline", project="mjxmbrl-test", run_dir=tmp_path, run_name="unit", config={"train": {"seed": 1}})
    assert logger.enabled and not logger.failed and logger.run_id
    logger.log({"env_steps": 100, "train/loss": np.float32(0.5), "eval/return": float("nan")}, 100)
    logger.log({"env_steps": 200, "train/loss": jnp.asarray(0.25)}, 200)
    logger.finish()
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and offline[0] == logger.sync_dir
    assert offline[0].name.endswith(logger.run_id)
    assert list(offline[0].glob(f"run-{logger.run_id}.wandb"))
    logger.finish()  # idempotent


def _fake_wandb(monkeypatch, init=None, log=None):
    calls = {"init": 0, "log": 0, "finish": 0}

    class FakeRun:
        id = "fake123"
        dir = "/nonexistent/files"

        def log(self, data, step=None):
            calls["log"] += 1
            if log is not None:
                log()

        def finish(self):
            calls["finish"] += 1

    def fake_init(**kwargs):
        calls["init"] += 1
        calls["kwargs"] = kwargs
        if init is not None:
            init()
        return FakeRun()

    module = types.ModuleType("wandb")
    module.init = fake_init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def test_wandb_init_failure_warns_once_and_disables(tmp_path, monkeypatch, capsys):
    def boom():
        raise ConnectionError("no route to host\nsecond line")

    calls = _fake_wandb(monkeypatch, init=boom)
    logger = WandbLogger("online", run_dir=tmp_path, run_name="r", config={}, resume_id="abc")
    for step in range(5):
        logger.log({"env_steps": step, "x": 1.0}, step)
    logger.finish()
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "W&B init failed" in lines[0] and "metrics.jsonl still has everything" in lines[0]
    assert calls["init"] == 1 and calls["log"] == 0 and calls["finish"] == 0
    assert not logger.enabled and logger.failed
    assert logger.run_id == "abc"  # the id survives for a later resume


def test_wandb_log_failure_warns_once(tmp_path, monkeypatch, capsys):
    def boom():
        raise RuntimeError("wandb-core died")

    calls = _fake_wandb(monkeypatch, log=boom)
    logger = WandbLogger("offline", run_dir=tmp_path, run_name="r", config={"a": 1}, resume_id="fake123")
    assert logger.enabled and logger.run_id == "fake123"
    assert calls["kwargs"]["dir"] == str(tmp_path) and calls["kwargs"]["mode"] == "offline"
    assert calls["kwargs"]["id"] == "fake123" and calls["kwargs"]["resume"] == "allow"
    for step in range(3):
        logger.log({"env_steps": step}, step)
    logger.finish()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "W&B log failed" in err[0] and "metrics.jsonl" in err[0]
    assert calls["log"] == 1 and calls["finish"] == 0


def test_disabled_mode_imports_no_wandb(tmp_path):
    code = (
        "import sys\n"
        "from mjxmbrl.run.logging import RunLogger, WandbLogger\n"
        f"w = WandbLogger('disabled', run_dir={str(tmp_path)!r}, resume_id='keep')\n"
        "w.log({'env_steps': 1}, 1); w.finish()\n"
        f"r = RunLogger({str(tmp_path / 'run')!r}, 10, wandb_mode='disabled', progress=False)\n"
        "r.log({'env_steps': 10, 'eval/return': 1.0}); r.close()\n"
        "assert w.run_id == 'keep' and not w.enabled\n"
        "print('wandb' in sys.modules, 'matplotlib' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False False"
    assert not (tmp_path / "wandb").exists()


def test_progress_plain_lines_are_rate_limited(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("mjxmbrl.run.logging.time.perf_counter", lambda: clock[0])
    out = io.StringIO()
    progress = Progress(100_000, initial=0, enabled=True, min_interval_s=5.0, stream=out, bar_stream=io.StringIO())
    for i in range(1, 10):  # one update per second
        clock[0] += 1.0
        progress.update(i * 1000, eval_return=512.34 if i == 3 else None)
    progress.close()
    progress.close()
    lines = out.getvalue().splitlines()
    # t=1 (first), t=6 (5 s later), and the last (t=9) at close.
    assert lines == [
        "env_steps 1000/100000 | 1000 steps/s | eta 1m39s",
        "env_steps 6000/100000 | 1000 steps/s | eval 512.3 | eta 1m34s",
        "env_steps 9000/100000 | 1000 steps/s | eval 512.3 | eta 1m31s",
    ]


def test_progress_final_step_prints_immediately():
    out = io.StringIO()
    progress = Progress(2000, initial=1000, enabled=False, min_interval_s=3600, stream=out)
    progress.update(1500)
    progress.update(2000, 7.0)
    assert len(out.getvalue().splitlines()) == 2
    assert out.getvalue().splitlines()[-1].startswith("env_steps 2000/2000") and "eval 7.0" in out.getvalue()
    progress.close()
    assert len(out.getvalue().splitlines()) == 2


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    bar, plain = Tty(), io.StringIO()
    progress = Progress(1000, initial=0, enabled=True, stream=plain, bar_stream=bar)
    progress.update(500, eval_return=12.5)
    progress.close()
    assert "eval 12.5" in bar.getvalue() and "500" in bar.getvalue()
    assert plain.getvalue() == ""


def test_run_logger_writes_jsonl_and_progress(tmp_path, capsys):
    logger = RunLogger(tmp_path / "run", 2000, wandb_mode="disabled", progress=False)
    logger.log({"env_steps": 1000, "train/loss": jnp.float32(1.0)})
    logger.log({"env_steps": 2000, "eval/return": np.float64(3.5), "eval/return_std": 0.5})
    logger.close()
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["env_steps"] for r in rows] == [1000, 2000] and rows[1]["eval/return"] == 3.5
    assert "env_steps 2000/2000" in capsys.readouterr().out
    with pytest.raises(ValueError):
        RunLogger(tmp_path / "r2", 10, wandb_mode="disabled", progress=False).log({"x": 1})


def _is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_learning_curve(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsWriter(path) as w:
        for i in range(1, 6):
            row = {"env_steps": i * 1000, "train/episode_return": float(i)}
            if i % 2 == 0:
                row.update({"eval/return": 10.0 * i, "eval/return_std": 1.0})
            w.write(row)
        w.write({"env_steps": 6000, "eval/return": float("nan")})
    out = plot_learning_curve(path, tmp_path / "plots" / "curve.png", "test run")
    assert out == tmp_path / "plots" / "curve.png" and _is_png(out)
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["curve.png"]  # no temp files left


def test_plot_without_eval_rows_says_so(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsWriter(path) as w:
        w.write({"env_steps": 100, "train/loss": 1.0})
    assert _is_png(plot_learning_curve(path, tmp_path / "a.png", "no eval"))
    assert _is_png(plot_learning_curve(tmp_path / "missing.jsonl", tmp_path / "b.png"))


def test_plot_runs_overlays(tmp_path):
    for name, scale in (("run-a", 1.0), ("run-b", 2.0)):
        with MetricsWriter(tmp_path / name / "metrics.jsonl") as w:
            for i in range(1, 4):
                w.write({"env_steps": i * 100, "eval/return_mean": scale * i, "eval/return_std": 0.1})
    (tmp_path / "run-c").mkdir()
    out = plot_runs([tmp_path / "run-a", tmp_path / "run-b", tmp_path / "run-c"], tmp_path / "runs.png")
    assert _is_png(out)
    with pytest.raises(ValueError):
        plot_runs([], tmp_path / "none.png")
