"""`mjxmbrl reproduce NAME`: run every cell of a paper experiment, then compare with the paper.

Each (cell, seed) is one run directory `<out>/runs/<cell id>-s<seed>` trained
with `run.loop.train` in this process; with `vmap_seeds` (CLI `--vmap-seeds`)
each cell is one run `<cell id>-s0-<S-1>` training its S seeds in one
vmapped program (`train.num_seeds=S`, seed values 0..S-1, the same
parameters as the seeds trained alone). A run whose summary.json says it finished
is skipped, one with a checkpoint is resumed, so an interrupted reproduce
continues where it stopped. At the end `<out>/results.md` (and
`results.json`) holds, per cell, the final eval return mean +- std over seeds
next to the paper's number and the delta, and `<out>/results.png` one
subplot per task with the learning curves (mean over seeds, 95% CI band).

`cells` (CLI `--cells`) keeps the cells whose id matches one of the glob patterns (training and
report alike); `order` (CLI `--order`) sets which runs go first: `cell` (each cell's seeds in turn,
the experiment's order), `seed` (every cell's seed 0 first, so a reproduction cut short still covers
every cell) or `task` (every run of the first task before the next task, seed-major within a task).

Per-seed values are read from metrics.jsonl rows: by a row's `seed` field
when present (a run training several seeds in one program), else by the run's
config `train.seed` (`plotting.seed_series`), so both layouts give the same table.

An experiment reports `experiment.metrics` (default `eval/return` alone). Each metric after the first
(e.g. `eval/policy_return`, the amortized policy of an agent that plans) adds a column to results.md,
its per-seed values and curves to results.json (under "metrics") and dotted curves in the colour of
the method to results.png. A seed whose runs do not log such a metric reports the first metric's
value instead (an agent without a planner logs only `eval/return`, which is its policy's return), and
results.md marks the value so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fnmatch
import json
import math
import os
import platform
import shlex
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mjxmbrl.cli.plotting import plot_panels, seed_series
from mjxmbrl.experiments import (
    BUDGET_NAMES,
    Budget,
    Cell,
    Experiment,
    ExperimentError,
    Published,
    full_citation,
    get_experiment,
)
from mjxmbrl.run.disk import atomic_write
from mjxmbrl.run.logging import t_interval_half_width

METRIC = "eval/return"
# Column titles in results.md of the metrics after the first; others are shown as their key.
METRIC_LABELS = {"eval/policy_return": "policy alone"}
FALLBACK_MARK = "*"
# Why a run may not log a further metric, for the footnote of the values that fall back to the first metric.
FALLBACK_REASONS = {
    "eval/policy_return": "an agent without a planner acts with its policy, so its `eval/return` is its policy's return",
}
RESULTS_MD = "results.md"
RESULTS_JSON = "results.json"
RESULTS_PNG = "results.png"
RUN_ORDERS = ("cell", "seed", "task")
# Keys reproduce sets for each run itself (cell_overrides): a user's override of one would break the run layout.
RUN_KEYS = ("train.seed", "train.num_seeds", "log.runs_dir", "log.run_name", "transfer.source_run")
RUN_KEY_HINTS = {"train.seed": "--seeds", "train.num_seeds": "--vmap-seeds", "log.runs_dir": "--out", "log.run_name": "--out"}


def _log(message: str) -> None:
    print(message, flush=True)  # in order with the runs' own output, also when stdout is a file


def default_out_dir(name: str, budget: str) -> Path:
    return Path("runs") / "reproduce" / f"{name}-{budget}"


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    cell: Cell
    seed: int  # the first seed of the run
    run_dir: Path
    cfg: Any  # mjxmbrl.config.Config
    num_seeds: int = 1  # seeds seed, seed + 1, ... trained in this run's one program

    @property
    def label(self) -> str:
        return f"seed {self.seed}" if self.num_seeds == 1 else f"seeds {self.seed}-{self.seed + self.num_seeds - 1}"


def check_request(
    name: str, budget: str, seeds: Optional[int], jobs: int = 1, cells: Optional[Sequence[str]] = None, order: str = "cell",
    overrides: Sequence[str] = (),
) -> tuple[Experiment, Budget, int]:
    """(experiment with the selected cells, budget, seed count) or one ExperimentError naming what is wrong and what is valid."""
    for override in overrides:
        if "=" not in override:
            raise ExperimentError(f"override '{override}' is not section.key=value")
        key = override.split("=", 1)[0].strip()
        if key in RUN_KEYS:
            hint = f" (use {RUN_KEY_HINTS[key]})" if key in RUN_KEY_HINTS else ""
            raise ExperimentError(f"override '{override}': reproduce sets {key} for each run itself{hint}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ExperimentError(f"--jobs must be a whole number >= 1, got {jobs}")
    if order not in RUN_ORDERS:
        raise ExperimentError(f"unknown --order '{order}' (valid: {', '.join(RUN_ORDERS)})")
    experiment = select_cells(get_experiment(name), cells)
    if budget not in experiment.budgets:
        valid = ", ".join(b for b in BUDGET_NAMES if b in experiment.budgets) or ", ".join(experiment.budgets)
        raise ExperimentError(f"unknown budget '{budget}' (valid: {valid})")
    b = experiment.budgets[budget]
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ExperimentError(f"--seeds must be a whole number >= 1, got {seeds}")
    return experiment, b, b.seeds if seeds is None else seeds


def select_cells(experiment: Experiment, patterns: Optional[Sequence[str]]) -> Experiment:
    """The experiment restricted to the cells whose id matches one of the glob `patterns` (all cells for None),
    and the cells they transfer from (`Cell.source`).

    Every pattern must match a cell; otherwise one ExperimentError that lists the cell ids.
    """
    if not patterns:
        return experiment
    ids = [c.id for c in experiment.cells]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(i, pattern) for i in ids):
            raise ExperimentError(
                f"--cells '{pattern}' matches no cell of experiment '{experiment.name}' (cells: {', '.join(ids)})"
            )
    chosen = {c.id for c in experiment.cells if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)}
    chosen |= {c.source for c in experiment.cells if c.id in chosen and c.source is not None}  # what they load from
    kept = tuple(c for c in experiment.cells if c.id in chosen)
    return dataclasses.replace(experiment, cells=kept)


def order_runs(planned: Sequence[PlannedRun], order: str = "cell") -> List[PlannedRun]:
    """The runs in the order they train: 'cell' (as planned), 'seed' (seed-major) or 'task' (task, then seed)."""
    if order not in RUN_ORDERS:
        raise ExperimentError(f"unknown --order '{order}' (valid: {', '.join(RUN_ORDERS)})")
    cells = list(dict.fromkeys(r.cell.id for r in planned))
    tasks = list(dict.fromkeys(r.cell.task for r in planned))
    keys = {
        "cell": lambda r: (cells.index(r.cell.id), r.seed),
        "seed": lambda r: (r.seed, cells.index(r.cell.id)),
        "task": lambda r: (tasks.index(r.cell.task), r.seed, cells.index(r.cell.id)),
    }
    return sorted(planned, key=keys[order])


def run_name(cell: Cell | str, seed: int, num_seeds: int = 1) -> str:
    """The run directory's name of a cell (or cell id) and its seed(s)."""
    cell_id = cell if isinstance(cell, str) else cell.id
    return f"{cell_id}-s{seed}" if num_seeds == 1 else f"{cell_id}-s{seed}-{seed + num_seeds - 1}"


