"""Command line: `mjxmbrl train | eval | list | plot | bench`.

Every user error is a `MjxmbrlError`: printed as one `error:` line, exit code 1
(130 for an interrupted run whose checkpoint was saved). Heavy imports (jax,
MJX) happen inside the commands so `--help` and bad input answer fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

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
    from mjxmbrl.runner import train

    run_dir = train(cfg, resume_dir=args.resume, stop_after=args.stop_after)
    summary = json.loads((run_dir / "summary.json").read_text())
    print(
        f"done: {run_dir} | env steps {summary['env_steps']} | final eval {summary['final_eval_return']} "
        f"| best eval {summary['best_eval_return']} | {summary['wall_time_s']:.0f}s"
    )
    return 0


def _cmd_eval(args) -> int:
    from mjxmbrl.policy_eval import evaluate_run

    result = evaluate_run(Path(args.run_dir), episodes=args.episodes, seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_list(args) -> int:
    if args.what == "envs":
        from mjxmbrl.envs.registry import list_env_specs

        print(f"{'name':<24} {'family':<10} {'obs':>5} {'act':>4} {'ctrl_dt':>8} {'ep_len':>7} {'terminates':>10}")
        for s in list_env_specs():
            print(
                f"{s.name:<24} {s.family:<10} {s.obs_size:>5} {s.action_size:>4} {s.ctrl_dt:>8.4g} {s.episode_length:>7} {str(s.has_termination):>10}"
            )
    else:
        from mjxmbrl.config import AGENT_CONFIGS

        for name, cls in AGENT_CONFIGS.items():
            print(f"{name:<10} {(cls.__doc__ or '').strip().splitlines()[0]}")
    return 0


def _cmd_plot(args) -> int:
    from mjxmbrl.plotting import plot_runs

    for d in args.run_dirs:
        if not (Path(d) / "metrics.jsonl").is_file():
            raise MjxmbrlError(f"{d} has no metrics.jsonl")
    out = plot_runs([Path(d) for d in args.run_dirs], Path(args.out))
    print(out)
    return 0


def _cmd_bench(args) -> int:
    from mjxmbrl.bench import bench_sac

    report = bench_sac(quick=args.quick, out=args.out)
    print(report)
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

    p = sub.add_parser("eval", help="evaluate a run's policy: mjxmbrl eval RUN_DIR [--episodes N]")
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("list", help="list registered envs or agents")
    p.add_argument("what", choices=["envs", "agents"])
    p.set_defaults(fn=_cmd_list)

    p = sub.add_parser("plot", help="overlay learning curves of runs")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default="learning_curves.png")
    p.set_defaults(fn=_cmd_plot)

    p = sub.add_parser("bench", help="throughput benchmarks; figures go to docs/")
    p.add_argument("what", choices=["sac"])
    p.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    p.add_argument("--out", default=None, help="markdown file to append the results to")
    p.set_defaults(fn=_cmd_bench)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.fn(args)
    except MjxmbrlError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 1)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("error: aborted by a second Ctrl-C; the last complete checkpoint is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
