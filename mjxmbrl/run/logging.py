"""Host-side logging between jitted chunks: metrics.jsonl, W&B, console progress.

`metrics.jsonl` is the record of truth: one JSON object per line, every row
with `env_steps`, flushed as it is written. W&B is best effort: the first error
from wandb prints one warning and turns W&B off; training never stops for it.
`Progress` shows a tqdm bar on a terminal and rate-limited plain lines otherwise.
Rows of several seeds are averaged for W&B and the progress line
(`mean_over_seeds`); `t_interval_half_width` gives their Student-t interval.

Nothing here imports jax or wandb at module level (wandb only when enabled).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from mjxmbrl.run.disk import disk_full_as_error
from mjxmbrl.types import MjxmbrlError

METRICS_FILE = "metrics.jsonl"
WANDB_MODES = ("disabled", "offline", "online")
# Keys the progress display and plots read the evaluation return from, in order of preference.
EVAL_RETURN_KEYS = ("eval/return", "eval/return_mean")

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class MetricsFileError(MjxmbrlError):
    """metrics.jsonl cannot be read (a damaged line other than a half-written last one)."""


def _finite_or_tag(x: float) -> Any:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def to_python(value: Any, key: str = "value", tag_non_finite: bool = True) -> Any:
    """A metric value as plain JSON data.

    numpy/jax scalars (and size-1 arrays) -> bool/int/float; larger arrays ->
    nested lists; NaN/inf -> the strings "nan"/"inf"/"-inf" when
    `tag_non_finite` (so the line stays valid JSON), else kept as floats.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # np.float64 too (a float subclass)
        value = float(value)
        return _finite_or_tag(value) if tag_non_finite else value
    if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "__array__"):
        arr = np.asarray(value)
        if arr.size == 1:
            item = arr.reshape(()).item()
            if isinstance(item, complex):
                raise TypeError(f"metric '{key}': complex values are not supported")
            return to_python(item, key, tag_non_finite)
        return [to_python(v, key, tag_non_finite) for v in arr]
    if isinstance(value, (list, tuple)):
        return [to_python(v, key, tag_non_finite) for v in value]
    raise TypeError(f"metric '{key}' has unsupported type {type(value).__name__}")


def _env_steps(row: Dict[str, Any]) -> int:
    if "env_steps" not in row:
        raise ValueError(f"every metrics row needs 'env_steps'; got keys {sorted(row)[:8]}")
    steps = to_python(row["env_steps"], "env_steps", tag_non_finite=False)
    if isinstance(steps, bool) or not isinstance(steps, (int, float)) or not math.isfinite(steps) or steps != int(steps):
        raise ValueError(f"'env_steps' must be a whole number, got {row['env_steps']!r}")
    return int(steps)


def _untag(value: Any) -> Any:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, list):
        return [_untag(v) for v in value]
    return value


class MetricsWriter:
    """Appends rows to a JSON-lines file, one line per row, written through to the OS.

    Usage: `w = MetricsWriter(run_dir / "metrics.jsonl"); w.write({"env_steps": 1000, "train/loss": 0.3})`.
    A row that does not fit on the disk is cut off again (a half line would
    merge with the next row) and raises `DiskFull`; the rows before it stay.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = None

    def write(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """Writes one row (must contain `env_steps`); returns the row as written."""
        steps = _env_steps(row)
        clean = {"env_steps": steps}
        for key, value in row.items():
            if key != "env_steps":
                clean[str(key)] = to_python(value, str(key))
        data = (json.dumps(clean, allow_nan=False) + "\n").encode("utf-8")
        with disk_full_as_error(self.path):
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "ab", buffering=0)
            start = self._file.seek(0, os.SEEK_END)
            try:
                written = 0
                while written < len(data):  # an unbuffered write may take part of the line
                    written += self._file.write(data[written:])
            except BaseException:
                self._file.truncate(start)
                raise
        return clean

    log = write

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(path: str | Path) -> List[Dict[str, Any]]:
    """All rows of a metrics.jsonl (a missing file has none).

    "nan"/"inf"/"-inf" strings come back as floats. A half-written last line (a
    crash mid-write) is skipped; any other damaged line raises MetricsFileError.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise MetricsFileError(f"cannot read {path}: {err}") from None
    rows = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            if i == last:
                break
            raise MetricsFileError(f"{path}:{i + 1}: damaged metrics row ({err})") from None
        rows.append({k: _untag(v) for k, v in row.items()})
    return rows


