"""Collects the reference poses of the ant's go-to-target-pose task (envs/ant_gttp.py) from walking ants.

Byravan et al. 2022 (arXiv:2110.03363, App. A.2) draw the ant's target poses from expert policies trained
on DM Control's go-to-target task. Our walking experts are MPC with the true simulator (CEM, H = 30, the
`configs/plan/ant_walk_forward_cem.yaml` planner with 3 iterations of 21 samples), which walks the corridor
ant at about 6 m/s forward and backward (docs/results/byravan-table1-ground-truth-small). This module plays
it on `AntWalkForward` and `AntWalkBackward`, drops each episode's first `--skip` steps (the start from
standing), keeps every `--every`-th pose with a foot on the floor (lowest foot centre under `--max-foot`
m: a pose the ant can hold, not mid-leap) and writes them without their position and heading:

    python -m mjxmbrl.cli.ant_poses --out mjxmbrl/envs/data/ant_gttp_poses.npz

writes `poses` [N, 13] (torso height, heading-free torso quaternion w x y z, 8 joint angles) and the
command and settings that made them. The shipped file was made with the defaults below (when this module
was `mjxmbrl.envs.ant_poses`, the name its metadata records).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).parents[1] / "envs" / "data" / "ant_gttp_poses.npz"
POSE_SIZE = 13


def play_expert(config_path: str, overrides: list, episodes: int, seed: int, record) -> tuple:
    """(record(state) stacked over steps [T, episodes, ...], returns [episodes]) of `mjxmbrl plan`'s agent."""
    import jax

    from mjxmbrl.agents import EVAL
    from mjxmbrl.cli.plan import build_planning
    from mjxmbrl.config import load_config
    from mjxmbrl.rollout import agent_actor, make_episode_runner

    cfg = load_config(config_path, [*overrides, f"train.seed={seed}"])
    env, agent, params = build_planning(cfg, episodes)
    run = make_episode_runner(env, *agent_actor(agent, EVAL), record=record)
    result = jax.block_until_ready(run(jax.random.PRNGKey(seed), params))
    return result.trace, np.asarray(result.returns)


def collect(task: str, episodes: int, steps: int, seed: int) -> tuple:
    """(qpos [T, M, 15], lowest foot centre height [T, M]) of CEM-MPC with the true simulator on `task`."""
    import mujoco

    from mjxmbrl.envs.byravan_envs import FOOT_GEOMS, ant_xml

    mj_model = mujoco.MjModel.from_xml_string(ant_xml())
    feet = np.array([mj_model.geom(name).id for name in FOOT_GEOMS])
    (qpos, foot), returns = play_expert(
        "configs/plan/ant_walk_forward_cem.yaml",
        [f"env.name={task}", f"env.episode_length={steps}", "planner.num_samples=21"], episodes, seed,
        lambda s: (s.data.qpos, s.data.geom_xpos[..., feet, 2].min(axis=-1)))
    print(f"{task}: returns {np.round(returns, 1).tolist()}", file=sys.stderr)
    return np.asarray(qpos), np.asarray(foot)


def save_poses(out: str, poses: np.ndarray, command: str, settings: dict, expert: str, tic: float) -> None:
    """Writes `poses` and their metadata (command, settings, expert, date, wall time since `tic`) to `out` (.npz)."""
    meta = {"command": command, "settings": settings, "expert": expert, "date": time.strftime("%Y-%m-%d"),
            "wall_time_s": round(time.perf_counter() - tic, 1)}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, poses=poses, meta=json.dumps(meta))
    print(f"{len(poses)} poses -> {path} ({meta['wall_time_s']} s)")


def to_poses(qpos: np.ndarray, foot: np.ndarray, skip: int, every: int, max_foot: float) -> np.ndarray:
    """qpos [T, M, 15], foot [T, M] -> poses [N, 13] (steps skip, skip + every, ... with foot < max_foot)."""
    from mjxmbrl.envs.ant_gttp import remove_yaw

    qpos, foot = qpos[skip::every].reshape(-1, qpos.shape[-1]), foot[skip::every].reshape(-1)
    keep = foot < max_foot
    qpos = qpos[keep]
    return np.concatenate([qpos[:, 2:3], remove_yaw(qpos[:, 3:7]), qpos[:, 7:]], axis=-1).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mjxmbrl.cli.ant_poses", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--episodes", type=int, default=8, help="episodes per walking task, in parallel")
    parser.add_argument("--steps", type=int, default=150, help="control steps per episode")
    parser.add_argument("--skip", type=int, default=25, help="steps dropped at each episode's start")
    parser.add_argument("--every", type=int, default=1, help="keep every k-th step")
    parser.add_argument("--max-foot", type=float, default=0.15, help="m, lowest foot centre (radius 0.08; 0.11 standing)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.skip >= args.steps or min(args.episodes, args.steps, args.every) <= 0:
        print("error: need episodes, steps, every > 0 and skip < steps", file=sys.stderr)
        return 2
    tic = time.perf_counter()
    poses = []
    for task in ("AntWalkForward", "AntWalkBackward"):
        qpos, foot = collect(task, args.episodes, args.steps, args.seed)
        poses.append(to_poses(qpos, foot, args.skip, args.every, args.max_foot))
    poses = np.concatenate(poses)
    if len(poses) == 0:
        print("error: no pose had a foot on the floor; raise --max-foot", file=sys.stderr)
        return 1
    save_poses(args.out, poses, "python -m mjxmbrl.cli.ant_poses", {k: v for k, v in vars(args).items() if k != "out"},
               "CEM-MPC with the true simulator, 3 x 21 samples, H = 30, on AntWalkForward and AntWalkBackward", tic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