def cell_overrides(
    cell: Cell, budget: Budget, seed: int, runs_dir: Path, num_seeds: int = 1, user: Sequence[str] = ()
) -> List[str]:
    """Budget overrides, then the cell's own, then the user's (`mjxmbrl reproduce NAME KEY=VALUE ...`), then seed(s)
    and run location (the last word), and for a cell with a source the source cell's run of the same seed(s) as
    transfer.source_run."""
    return [
        *budget.config_overrides(cell.task, cell.id),
        *cell.overrides,
        *user,
        f"train.seed={seed}",
        f"train.num_seeds={num_seeds}",
        f"log.runs_dir={runs_dir}",
        f"log.run_name={run_name(cell, seed, num_seeds)}",
    ] + ([f"transfer.source_run={runs_dir / run_name(cell.source, seed, num_seeds)}"] if cell.source else [])


def plan_runs(
    experiment: Experiment, budget: Budget, seeds: int, out: Path, vmap_seeds: bool = False, overrides: Sequence[str] = ()
) -> List[PlannedRun]:
    """Builds and validates every run's config before anything runs.

    One run per (cell, seed), or with `vmap_seeds` one run per cell holding all its seeds. `overrides`: the
    user's dotted overrides for every run, applied after the budget's and the cell's.
    """
    from mjxmbrl.config import load_config

    runs_dir = out / "runs"
    planned = []
    per_run = seeds if vmap_seeds else 1
    for cell in experiment.cells:
        if not cell.config_path.is_file():
            raise ExperimentError(f"experiment '{experiment.name}', cell '{cell.id}': config file {cell.config_path} not found")
        for seed in range(0, seeds, per_run):
            cfg = load_config(cell.config_path, cell_overrides(cell, budget, seed, runs_dir, per_run, overrides))
            if cfg.env.action_repeat != cell.action_repeat:
                raise ExperimentError(
                    f"cell '{cell.id}': {cell.config} gives env.action_repeat={cfg.env.action_repeat}, "
                    f"but the paper uses {cell.action_repeat}"
                )
            planned.append(PlannedRun(cell, seed, runs_dir / run_name(cell, seed, per_run), cfg, per_run))
    return planned


def _comparable(config: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in config.items() if k != "log"}


