"""Collects the reference poses of the humanoid's go-to-target-pose task (envs/humanoid_tasks.py) from walking humanoids.

Byravan et al. 2022 (arXiv:2110.03363, App. A.2) draw the OP3's target poses from the CMU motion-capture
database, which cannot be had offline. Ours come, as the ant's (cli/ant_poses.py), from our own walking
experts: MPC with the true simulator (CEM, `configs/plan/humanoid_walk_forward_cem.yaml` with EXPERT_OVERRIDES) on
`HumanoidWalkForward` and `HumanoidWalkBackward`. This module plays it, drops each episode's first `--skip`
steps, and keeps every `--every`-th pose of a live episode that is upright (torso above `--min-height` m)
with a foot on the floor (lowest foot body under `--max-foot` m; 0.027 standing):

    python -m mjxmbrl.cli.humanoid_poses --out mjxmbrl/envs/data/humanoid_gttp_poses.npz

writes `poses` [N, 47] (torso height, heading-free torso quaternion w x y z, 21 joint angles, 21 joint
velocities: Eq. 12's reference) and the command and settings that made them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mjxmbrl.cli.ant_poses import play_expert, save_poses

DEFAULT_OUT = Path(__file__).parents[1] / "envs" / "data" / "humanoid_gttp_poses.npz"
POSE_SIZE = 47
FEET = ("left_foot", "right_foot")
# The expert: the CPU-sized CEM file (3 x 64, H = 30) cut to 3 x 32 samples and H = 20 (0.5 s) to collect in
# about 20 minutes on a 2-core CPU; it stumbles the humanoid along for 0.4-1.4 s before it falls.
EXPERT_OVERRIDES = ("planner.num_samples=32", "planner.horizon=20")


def collect(task: str, episodes: int, steps: int, seed: int, overrides: list) -> tuple:
    """(qpos [T, M, 28], qvel [T, M, 27], lowest foot height [T, M], done [T, M]) of the CEM expert on `task`."""
    from mjxmbrl.envs.byravan_humanoid import HumanoidCorridor

    mj_model = HumanoidCorridor(1.0).mj_model
    feet = np.array([mj_model.body(name).id for name in FEET])
    (qpos, qvel, foot, done), returns = play_expert(
        "configs/plan/humanoid_walk_forward_cem.yaml", [f"env.name={task}", f"env.episode_length={steps}", *overrides],
        episodes, seed, lambda s: (s.data.qpos, s.data.qvel, s.data.xpos[..., feet, 2].min(axis=-1), s.done))
    print(f"{task}: returns {np.round(returns, 1).tolist()}", file=sys.stderr)
    return tuple(np.asarray(x) for x in (qpos, qvel, foot, done))


def to_poses(qpos: np.ndarray, qvel: np.ndarray, foot: np.ndarray, done: np.ndarray, skip: int, every: int,
             min_height: float, max_foot: float) -> np.ndarray:
    """[T, M, ...] traces -> poses [N, 47] of live, upright steps skip, skip + every, ... with a foot down."""
    from mjxmbrl.envs.ant_gttp import remove_yaw

    def rows(x):
        return x[skip::every].reshape(-1, *x.shape[2:])

    qpos, qvel, foot, done = rows(qpos), rows(qvel), rows(foot), rows(done)
    keep = (done < 0.5) & (qpos[:, 2] > min_height) & (foot < max_foot)
    qpos, qvel = qpos[keep], qvel[keep]
    return np.concatenate([qpos[:, 2:3], remove_yaw(qpos[:, 3:7]), qpos[:, 7:], qvel[:, 6:]], -1).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mjxmbrl.cli.humanoid_poses", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--episodes", type=int, default=3, help="episodes per walking task, in parallel")
    parser.add_argument("--steps", type=int, default=80, help="control steps per episode")
    parser.add_argument("--skip", type=int, default=10, help="steps dropped at each episode's start")
    parser.add_argument("--every", type=int, default=1, help="keep every k-th step")
    parser.add_argument("--min-height", type=float, default=1.0, help="m, torso height (1.285 standing)")
    parser.add_argument("--max-foot", type=float, default=0.08, help="m, lowest foot body (0.027 standing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace", default=None, help="also save the raw traces here (.npz), to filter them again")
    parser.add_argument("overrides", nargs="*", default=list(EXPERT_OVERRIDES),
                        help=f"overrides of the CEM expert's config (default: {' '.join(EXPERT_OVERRIDES)})")
    args = parser.parse_args(argv)
    if args.skip >= args.steps or min(args.episodes, args.steps, args.every) <= 0:
        print("error: need episodes, steps, every > 0 and skip < steps", file=sys.stderr)
        return 2
    tic = time.perf_counter()
    poses, traces = [], {}
    for task in ("HumanoidWalkForward", "HumanoidWalkBackward"):
        trace = collect(task, args.episodes, args.steps, args.seed, args.overrides)
        traces.update({f"{task}/{k}": v for k, v in zip(("qpos", "qvel", "foot", "done"), trace)})
        poses.append(to_poses(*trace, args.skip, args.every, args.min_height, args.max_foot))
    poses = np.concatenate(poses)
    if args.trace:
        np.savez_compressed(args.trace, **traces)
    if len(poses) == 0:
        print("error: no upright pose with a foot on the floor; lower --min-height or raise --max-foot", file=sys.stderr)
        return 1
    save_poses(args.out, poses, "python -m mjxmbrl.cli.humanoid_poses",
               {k: v for k, v in vars(args).items() if k not in ("out", "trace")},
               "CEM-MPC with the true simulator (configs/plan/humanoid_walk_forward_cem.yaml and the overrides) on "
               "HumanoidWalkForward and HumanoidWalkBackward", tic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