def rewrite_metrics(path: str | Path, rows: Iterable[Dict[str, Any]]) -> None:
    """Replaces a metrics file with `rows` atomically (e.g. to drop rows past a resumed checkpoint)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with MetricsWriter(tmp) as writer:
            for row in rows:
                writer.write(row)
        if not tmp.exists():
            tmp.write_text("")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Weights & Biases


class WandbLogger:
    """Best-effort W&B run; offline by default, files under `run_dir/wandb`.

    Offline runs upload later with `wandb sync <run_dir>/wandb/offline-run-*`.
    Any exception from wandb (import, init, log, finish) prints one warning line
    to stderr and disables W&B for the rest of the run. `run_id` is the W&B run
    id (pass it back as `resume_id` to continue the same W&B run).
    """

    def __init__(
        self,
        mode: str = "offline",
        project: str = "mjxmbrl",
        entity: Optional[str] = None,
        run_dir: str | Path = ".",
        run_name: Optional[str] = None,
        config: Optional[Dict[str, Any]] = None,
        resume_id: Optional[str] = None,
        init_timeout_s: float = 60.0,
        group: Optional[str] = None,
    ):
        if mode not in WANDB_MODES:
            raise ValueError(f"wandb mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
        self.mode = mode
        self.run_dir = Path(run_dir)
        self.run_id: Optional[str] = resume_id  # kept even while disabled, so a later resume can use it
        self.enabled = False
        self.failed = False
        self._run = None
        if mode == "disabled":
            return
        try:
            # Quiet by default; a user's own WANDB_* settings win.
            for name, value in (("WANDB_SILENT", "true"), ("WANDB_CONSOLE", "off"), ("WANDB_INIT_TIMEOUT", str(int(init_timeout_s)))):
                os.environ.setdefault(name, value)
            import wandb

            self.run_dir.mkdir(parents=True, exist_ok=True)
            kwargs: Dict[str, Any] = dict(
                mode=mode,
                project=project,
                entity=entity,
                name=run_name,
                dir=str(self.run_dir),
                config=config or {},
            )
            if group:
                kwargs["group"] = group  # e.g. all trials of one `mjxmbrl sweep`
            if resume_id:
                kwargs.update(id=resume_id, resume="allow")
            self._run = wandb.init(**kwargs)
            if self._run is None:
                raise RuntimeError("wandb.init returned no run")
            self.run_id = self._run.id
            self.enabled = True
        except (Exception, SystemExit) as err:
            self._fail("init", err)

    @property
    def sync_dir(self) -> Optional[Path]:
        """The offline run directory (`wandb sync` it), or None."""
        if self._run is None or self.mode != "offline":
            return None
        try:
            return Path(self._run.dir).parent
        except Exception:
            return None

    def _fail(self, where: str, err: BaseException) -> None:
        self.enabled = False
        self.failed = True
        text = " ".join(str(err).split())[:160] or err.__class__.__name__
        print(
            f"warning: W&B {where} failed ({err.__class__.__name__}: {text}); W&B is off for the rest of this run, "
            f"metrics.jsonl still has everything",
            file=sys.stderr,
            flush=True,
        )

    def log(self, row: Dict[str, Any], step: Optional[int] = None) -> None:
        if not self.enabled:
            return
        try:
            data = {k: to_python(v, k, tag_non_finite=False) for k, v in row.items()}
            if step is None:
                step = data.get("env_steps")
            self._run.log(data, step=int(step) if step is not None else None)
        except (Exception, SystemExit) as err:
            self._fail("log", err)

    def finish(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        try:
            self._run.finish()
        except (Exception, SystemExit) as err:
            self._fail("finish", err)


# ---------------------------------------------------------------------------
# console progress


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Progress in env steps: a tqdm bar on a terminal, else plain lines.

    Plain lines look like `env_steps 20000/100000 | 1450 steps/s | eval 512.3 | eta 55s`
    and come at most every `min_interval_s` seconds, plus the last one. They go
    to stdout (with the run's other messages); the bar goes to stderr.
    """

    def __init__(
        self,
        total_env_steps: int,
        initial: int = 0,
        enabled: bool = True,
        min_interval_s: float = 5.0,
        stream=None,
        bar_stream=None,
    ):
        self.total = int(total_env_steps)
        self.steps = int(initial)
        self.eval_return: Optional[float] = None
        self.min_interval_s = float(min_interval_s)
        self._stream = stream if stream is not None else sys.stdout
        bar_stream = bar_stream if bar_stream is not None else sys.stderr
        self._bar = None
        self._closed = False
        if enabled and _isatty(bar_stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                initial=self.steps,
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                smoothing=0.1,
                file=bar_stream,
                desc="env steps",
            )
        now = time.perf_counter()
        self._mark_time, self._mark_steps = now, self.steps  # rate window start
        self._last_print = -math.inf
        self._pending: Optional[str] = None

    def update(self, env_steps: int, eval_return: Optional[float] = None) -> None:
        env_steps = int(env_steps)
        if eval_return is not None:
            self.eval_return = float(eval_return)
        if self._bar is not None:
            self._bar.update(max(0, env_steps - self._bar.n))
            if eval_return is not None:
                self._bar.set_postfix_str(f"eval {self.eval_return:.1f}", refresh=True)
            self.steps = env_steps
            return
        now = time.perf_counter()
        elapsed = now - self._mark_time
        rate = (env_steps - self._mark_steps) / elapsed if elapsed > 0 else math.nan
        self.steps = env_steps
        parts = [f"env_steps {env_steps}/{self.total}"]
        if math.isfinite(rate) and rate > 0:
            parts.append(f"{rate:.0f} steps/s")
        if self.eval_return is not None:
            parts.append(f"eval {self.eval_return:.1f}")
        if math.isfinite(rate) and rate > 0 and env_steps < self.total:
            parts.append(f"eta {_fmt_duration((self.total - env_steps) / rate)}")
        line = " | ".join(parts)
        if now - self._last_print >= self.min_interval_s or env_steps >= self.total:
            self._emit(line)
            self._last_print = now
            self._mark_time, self._mark_steps = now, env_steps
        else:
            self._pending = line

    def _emit(self, line: str) -> None:
        self._pending = None
        print(line, file=self._stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._pending is not None:
            self._emit(self._pending)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


# ---------------------------------------------------------------------------
# everything together


def mean_over_seeds(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One row from the per-seed rows of a chunk: numbers averaged over the rows that have them,
    booleans and-ed, `seed` dropped (`env_steps` is the same in every row)."""
    out: Dict[str, Any] = {"env_steps": rows[0]["env_steps"]}
    keys = [k for k in rows[0] if k not in ("env_steps", "seed")]
    keys += [k for r in rows[1:] for k in r if k not in keys and k not in ("env_steps", "seed")]
    for key in keys:
        values = [r[key] for r in rows if key in r]
        if all(isinstance(v, bool) for v in values):
            out[key] = all(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = sum(float(v) for v in values) / len(values)
    return out


def t_interval_half_width(values: Sequence[float], confidence: float = 0.95) -> Optional[float]:
    """Half-width of the two-sided Student-t confidence interval of the mean over seeds.

    t_{(1 + confidence) / 2, n - 1} * s / sqrt(n), with s the sample std (ddof 1)
    of the n values; None for fewer than 2 values. [1, 2, 3] -> 4.302653 * 1 / sqrt(3) = 2.484138.
    """
    n = len(values)
    if n < 2:
        return None
    from scipy.special import (
        stdtrit,  # the inverse t CDF; scipy.special loads much faster than scipy.stats
    )

    std = float(np.std(np.asarray(values, np.float64), ddof=1))
    return float(stdtrit(n - 1, 0.5 + confidence / 2) * std / math.sqrt(n))


class RunLogger:
    """metrics.jsonl (always) + W&B (best effort) + progress, fed one row per chunk."""

    def __init__(
        self,
        run_dir: str | Path,
        total_env_steps: int,
        initial_env_steps: int = 0,
        *,
        wandb_mode: str = "offline",
        project: str = "mjxmbrl",
        entity: Optional[str] = None,
        run_name: Optional[str] = None,
        config: Optional[Dict[str, Any]] = None,
        resume_id: Optional[str] = None,
        progress: bool = True,
        group: Optional[str] = None,
    ):
        self.run_dir = Path(run_dir)
        self.metrics = MetricsWriter(self.run_dir / METRICS_FILE)
        self.wandb = WandbLogger(
            wandb_mode,
            project=project,
            entity=entity,
            run_dir=self.run_dir,
            run_name=run_name or self.run_dir.name,
            config=config,
            resume_id=resume_id,
            group=group,
        )
        self.progress = Progress(total_env_steps, initial_env_steps, progress)

    @classmethod
    def from_config(cls, log_cfg: Any, run_dir: str | Path, total_env_steps: int, initial_env_steps: int = 0,
                    config: Optional[Dict[str, Any]] = None, resume_id: Optional[str] = None) -> "RunLogger":
        """Built from a `LogConfig` (wandb mode/project/entity, progress)."""
        return cls(
            run_dir,
            total_env_steps,
            initial_env_steps,
            wandb_mode=log_cfg.wandb,
            project=log_cfg.wandb_project,
            entity=log_cfg.wandb_entity,
            config=config,
            resume_id=resume_id,
            progress=log_cfg.progress,
            group=getattr(log_cfg, "wandb_group", None),
        )

    @property
    def run_id(self) -> Optional[str]:
        return self.wandb.run_id

    def log(self, row: Dict[str, Any]) -> Dict[str, Any]:
        clean = self.metrics.write(row)
        self.wandb.log(row, clean["env_steps"])
        eval_return = next((row[k] for k in EVAL_RETURN_KEYS if k in row), None)
        self.progress.update(clean["env_steps"], None if eval_return is None else float(eval_return))
        return clean

    def log_seeds(self, rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """One chunk of a run with one row per seed (each with its `seed`): every row goes to
        metrics.jsonl, their mean over seeds (`mean_over_seeds`) to W&B and the progress line."""
        clean = [self.metrics.write(row) for row in rows]
        mean = mean_over_seeds(clean)
        self.wandb.log(mean, mean["env_steps"])
        eval_return = next((mean[k] for k in EVAL_RETURN_KEYS if k in mean), None)
        self.progress.update(mean["env_steps"], None if eval_return is None else float(eval_return))
        return clean

    def close(self) -> None:
        try:
            self.progress.close()
            self.wandb.finish()
        finally:
            self.metrics.close()

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