def run_status(run: PlannedRun) -> str:
    """'missing', 'finished', 'resumable' (has a checkpoint) or 'stale' (started, nothing to resume).

    Raises ExperimentError when the directory holds a run of another config
    (e.g. another budget written to the same --out).
    """
    from mjxmbrl.config import config_to_dict, read_yaml

    d = run.run_dir
    if not d.exists():
        return "missing"
    if (d / "config.yaml").is_file():
        saved = _comparable(read_yaml(d / "config.yaml"))
        wanted = _comparable(config_to_dict(run.cfg))
        wanted = json.loads(json.dumps(wanted))  # tuples -> lists, as read back from YAML
        # Keys only one side has (a config key added since the run was made) do not count.
        diff = sorted(
            f"{s}.{k}" for s in set(saved) & set(wanted)
            for k in set(saved[s] or {}) & set(wanted[s] or {})
            if saved[s][k] != wanted[s][k]
        )
        if diff:
            raise ExperimentError(
                f"{d} holds a run with another config ({', '.join(diff[:4])}{' ...' if len(diff) > 4 else ''} differ); "
                "choose another --out or remove it"
            )
    summary = d / "summary.json"
    if summary.is_file():
        try:
            if json.loads(summary.read_text()).get("finished", False):
                return "finished"
        except ValueError:
            pass
    ckpts = d / "checkpoints"
    if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
        return "resumable"
    return "stale"


def _move_aside(run_dir: Path) -> Path:
    for i in range(1, 1000):
        target = run_dir.with_name(f"{run_dir.name}.incomplete-{i}")
        if not target.exists():
            shutil.move(str(run_dir), str(target))
            return target
    raise ExperimentError(f"too many incomplete copies of {run_dir}; remove them")


def _train_one(cfg: Any, run_dir: Path, resume: bool) -> Dict[str, Any]:
    """Trains (or resumes) one run; {"status": "done" | "diverged", "error": ...}. Runs in a worker process too."""
    import jax

    from mjxmbrl.run.loop import TrainingDiverged, train

    tic = time.perf_counter()
    try:
        if resume:
            train(resume_dir=run_dir)
        else:
            train(cfg)
        return {"status": "done", "wall_s": time.perf_counter() - tic}
    except TrainingDiverged as err:
        return {"status": "diverged", "error": str(err), "wall_s": time.perf_counter() - tic}
    finally:
        jax.clear_caches()  # each run compiles its own programs; do not keep them all in memory


def execute(planned: Sequence[PlannedRun], log=None, jobs: int = 1) -> List[Dict[str, Any]]:
    """Trains every planned run that has not finished; returns one record per run (status, wall seconds).

    `jobs` > 1 trains that many runs at a time in worker processes (compilation is
    mostly single-threaded, so on a multi-core CPU this shortens a reproduce; on a
    GPU keep 1, each process would claim the device's memory). A run that
    diverges (NaN/inf) is recorded as such and the others go on; any other error
    (or Ctrl-C) stops here, and the next invocation continues.
    """
    if jobs < 1:
        raise ExperimentError(f"--jobs must be >= 1, got {jobs}")
    log = log or _log
    records: List[Dict[str, Any]] = []
    todo = []
    for i, run in enumerate(planned, 1):
        status = run_status(run)
        where = f"[{i}/{len(planned)}] {run.cell.id} {run.label}"
        record = {"cell": run.cell.id, "seed": run.seed, "num_seeds": run.num_seeds, "run_dir": str(run.run_dir), "status": status, "wall_s": 0.0}
        records.append(record)
        if status == "finished":
            log(f"{where}: finished run found in {run.run_dir}, skipped")
            continue
        if status == "stale":
            log(f"{where}: {run.run_dir} has no checkpoint to resume; moved aside to {_move_aside(run.run_dir)}")
        todo.append((where, run, record))
    # Runs that load a source run's parts start once every source run has trained (a stable sort keeps the order).
    todo.sort(key=lambda item: item[1].cell.source is not None)

    def finish(where, record, result, tic):
        # the run's own time (a worker's run may have waited in the queue since it was submitted)
        record["wall_s"] = result.get("wall_s", time.perf_counter() - tic)
        if result["status"] == "diverged":
            log(f"{where}: diverged, left out of the results: {result['error']}")
            record.update(status="diverged", error=result["error"])

    if jobs == 1 or not todo:
        for where, run, record in todo:
            log(f"{where}: {'resuming' if record['status'] == 'resumable' else 'training'}")
            tic = time.perf_counter()
            finish(where, record, _train_one(run.cfg, run.run_dir, record["status"] == "resumable"), tic)
        return records

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    waves = [[item for item in todo if item[1].cell.source is None], [item for item in todo if item[1].cell.source]]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool, \
            _sigterm_as_interrupt():
        started = {}
        try:
            for wave in waves:  # sources first, then the runs that load them
                submitted = []
                for where, run, record in wave:
                    log(f"{where}: queued ({'resume' if record['status'] == 'resumable' else 'train'}, {jobs} at a time)")
                    future = pool.submit(_train_one, run.cfg, run.run_dir, record["status"] == "resumable")
                    started[future] = (where, record, time.perf_counter())
                    submitted.append(future)
                pending = set(submitted)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        where, record, tic = started[future]
                        finish(where, record, future.result(), tic)
                        log(f"{where}: done in {record['wall_s']:.0f} s")
        except BaseException:
            for future in started:
                future.cancel()
            # Workers are processes of their own: stop the runs in flight, or they outlive this one
            # (their checkpoints stay; the next invocation resumes them).
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
            raise
    return records


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (kill, a job scheduler) raises KeyboardInterrupt here, so `execute` stops its workers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- results -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CellResult:
    cell: Cell
    per_seed: Dict[int, float]  # seed -> final eval return (the last logged value of the metric)
    final_env_steps: Dict[int, int]
    # seed -> (env steps, values) of every logged value: the learning curves, kept in results.json
    # so that the curves can be redrawn after the run directories are gone
    curves: Dict[int, tuple] = dataclasses.field(default_factory=dict)
    # The experiment's further metrics (experiment.metrics[1:]): {metric: CellResult of that metric}.
    others: Dict[str, "CellResult"] = dataclasses.field(default_factory=dict)
    # In a CellResult of a further metric: the seeds whose runs do not log it, reported with the first metric.
    fallback_seeds: tuple = ()

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def mean(self) -> Optional[float]:
        vals = list(self.per_seed.values())
        return sum(vals) / len(vals) if vals else None

    @property
    def std(self) -> Optional[float]:
        """Sample std over seeds (ddof 1); None with fewer than two seeds."""
        vals = list(self.per_seed.values())
        if len(vals) < 2:
            return None
        m = sum(vals) / len(vals)
        return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))

    @property
    def ci95(self) -> Optional[float]:
        """Half-width of the Student-t 95% interval of the mean over seeds; None with fewer than two seeds."""
        return t_interval_half_width(list(self.per_seed.values()))

    @property
    def delta(self) -> Optional[float]:
        """Ours - paper (mean); None without a published number or without a result."""
        if self.cell.published is None or self.mean is None:
            return None
        return self.mean - self.cell.published.mean


