"""Trains the runs of a `mjxmbrl reproduce` experiment in N parallel processes, then leaves aggregation to
`mjxmbrl reproduce NAME --budget B --seeds S`, which finds the finished runs and writes results.md/png.

    python benchmarks/run_experiment_parallel.py svg-horizons-dmc paper 3 --workers 2

Runs go in seed-major order (every cell's seed 0 first), so a budget cut short still covers every cell;
`--order task` finishes every seed of the first task before the next task starts (seed-major within a task).
"""

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from mjxmbrl.experiments import get_experiment
from mjxmbrl.reproduce import cell_overrides, default_out_dir, plan_runs, run_status


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("budget")
    parser.add_argument("seeds", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--order", choices=("seed", "task"), default="seed", help="seed: seed-major; task: task, then seed")
    parser.add_argument("--skip", nargs="*", default=[], help="run names to leave out (e.g. trained elsewhere)")
    args = parser.parse_args()
    experiment = get_experiment(args.name)
    budget = experiment.budget(args.budget)
    out = default_out_dir(args.name, args.budget)
    cells = [c.id for c in experiment.cells]
    tasks = list(dict.fromkeys(c.task for c in experiment.cells))

    def order(run):
        seed_major = (run.seed, cells.index(run.cell.id))
        return seed_major if args.order == "seed" else (tasks.index(run.cell.task),) + seed_major

    planned = sorted(plan_runs(experiment, budget, args.seeds, out), key=order)
    todo = [r for r in planned if run_status(r) != "finished" and r.run_dir.name not in args.skip]

    def train(run):
        overrides = cell_overrides(run.cell, budget, run.seed, out / "runs") + ["log.progress=false"]
        cmd = [sys.executable, "-m", "mjxmbrl.cli", "train", str(run.cell.config_path), *overrides]
        with open(out / f"{run.run_dir.name}.log", "w") as log:
            return run.run_dir.name, subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode

    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.workers) as pool:
        for name, code in pool.map(train, todo):
            print(f"{name}: exit {code}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
