"""Command line: `mjxmbrl train | eval | plan | model-eval | sweep | reproduce | list | plot | bench`.

This module parses the arguments and dispatches; each command's work lives
next to it: `plan.py` (`mjxmbrl plan`), `evaluate.py` (`eval`, with
`video.py` for `--video`), `model_eval.py`, `sweep.py`, `reproduce.py`,
`plotting.py` (`plot`), `bench.py` (`bench`; `bench gpu` in `bench_gpu.py`).
`train` calls the run loop, `mjxmbrl.run.loop.train`.

Every user error is a `MjxmbrlError`: printed as one `error:` line, exit code 1
(130 for an interrupted run whose checkpoint was saved). Heavy imports (jax,
MJX) happen inside the commands so `--help` and bad input answer fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional

# MuJoCo reads MUJOCO_GL once, at its first import: headless EGL unless the user chose (e.g. osmesa).
os.environ.setdefault("MUJOCO_GL", "egl")

from mjxmbrl.types import MjxmbrlError


def _cmd_train(args) -> int:
    from mjxmbrl.config import load_config

    config_path, overrides = args.config, list(args.overrides)
    if config_path is not None and "=" in config_path:
        config_path, overrides = None, [config_path] + overrides
    if args.resume is not None:
        if config_path is not None or overrides:
            raise MjxmbrlError("--resume continues a run with its saved config.yaml; give no config file or overrides with it")
        cfg = None
    else:
        cfg = load_config(config_path, overrides)
    from mjxmbrl.run.loop import train

    run_dir = train(cfg, resume_dir=args.resume, stop_after=args.stop_after)
    summary = json.loads((run_dir / "summary.json").read_text())
    print(
        f"done: {run_dir} | env steps {summary['env_steps']} | final eval {summary['final_eval_return']} "
        f"| best eval {summary['best_eval_return']} | {summary['wall_time_s']:.0f}s"
    )
    print(where_outputs_are(run_dir))
    return 0


def where_outputs_are(run_dir: Path) -> str:
    """What a finished run wrote and how to look at it, one line each (printed after `mjxmbrl train`)."""
    lines = [
        ("curve", run_dir / "learning_curve.png"),
        ("metrics", run_dir / "metrics.jsonl"),
        ("checkpoints", run_dir / "checkpoints"),
        ("policy", run_dir / "policy"),
    ]
    out = [f"  {name + ':':<13}{path}" for name, path in lines if path.exists()]
    out.append(f"  {'video:':<13}mjxmbrl eval {run_dir} --video   (writes {run_dir}/videos/eval-<env_steps>.mp4)")
    return "\n".join(out)


def _cmd_eval(args) -> int:
    from mjxmbrl.cli.evaluate import evaluate_run

    result = evaluate_run(
        Path(args.run_dir), episodes=args.episodes, seed=args.seed,
        video=args.video, video_episodes=args.video_episodes, width=args.width, height=args.height,
        seed_index=args.seed_index, overrides=args.overrides,
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_plan(args) -> int:
    from mjxmbrl.config import load_config

    config_path, overrides = args.config, list(args.overrides)
    if config_path is not None and "=" in config_path:
        config_path, overrides = None, [config_path] + overrides
    cfg = load_config(config_path, overrides)
    from mjxmbrl.cli.plan import run_plan

    out_dir, summary = run_plan(cfg, args.episodes, Path(args.out) if args.out else None)
    print(
        f"done: {out_dir} | {summary['planner']} with {summary['model']} on {summary['env']} | return "
        f"{summary['return_mean']:.1f} +- {summary['return_std']:.1f} over {summary['episodes']} episodes | "
        f"{summary['plan_time_per_step_s'] * 1e3:.1f} ms per agent step"
    )
    return 0


def _cmd_model_eval(args) -> int:
    from mjxmbrl.cli.model_eval import (
        LEARNED,
        EvalSettings,
        model_settings,
        run_model_eval,
    )
    from mjxmbrl.config import EnvConfig

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.run_dir is not None:
        if args.env is not None:
            raise MjxmbrlError("give either a run directory or --env, not both")
        from mjxmbrl.run.loop import load_run_config

        run_dir = Path(args.run_dir)
        cfg = load_run_config(run_dir)
        env_cfg, run_cfg = cfg.env, cfg
        out = Path(args.out) if args.out else run_dir / "model_eval"
        policy_fraction = 0.5 if args.policy_fraction is None else args.policy_fraction
    else:
        if args.env is None:
            raise MjxmbrlError("model-eval needs a run directory (its policy collects data) or --env NAME (random actions)")
        if args.policy_fraction:
            raise MjxmbrlError("--policy-fraction needs a run directory with a trained policy")
        from mjxmbrl.envs.registry import get_spec

        get_spec(args.env)
        run_dir, run_cfg, policy_fraction = None, None, 0.0
        env_cfg = EnvConfig(name=args.env, action_repeat=args.action_repeat)
        out = Path(args.out) if args.out else Path("runs") / f"model_eval-{args.env}"
    for value, flag in ((args.updates, "--updates"), (args.transitions, "--transitions"), (args.stride, "--stride")):
        if value is not None and value <= 0:
            raise MjxmbrlError(f"{flag} must be positive, got {value}")
    if not 0.0 <= policy_fraction <= 1.0:
        raise MjxmbrlError(f"--policy-fraction must be in [0, 1], got {policy_fraction}")
    settings = EvalSettings(
        transitions=args.transitions or EvalSettings.transitions,
        policy_fraction=policy_fraction,
        updates=args.updates or EvalSettings.updates,
        start_stride=args.stride or EvalSettings.start_stride,
        seed=args.seed,
    )
    overrides = model_settings(Path(args.settings) if args.settings else None)
    result = run_model_eval(
        env_cfg, out, run_dir=run_dir, run_cfg=run_cfg,
        models=models or list(LEARNED), settings=settings, model_overrides=overrides,
    )
    print((out / "model_eval.md").read_text())
    print(f"written: {out}/model_eval.md, model_eval.json, model_eval.png")
    return 0 if result else 1


def _cmd_list(args) -> int:
    if args.what == "configs":
        from mjxmbrl.config import SHIPPED_CONFIGS, shipped_config_names

        print(f"# shipped in {SHIPPED_CONFIGS}; a file of the same path where you run wins")
        print("\n".join(shipped_config_names()))
        return 0
    if args.what == "experiments":
        from mjxmbrl.experiments import list_experiments

        experiments = list_experiments()
        width = max([20] + [len(e.name) for e in experiments])
        print(f"{'name':<{width}} {'paper':<44} {'cells':>5}  budgets (env steps x seeds)")
        for e in experiments:
            budgets = ", ".join(f"{b.name} {b.total_env_steps}x{b.seeds}" for b in e.budgets.values())
            print(f"{e.name:<{width}} {e.paper:<44} {len(e.cells):>5}  {budgets}")
        return 0
    if args.what == "envs":
        from mjxmbrl.envs.registry import list_env_specs

        print(f"{'name':<24} {'family':<10} {'obs':>5} {'act':>4} {'ctrl_dt':>8} {'ep_len':>7} {'terminates':>10}")
        for s in list_env_specs():
            print(
                f"{s.name:<24} {s.family:<10} {s.obs_size:>5} {s.action_size:>4} {s.ctrl_dt:>8.4g} {s.episode_length:>7} {str(s.has_termination):>10}"
            )
    else:
        from mjxmbrl.config import registries

        registry = registries()[args.what[:-1]]  # agents -> agent
        for entry in registry:
            print(f"{entry.name:<10} {entry.summary}")
    return 0


def _cmd_plot(args) -> int:
    from mjxmbrl.cli.plotting import plot_groups

    for d in args.run_dirs:
        if not (Path(d) / "metrics.jsonl").is_file():
            raise MjxmbrlError(f"{d} has no metrics.jsonl")
    out = plot_groups([Path(d) for d in args.run_dirs], Path(args.out), metric=args.metric, band=args.band)
    print(out)
    return 0


def _cmd_reproduce(args) -> int:
    from mjxmbrl.cli.reproduce import check_request, default_out_dir

    cells = [c for c in args.cells.split(",") if c] if args.cells else None
    overrides = list(args.overrides)
    _, _, seeds = check_request(args.name, args.budget, args.seeds, args.jobs, cells, args.order, overrides)  # bad input fails before anything runs
    out = Path(args.out) if args.out else default_out_dir(args.name, args.budget)
    from mjxmbrl.cli.reproduce import RESULTS_MD, reproduce

    command = f"mjxmbrl reproduce {args.name} --budget {args.budget}" + (f" --seeds {args.seeds}" if args.seeds else "")
    command += f" --out {args.out}" if args.out else ""
    command += f" --jobs {args.jobs}" if args.jobs != 1 else ""
    command += " --report-only" if args.report_only else ""
    command += " --vmap-seeds" if args.vmap_seeds else ""
    command += f" --cells {args.cells}" if args.cells else ""
    command += f" --order {args.order}" if args.order != "cell" else ""
    command += f" --merge {args.merge}" if args.merge else ""
    command += "".join(f" {shlex.quote(o)}" for o in overrides)
    reproduce(
        args.name, args.budget, seeds, out, command=command, jobs=args.jobs, report_only=args.report_only,
        vmap_seeds=args.vmap_seeds, cells=cells, order=args.order, overrides=overrides, merge=args.merge,
    )
    print((out / RESULTS_MD).read_text())
    return 0


def _cmd_bench(args) -> int:
    if args.overrides and args.what != "acting":
        raise MjxmbrlError(f"config overrides ({' '.join(args.overrides)}) belong to `mjxmbrl bench acting`")
    if args.what == "gpu":
        from mjxmbrl.cli.bench_gpu import cmd_bench_gpu

        return cmd_bench_gpu(args)
    if args.budget is not None or args.parts:
        raise MjxmbrlError("--budget and --parts belong to `mjxmbrl bench gpu`")
    from mjxmbrl.cli import bench as benches

    bench = getattr(benches, f"bench_{args.what}")
    extra = {}
    if args.what == "acting":
        envs = None
        if args.envs:
            try:
                envs = [int(n) for n in args.envs.split(",")]
            except ValueError:
                raise MjxmbrlError(f"--envs takes comma-separated env counts like 1,16,64, got {args.envs!r}") from None
            if min(envs) < 1:
                raise MjxmbrlError(f"--envs must be positive, got {args.envs}")
        if args.steps is not None and args.steps < 1:
            raise MjxmbrlError(f"--steps must be positive, got {args.steps}")
        extra = dict(config=args.config, envs=envs, steps=args.steps, overrides=tuple(args.overrides))
    elif args.config or args.envs or args.steps is not None or args.overrides:
        raise MjxmbrlError("--config, --envs, --steps and config overrides belong to `mjxmbrl bench acting`")
    report = bench(quick=args.quick, out=args.out, **extra)
    print(report)
    return 0


def _cmd_sweep(args) -> int:
    from mjxmbrl.cli.sweep import describe, load_sweep, plan_sweep, run_sweep

    plan = plan_sweep(load_sweep(args.sweep_file), args.config, list(args.overrides), seed=args.seed)
    print(describe(plan), flush=True)
    if not args.dry_run:
        run_sweep(plan)
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjxmbrl", description="Model-based RL with planning on MuJoCo MJX.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train an agent: mjxmbrl train [CONFIG.yaml] [section.key=value ...]")
    p.add_argument("config", nargs="?", help="YAML config (defaults when omitted)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.seed=3 env.num_envs=16")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its latest checkpoint")
    p.add_argument("--stop-after", type=int, metavar="ENV_STEPS", help="checkpoint and stop at the first chunk boundary past ENV_STEPS")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a run's policy: mjxmbrl eval RUN_DIR [planner.key=value ...] [--episodes N]")
    p.add_argument("run_dir")
    p.add_argument("overrides", nargs="*", help="a planning agent with another planner, e.g. planner.num_samples=1000 "
                   "(only planner.*; writes eval-planner-<overrides>.json, not eval.json)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-index", type=int, default=None, help="multi-seed run: evaluate only seed train.seed + INDEX (default: every seed)")
    p.add_argument("--video", action="store_true", help="also write RUN_DIR/videos/eval-<env_steps>.mp4 (and log it to W&B)")
    p.add_argument("--video-episodes", type=int, default=1, help="episodes in the video (default 1)")
    p.add_argument("--width", type=int, default=320, help="video width in pixels (default 320)")
    p.add_argument("--height", type=int, default=240, help="video height in pixels (default 240)")
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("plan", help="MPC without learning: mjxmbrl plan CONFIG.yaml [section.key=value ...] [--episodes M]")
    p.add_argument("config", nargs="?", help="YAML config with env, model and planner sections")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. planner.num_samples=128")
    p.add_argument("--episodes", type=int, default=10, help="episodes, run in parallel (default 10)")
    p.add_argument("--out", help="output directory (default <log.runs_dir>/<timestamp>-plan-<env>-<planner>-<model>)")
    p.set_defaults(fn=_cmd_plan)

    p = sub.add_parser("model-eval", help="train every model type on the same episodes; open-loop error table")
    p.add_argument("run_dir", nargs="?", help="a run directory: its env and trained policy collect the data")
    p.add_argument("--env", help="an env name instead of a run directory (random-action data only)")
    p.add_argument("--action-repeat", type=int, default=1, help="with --env: the model step spans this many control steps")
    p.add_argument("--models", default="mlp,gru,ensemble,rssm", help="comma-separated: mlp,gru,ensemble,rssm")
    p.add_argument("--settings", help="YAML {model: {key: value}} overriding model configs, e.g. configs/model_eval/cpu.yaml")
    p.add_argument("--updates", type=int, help="gradient updates per model (default 3000)")
    p.add_argument("--transitions", type=int, help="agent steps per split, train and held-out (default 25000, whole episodes)")
    p.add_argument("--policy-fraction", type=float, help="share of episodes from the run's policy, the rest random (default 0.5)")
    p.add_argument("--stride", type=int, help="held-out start states every N steps (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output directory (default RUN_DIR/model_eval or runs/model_eval-ENV)")
    p.set_defaults(fn=_cmd_model_eval)

    p = sub.add_parser("list", help="list registered envs, agents, models, planners, experiments or shipped configs")
    p.add_argument("what", choices=["envs", "agents", "models", "planners", "experiments", "configs"])
    p.set_defaults(fn=_cmd_list)

    p = sub.add_parser("plot", help="learning curves of runs grouped by config: mean over seeds with a band")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--metric", default="eval/return", help="metric to plot (default eval/return)")
    p.add_argument("--band", default="ci95", choices=["ci95", "std"], help="band over seeds: Student-t 95%% CI (default) or std")
    p.add_argument("--out", default="learning_curves.png")
    p.set_defaults(fn=_cmd_plot)

    p = sub.add_parser("reproduce", help="run a paper experiment and compare with the paper: mjxmbrl reproduce NAME [--budget smoke|small|paper]")
    p.add_argument("name", help="experiment name (mjxmbrl list experiments)")
    p.add_argument(
        "overrides", nargs="*",
        help="dotted config overrides for every run, after the budget's and the cell's, e.g. env.impl=warp log.wandb=online",
    )
    p.add_argument("--budget", default="smoke", help="smoke | small | paper (default smoke)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the budget's)")
    p.add_argument("--out", default=None, help="output directory (default runs/reproduce/NAME-BUDGET)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at a time, in worker processes (CPU only; default 1)")
    p.add_argument("--report-only", action="store_true", help="train nothing: write results.md/png from the runs already finished in --out")
    p.add_argument(
        "--merge", default=None, metavar="RESULTS_JSON",
        help="an earlier results.json of this experiment and budget: its seeds whose runs are not in --out join the report",
    )
    p.add_argument(
        "--vmap-seeds", action="store_true",
        help="train each cell's seeds together in one vmapped program (one run directory per cell, train.num_seeds=S)",
    )
    p.add_argument(
        "--cells", default=None, metavar="PATTERN[,PATTERN...]",
        help="only the cells whose id matches one of these glob patterns, e.g. 'svg-h5-*' or '*-reacher_easy' (default: all)",
    )
    p.add_argument(
        "--order", default="cell", metavar="cell|seed|task",
        help="which runs train first: cell (each cell's seeds in turn, default), seed (every cell's seed 0 first), "
        "task (every run of one task before the next)",
    )
    p.set_defaults(fn=_cmd_reproduce)

    p = sub.add_parser("bench", help="throughput benchmarks; figures go to docs/")
    p.add_argument("what", choices=["sac", "svg", "models", "planners", "scaling", "seeds", "memory", "acting", "gpu"])
    p.add_argument("overrides", nargs="*", help="acting: dotted overrides of the config, e.g. planner.horizon=64")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    p.add_argument("--out", default=None, help="markdown file to append the results to (gpu: a directory, default runs/bench/gpu)")
    p.add_argument("--config", default=None, help="acting: the agent's config (default configs/byravan/cartpole_swingup_mpc_mpo_bc.yaml)")
    p.add_argument("--envs", default=None, help="acting: comma-separated numbers of parallel envs (default 1,16,64 on a CPU, 1,256,2048 otherwise)")
    p.add_argument("--steps", type=int, default=None, help="acting: vectorised steps per timed call while planning (the policy runs 10x as many)")
    from mjxmbrl.cli.bench_gpu import add_gpu_arguments

    add_gpu_arguments(p)
    p.set_defaults(fn=_cmd_bench)

    p = sub.add_parser("sweep", help="run a W&B sweep file locally: mjxmbrl sweep SWEEP.yaml [--config BASE.yaml] [--dry-run]")
    p.add_argument("sweep_file", help="W&B sweep YAML (method grid or random; parameters keyed by section.key)")
    p.add_argument("overrides", nargs="*", help="dotted overrides of the base config for every trial, e.g. train.total_env_steps=20000")
    p.add_argument("--config", help="base config (default: the .yaml after `train` in the sweep's command, else the defaults)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random search's draws (default 0)")
    p.add_argument("--dry-run", action="store_true", help="list the trials and exit without running")
    p.set_defaults(fn=_cmd_sweep)
    return parser


def _dashed_overrides(parser: argparse.ArgumentParser, args, extra: List[str]) -> None:
    """W&B agents call `mjxmbrl train CONFIG --agent.actor_lr=0.001 ...`: such arguments become overrides.

    Plain `section.key=value` arguments after an option (`mjxmbrl bench acting --config C planner.horizon=64`)
    are left over by argparse, which fills a positional list once: they are overrides of any command that takes some.
    """
    from mjxmbrl.cli.sweep import as_override

    def take(arg: str) -> Optional[str]:
        if args.command in ("train", "sweep"):
            return as_override(arg)
        return as_override(arg) if hasattr(args, "overrides") and not arg.startswith("-") else None

    taken = [take(a) for a in extra]
    unknown = [a for a, o in zip(extra, taken) if o is None]
    if unknown:
        hint = " (overrides look like section.key=value or --section.key=value)" if args.command in ("train", "sweep") else ""
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    args.overrides = list(args.overrides) + taken


def main(argv: Optional[List[str]] = None) -> int:
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _dashed_overrides(parser, args, extra)
    try:
        return args.fn(args)
    except MjxmbrlError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 1)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt as err:
        if str(err).startswith("signal"):  # reproduce's SIGTERM (cli/reproduce.py)
            print(f"error: stopped by {err}; the runs in flight were stopped, finished runs and checkpoints are kept: "
                  "the same command continues", file=sys.stderr)
        else:
            print("error: aborted by a second Ctrl-C; the last complete checkpoint is kept", file=sys.stderr)
        return 130