def series_per_seed(run_dirs: Sequence[Path], metric: str = METRIC) -> Dict[int, tuple]:
    """{seed: (env steps, values) of `metric`} over the runs of one cell; a seed in two runs is an error."""
    series: Dict[int, tuple] = {}
    for run_dir in run_dirs:
        for seed, xy in seed_series(run_dir, metric).items():
            if seed in series:
                raise ExperimentError(f"seed {seed} appears in more than one run of the same cell ({run_dir})")
            series[seed] = xy
    return series


def finals_of(series: Dict[int, tuple]) -> tuple[Dict[int, float], Dict[int, int]]:
    """({seed: value at the largest env steps}, {seed: those env steps}) of per-seed (env steps, values) series."""
    finals: Dict[int, float] = {}
    steps: Dict[int, int] = {}
    for seed, (xs, ys) in series.items():
        last = max(range(len(xs)), key=lambda j: xs[j])
        finals[seed], steps[seed] = ys[last], int(xs[last])
    return finals, steps


def collect_results(
    experiment: Experiment, run_dirs_by_cell: Dict[str, Sequence[Path]], metric: Optional[str] = None
) -> List[CellResult]:
    """Per cell, the final value and curves of `metric` (default: the experiment's first metric) per seed.

    Each further metric of `experiment.metrics` goes into `CellResult.others`; a seed that logs the
    first metric but not a further one takes the first metric's values (listed in `fallback_seeds`).
    """
    metrics = experiment.metrics
    primary = metrics[0] if metric is None else metric
    results = []
    for cell in experiment.cells:
        dirs = [Path(d) for d in run_dirs_by_cell.get(cell.id, ()) if Path(d).is_dir()]
        curves = dict(sorted(series_per_seed(dirs, primary).items()))  # metrics read once per cell
        finals, steps = finals_of(curves)
        others = {}
        for other in metrics:
            if other == primary:
                continue
            own = series_per_seed(dirs, other)
            fallback = tuple(s for s in curves if s not in own)
            other_curves = dict(sorted({**{s: curves[s] for s in fallback}, **own}.items()))
            o_finals, o_steps = finals_of(other_curves)
            others[other] = CellResult(cell, o_finals, o_steps, other_curves, fallback_seeds=fallback)
        results.append(CellResult(cell, dict(sorted(finals.items())), dict(sorted(steps.items())), curves, others))
    return results


def read_earlier_results(path: str | Path, experiment: Experiment, budget: Budget) -> Dict[str, Dict[str, Any]]:
    """cell id -> that cell's entry in an earlier results.json of the same experiment and budget (`--merge`).

    One ExperimentError when the file is missing, is not a reproduce results.json, or is another
    experiment's or budget's.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"--merge {path}: no such file") from None
    except (OSError, ValueError) as err:
        raise ExperimentError(f"--merge {path}: not a readable results.json ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ExperimentError(f"--merge {path}: not a results.json written by mjxmbrl reproduce (no cells)")
    if (data.get("experiment"), data.get("budget")) != (experiment.name, budget.name):
        raise ExperimentError(
            f"--merge {path} holds experiment '{data.get('experiment')}' at budget '{data.get('budget')}', "
            f"not '{experiment.name}' at '{budget.name}'"
        )
    cells = {c["cell"]: c for c in data["cells"] if isinstance(c, dict) and isinstance(c.get("curves"), dict) and "cell" in c}
    for cell_id, entry in cells.items():
        for curves in [entry["curves"]] + [m.get("curves") or {} for m in (entry.get("metrics") or {}).values()]:
            for seed, curve in curves.items():
                if not (str(seed).isdigit() and isinstance(curve, dict) and isinstance(curve.get("env_steps"), list)
                        and isinstance(curve.get("value"), list) and len(curve["env_steps"]) == len(curve["value"]) > 0):
                    raise ExperimentError(f"--merge {path}: cell '{cell_id}', seed '{seed}': not a curve (env_steps and value lists)")
    return cells


def _curve(entry: Dict[str, Any]) -> tuple:
    return [float(x) for x in entry["env_steps"]], [float(y) for y in entry["value"]]


def _with_seeds(r: CellResult, added: Dict[int, tuple], fallback: Sequence[int] = ()) -> CellResult:
    curves = dict(sorted({**r.curves, **added}.items()))
    finals, steps = finals_of(curves)
    return dataclasses.replace(r, per_seed=finals, final_env_steps=steps, curves=curves,
                               fallback_seeds=tuple(sorted({*r.fallback_seeds, *fallback})))


def covered_by(run: PlannedRun, earlier: Dict[str, Dict[str, Any]]) -> bool:
    """Whether every seed of `run` has a curve in the earlier results.json's entry of its cell."""
    have = {int(s) for s in earlier.get(run.cell.id, {}).get("curves", {})}
    return set(range(run.seed, run.seed + run.num_seeds)) <= have


def merge_earlier(
    results: Sequence[CellResult], earlier: Dict[str, Dict[str, Any]]
) -> tuple[List[CellResult], Dict[str, List[int]]]:
    """Each cell's results plus the seeds an earlier results.json has and these runs do not (their curves, hence
    their final values, for every metric; a seed of this out dir wins over the earlier file's). Returns the
    results and {cell id: the seeds taken from the earlier file}.
    """
    merged_results, merged = [], {}
    for r in results:
        entry = earlier.get(r.cell.id, {})
        seeds = sorted(int(s) for s in entry.get("curves", {}) if int(s) not in r.per_seed)
        if not seeds:
            merged_results.append(r)
            continue
        others = {}
        for metric, o in r.others.items():
            m = (entry.get("metrics") or {}).get(metric) or {}
            own = {s: _curve(m["curves"][str(s)]) for s in seeds if str(s) in (m.get("curves") or {})}
            # a seed the earlier file has no curve of this metric for reports the first metric's, as collect_results does
            fallback = [s for s in seeds if s not in own or s in m.get("fallback_seeds", ())]
            added = {**{s: _curve(entry["curves"][str(s)]) for s in seeds if s not in own}, **own}
            others[metric] = _with_seeds(o, added, fallback)
        r = _with_seeds(r, {s: _curve(entry["curves"][str(s)]) for s in seeds})
        merged_results.append(dataclasses.replace(r, others=others))
        merged[r.cell.id] = seeds
    return merged_results, merged


def _decimals(x: Optional[float]) -> int:
    """Decimals that show `x` to 3 significant digits below 1 (a coverage of 0.0741), else 1 (a return of 847.3)."""
    if x is None or not math.isfinite(x) or abs(x) >= 1.0 or x == 0.0:
        return 1
    return 2 - math.floor(math.log10(abs(x)))


def _fmt(x: Optional[float], signed: bool = False, decimals: Optional[int] = None) -> str:
    if x is None:
        return "–"
    d = _decimals(x) if decimals is None else decimals
    return f"{x:+.{d}f}" if signed else f"{x:.{d}f}"


def _fmt_mean_std(r: CellResult) -> str:
    """'mean ± std', the std to the mean's decimals."""
    if r.n == 0:
        return "not run"
    d = _decimals(r.mean)
    return _fmt(r.mean, decimals=d) + (f" ± {_fmt(r.std, decimals=d)}" if r.std is not None else "")


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, f"`{metric}`")


def _fmt_published(p: Optional[Published]) -> str:
    if p is None:
        return "–"
    return f"{p.mean:g}" + (f" ± {p.std:g}" if p.std is not None else "")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else platform.processor()); '' when unknown.

    Part of the machine line because XLA compiles for the host CPU: another CPU model can round
    differently, and RL runs then diverge from the same seed.
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # no /proc (macOS, Windows)
        return platform.processor()
    return platform.processor()


def machine_description() -> str:
    import jax

    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{platform.node()} ({platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"
        + (f" {cpu_model()}" if cpu_model() else "") + "), "
        f"jax {jax.__version__} on {jax.default_backend()}: {len(devices)} x {', '.join(kinds)}; load average {load}"
    )


def reference_rows(results: Sequence[CellResult]) -> List[tuple]:
    """The reference table's rows as (task, {column: Published}): one row per task, the union of its cells'
    references (each cell leaves out its own column, so cells of one task fill each other's gaps), in the order
    the tasks first appear. Cells of one task whose references disagree on a column keep a row each."""
    by_task: Dict[str, List[dict]] = {}
    for r in results:
        by_task.setdefault(r.cell.task, []).append(dict(r.cell.reference))
    rows = []
    for task, refs in by_task.items():
        merged: Dict[str, Any] = {}
        consistent = True
        for ref in refs:
            for column, published in ref.items():
                consistent &= merged.setdefault(column, published) == published
        rows += [(task, merged)] if consistent else [(task, ref) for ref in refs]
    return rows


def final_value_meaning(metric: str) -> str:
    """How the final value of `metric` was formed, for the report's sentence on "ours"."""
    if metric.startswith("eval/"):
        return "mean over its eval episodes at the last evaluation"
    return "its value in the last metrics row that has it"


def results_markdown(
    experiment: Experiment,
    budget: Budget,
    results: Sequence[CellResult],
    *,
    seeds: int,
    command: str,
    date: str,
    machine: str,
    wall_s: Optional[float] = None,
    metric: Optional[str] = None,
    left_out: Sequence[str] = (),
    not_finished: Sequence[str] = (),
    merged_from: Optional[tuple] = None,
) -> str:
    """The report. `merged_from`: (path, {cell id: seeds}) of seeds taken from an earlier results.json (--merge)."""
    metric = experiment.metrics[0] if metric is None else metric
    others = [m for m in experiment.metrics if m != metric]
    sources = sorted({r.cell.published.source for r in results if r.cell.published is not None})
    lines = [
        f"# Reproduction: {experiment.name} (budget `{budget.name}`)",
        "",
        f"{experiment.description}.",
        f"Paper: {full_citation(experiment.paper)}; {experiment.table}.",
        "",
        f"- budget: `{budget.name}`: {budget.total_env_steps} env steps (action repeat counted), eval every "
        f"{budget.eval_every} env steps over {budget.eval_episodes} episodes, {seeds} seed(s) per cell"
        + (f"; per task: {', '.join(f'{t} {n}' for t, n in budget.task_env_steps)} env steps" if budget.task_env_steps else "")
        + (f"; overrides `{' '.join(budget.overrides)}`" if budget.overrides else "")
        + "".join(f"; cells `{pattern}` also `{' '.join(extra)}`" for pattern, extra in budget.cell_overrides),
        f"- date: {date}",
        f"- machine: {machine}",
        f"- command: `{command}`",
    ]
    if wall_s is not None:
        lines.append(f"- wall time of this invocation: {wall_s:.0f} s")
    for item in left_out:
        lines.append(f"- left out (diverged): {item}")
    if not_finished:  # one line: a partial report of a large experiment would otherwise list every run
        folders = ", ".join(sorted({str(Path(d).parent) for d in not_finished}))
        lines.append(f"- left out (not finished when this report was written), {len(not_finished)} run(s) in {folders}: "
                     + ", ".join(Path(d).name for d in not_finished))
    if merged_from and merged_from[1]:
        taken = "; ".join(f"{cell} {', '.join(f's{s}' for s in seeds)}" for cell, seeds in merged_from[1].items())
        lines.append(f"- seeds whose runs are not in this output folder, from an earlier `{merged_from[0]}`: {taken}")
    lines += [
        "",
        f"Ours: the final `{metric}` of each seed ({final_value_meaning(metric)}), "
        "then mean ± sample std (ddof 1) over seeds; `–` where there is no std (one seed) or no number. "
        + "".join(f"Column {metric_label(m)}: the same for `{m}`. " for m in others)
        + f"Paper: {'; '.join(sources) if sources else 'no published number'}. Delta = ours - paper (means).",
        "",
        "| task | method | setting | ours | " + "".join(f"{metric_label(m)} | " for m in others)
        + "seeds | env steps | paper | delta (ours - paper) |",
        "| --- | --- | --- | --- | " + "--- | " * len(others) + "--- | --- | --- | --- |",
    ]
    fell_back = {m: [] for m in others}
    for r in results:
        env_steps = ", ".join(sorted({str(s) for s in r.final_env_steps.values()})) or "–"
        extra = ""
        for m in others:
            o = r.others.get(m)
            if o is None or o.n == 0:
                extra += "– | "
                continue
            mark = FALLBACK_MARK if o.fallback_seeds else ""
            if o.fallback_seeds:
                fell_back[m].append(r.cell.id + ("" if len(o.fallback_seeds) == o.n else f" (seeds {', '.join(map(str, o.fallback_seeds))})"))
            extra += f"{_fmt_mean_std(o)}{mark} | "
        lines.append(
            f"| {r.cell.task} | {r.cell.method} | {r.cell.setting or '–'} | {_fmt_mean_std(r)} | {extra}{r.n} | {env_steps} | "
            f"{_fmt_published(r.cell.published)} | {_fmt(r.delta, signed=True)} |"
        )
    for m, cells in fell_back.items():
        if cells:
            lines += [
                "",
                f"{FALLBACK_MARK} The runs of {', '.join(cells)} log no `{m}`; their `{metric}` is shown as {metric_label(m)}"
                + (f": {FALLBACK_REASONS[m]}." if m in FALLBACK_REASONS else "."),
            ]
    columns = list(dict.fromkeys(name for r in results for name, _ in r.cell.reference))
    if columns:
        lines += [
            "",
            "Reference numbers: the paper's other entries in the same table (mean ± std, as published).",
            "",
            "| task | " + " | ".join(columns) + " |",
            "| --- | " + " | ".join("---" for _ in columns) + " |",
        ]
        for task, ref in reference_rows(results):
            lines.append(f"| {task} | " + " | ".join(_fmt_published(ref.get(c)) for c in columns) + " |")
    lines += ["", "Per seed (final value, env steps):", ""]
    for r in results:
        per = ", ".join(
            f"seed {s}: {_fmt(v)} @ {r.final_env_steps[s]}"
            + "".join(
                f" ({METRIC_LABELS.get(m, m)} {_fmt(r.others[m].per_seed[s])}{FALLBACK_MARK if s in r.others[m].fallback_seeds else ''})"
                for m in others if m in r.others and s in r.others[m].per_seed
            )
            for s, v in r.per_seed.items()
        ) or "not run"
        lines.append(f"- {r.cell.id}: {per}")
    if experiment.notes:
        lines += ["", "Notes: " + experiment.notes]
    curves_line = f"Learning curves: [{RESULTS_PNG}]({RESULTS_PNG}) (mean over seeds, 95% CI band where there are 2+ seeds)."
    if others:
        curves_line = curves_line[:-1] + (
            f"; solid `{metric}`, dotted in the same colour {', '.join(f'`{m}`' for m in others)} where the runs log it."
        )
    lines += ["", curves_line]
    return "\n".join(lines) + "\n"


def _curves_json(curves: Dict[int, tuple]) -> Dict[str, Any]:
    return {str(s): {"env_steps": [int(x) for x in xs], "value": list(ys)} for s, (xs, ys) in curves.items()}


def results_json(results: Sequence[CellResult]) -> List[Dict[str, Any]]:
    """One entry per cell; a cell with further metrics also has "metrics": {metric: per-seed finals, stats, curves}."""
    return [
        {
            "cell": r.cell.id,
            "method": r.cell.method,
            "task": r.cell.task,
            "setting": r.cell.setting,
            "seeds": r.n,
            "per_seed": {str(s): v for s, v in r.per_seed.items()},
            "mean": r.mean,
            "std": r.std,
            "ci95": r.ci95,
            "published": dataclasses.asdict(r.cell.published) if r.cell.published else None,
            "delta": r.delta,
            "curves": _curves_json(r.curves),
            **({"metrics": {
                m: {
                    "per_seed": {str(s): v for s, v in o.per_seed.items()},
                    "mean": o.mean,
                    "std": o.std,
                    "ci95": o.ci95,
                    "curves": _curves_json(o.curves),
                    "fallback_seeds": list(o.fallback_seeds),  # seeds without this metric: the first metric's values
                }
                for m, o in r.others.items()
            }} if r.others else {}),
        }
        for r in results
    ]


def write_results(
    experiment: Experiment,
    budget: Budget,
    planned: Sequence[PlannedRun],
    out: Path,
    *,
    seeds: int,
    command: str,
    wall_s: Optional[float] = None,
    diverged: Sequence[Path] = (),
    machine_at_start: Optional[str] = None,
    not_finished: Sequence[Path] = (),
    earlier: Optional[tuple] = None,
) -> List[CellResult]:
    """Writes results.md, results.json and results.png into `out`; returns the per-cell results.

    Runs in `diverged` are left out of the table and the curves (and listed). `earlier`: (path, the
    `read_earlier_results` of it): the seeds it has and these runs do not join the table, the json and the plot.
    """
    skip = {Path(d) for d in diverged} | {Path(d) for d in not_finished}
    by_cell: Dict[str, List[Path]] = {}
    for run in planned:
        by_cell.setdefault(run.cell.id, [])
        if run.run_dir not in skip:
            by_cell[run.cell.id].append(run.run_dir)
    results = collect_results(experiment, by_cell)
    merged: Dict[str, List[int]] = {}
    if earlier is not None:
        results, merged = merge_earlier(results, earlier[1])
        run_of = {r.run_dir: r for r in planned}
        not_finished = [d for d in not_finished if not (Path(d) in run_of and covered_by(run_of[Path(d)], earlier[1]))]
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    machine = machine_description()
    if machine_at_start is not None:
        machine = f"{machine} at the end; at the start: {machine_at_start.split('load average ')[-1]}"
    text = results_markdown(
        experiment, budget, results, seeds=seeds, command=command, date=date, machine=machine, wall_s=wall_s,
        left_out=[str(d) for d in sorted(diverged)], not_finished=[str(d) for d in sorted(not_finished)],
        merged_from=(str(earlier[0]), merged) if earlier is not None else None,
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / RESULTS_MD, text.encode())
    head = {"experiment": experiment.name, "budget": budget.name, "command": command, "date": date, "machine": machine}
    if wall_s is not None:
        head["wall_s"] = round(wall_s, 1)
    if len(experiment.metrics) > 1:
        head["metrics"] = list(experiment.metrics)
    if merged:
        head["merged_from"] = {"path": str(earlier[0]), "seeds": merged}
    atomic_write(out / RESULTS_JSON, (json.dumps({**head, "cells": results_json(results)}, indent=2) + "\n").encode())
    panels, refs = [], []
    # The plot draws the table's seeds (merged ones included); a further metric only where a run logs it.
    drawn = {
        r.cell.id: {experiment.metrics[0]: list(r.curves.values()),
                    **{m: [c for s, c in o.curves.items() if s not in o.fallback_seeds] for m, o in r.others.items()}}
        for r in results
    }
    for task in experiment.tasks:
        cells = [c for c in experiment.cells if c.task == task]
        groups = [(c.method + (f" ({c.setting})" if c.setting else ""), drawn.get(c.id, {})) for c in cells]
        panels.append((task, groups))
        published = {(c.published.source, c.published.mean) for c in cells if c.published is not None}
        refs.append([(f"paper: {source.split(',')[-1].strip()}", mean) for source, mean in sorted(published)])
    plot_panels(
        panels, out / RESULTS_PNG, metric=experiment.metrics[0], band="ci95", title=f"{experiment.name} ({budget.name})",
        reference_lines=refs, dotted_metrics=experiment.metrics[1:],
    )
    return results


def reproduce(
    name: str,
    budget: str = "smoke",
    seeds: Optional[int] = None,
    out: Optional[str | Path] = None,
    command: Optional[str] = None,
    log=_log,
    jobs: int = 1,
    report_only: bool = False,
    vmap_seeds: bool = False,
    cells: Optional[Sequence[str]] = None,
    order: str = "cell",
    overrides: Sequence[str] = (),
    merge: Optional[str | Path] = None,
) -> Path:
    """Runs (or continues) every cell x seed of experiment `name` at `budget`; writes the results; returns the out dir.

    `report_only`: train nothing; write the results of the runs that have finished (e.g. trained by
    several processes or machines into the same out dir) and list the others as not finished.
    `vmap_seeds`: each cell's seeds train together in one vmapped program (one run directory per cell).
    `cells`: glob patterns of the cell ids to run and report (all cells by default); `order`: see RUN_ORDERS.
    `overrides`: dotted config overrides for every run (after the budget's and the cell's; not the keys in RUN_KEYS).
    `merge`: an earlier results.json of this experiment and budget: the seeds it holds are not trained again (unless
    finished in the out dir, which then wins) and join the report (run directories do not outlive a machine).
    """
    experiment, b, n_seeds = check_request(name, budget, seeds, jobs, cells, order, overrides)
    earlier = (merge, read_earlier_results(merge, experiment, b)) if merge is not None else None
    out = Path(out) if out is not None else default_out_dir(name, budget)
    planned = order_runs(plan_runs(experiment, b, n_seeds, out, vmap_seeds, overrides), order)
    for run in planned:
        run_status(run)  # a directory of another config is rejected before anything runs
    if command is None:
        command = f"mjxmbrl reproduce {name} --budget {budget} --seeds {n_seeds} --out {out}" + (" --vmap-seeds" if vmap_seeds else "")
        command += f" --cells {','.join(cells)}" if cells else ""
        command += f" --merge {merge}" if merge is not None else ""
        command += "".join(f" {shlex.quote(o)}" for o in overrides)
    log(f"reproduce {name} ({budget}): {len(experiment.cells)} cells x {n_seeds} seed(s) -> {out}")
    at_start = machine_description()
    started = time.perf_counter()
    if report_only:
        finished = [r for r in planned if run_status(r) == "finished"]
        not_finished = [r.run_dir for r in planned if r not in finished]
        write_results(experiment, b, planned, out, seeds=n_seeds, command=command, not_finished=not_finished, earlier=earlier)
        log(f"written from {len(finished)} finished of {len(planned)} runs: {out / RESULTS_MD}, {out / RESULTS_PNG}")
        return out
    # Seeds the earlier results.json holds are done: not trained here unless <out> has them finished (then <out>'s count).
    merged_runs = [r for r in planned if earlier is not None and run_status(r) != "finished" and covered_by(r, earlier[1])]
    for r in merged_runs:
        log(f"{r.cell.id} {r.label}: in {merge}, not trained")
    records = execute([r for r in planned if r not in merged_runs], log=log, jobs=jobs)
    wall = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "runs.json", (json.dumps(records, indent=2) + "\n").encode())
    diverged = [Path(r["run_dir"]) for r in records if r["status"] == "diverged"]
    write_results(
        experiment, b, planned, out, seeds=n_seeds, command=command, wall_s=wall, diverged=diverged, machine_at_start=at_start,
        earlier=earlier, not_finished=[r.run_dir for r in merged_runs],
    )
    log(f"written: {out / RESULTS_MD}, {out / RESULTS_PNG} ({wall:.0f} s)")
    return out
