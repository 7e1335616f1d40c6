"""`mjxmbrl eval --video`: frames from MJX rollouts, rendered by MuJoCo, encoded as mp4.

The rendering test runs the CLI in a subprocess: MuJoCo picks its GL backend
(MUJOCO_GL, `egl` by default: Mesa's software EGL on a CPU) when it is first
imported, which in this pytest process may already have happened elsewhere.
The run directory is built by hand from a freshly initialised policy, so
nothing is trained.
"""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from mjxmbrl.cli.video import episode_frames, log_video_to_wandb, read_mp4, write_mp4
from mjxmbrl.config import load_config, save_config
from mjxmbrl.envs import init_stats
from mjxmbrl.envs.registry import get_spec
from mjxmbrl.learners.sac import make_sac
from mjxmbrl.run.checkpoints import Checkpointer, export_policy

ROOT = Path(__file__).resolve().parents[1]


def make_run_dir(run: Path, env: str, env_steps: int, *overrides: str) -> Path:
    """config.yaml + policy/ of an untrained SAC policy: what `mjxmbrl eval` reads.

    The actor's parameters are random numbers in the shapes `learner.init`
    would give (jax.eval_shape: running the init on a CPU costs seconds).
    """
    cfg = load_config(None, [f"env.name={env}", "agent.hidden_sizes=[16,16]", "log.wandb=disabled", *overrides])
    spec = get_spec(env)
    learner = make_sac(cfg.agent, spec.obs_size, spec.action_size, cfg.train.total_env_steps)
    shapes = learner.policy_params(jax.eval_shape(learner.init, jax.random.PRNGKey(0)))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
    run.mkdir(parents=True)
    save_config(cfg, run / "config.yaml")
    export_policy(run / "policy", params, {"obs_stats": init_stats(spec.obs_size)}, {"env_steps": env_steps})
    return run


def files_under(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_episode_frames_cut_at_the_first_done():
    # T=4 agent steps, 3 episodes: done at step 3 (then frozen at 1), never done, done at step 1.
    done = np.array([[0, 0, 1], [0, 0, 1], [1, 0, 1], [1, 0, 1]], np.float32)
    np.testing.assert_array_equal(episode_frames(done), [3, 4, 1])


@pytest.mark.parametrize("height, width", [(32, 48), (25, 33)])  # even sizes: yuv420p; odd: yuv444p, not rescaled
def test_write_mp4_round_trip(tmp_path, height, width):
    frames = np.zeros((7, height, width, 3), np.uint8)
    frames[:, :, : width // 2, 0] = 255  # left half red
    frames[3:, :, width // 2 :, 2] = 255  # right half blue from frame 3 on
    path = write_mp4(tmp_path / "videos" / "v.mp4", frames, fps=12.5)
    assert [p.name for p in path.parent.iterdir()] == ["v.mp4"]  # no temporary file left
    decoded, fps = read_mp4(path)
    assert decoded.shape == (7, height, width, 3)
    assert fps == pytest.approx(12.5)
    assert np.abs(decoded.astype(int) - frames).mean() < 12  # lossy H.264, but the picture survives


def test_video_goes_to_offline_wandb_and_a_wandb_failure_only_warns(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    video = write_mp4(run / "videos" / "eval-7.mp4", np.full((4, 32, 32, 3), 128, np.uint8), fps=10.0)
    log_cfg = types.SimpleNamespace(wandb="offline", wandb_project="mjxmbrl-test", wandb_entity=None)
    monkeypatch.setenv("WANDB_MODE", "offline")
    # The training run's W&B id (kept in the checkpoint metadata) is resumed, so the video joins that run.
    with Checkpointer(run / "checkpoints") as checkpoints:
        checkpoints.save(7, {"x": np.zeros(2, np.float32)}, {"env_steps": 7, "wandb_id": "trainrun7"})
    assert log_video_to_wandb(run, log_cfg, video, 7)
    media = list((run / "wandb").glob("offline-run-*-trainrun7/files/media/videos/**/*.mp4"))
    assert len(media) == 1 and media[0].read_bytes() == video.read_bytes()
    capsys.readouterr()

    import wandb

    def broken_video(*args, **kwargs):
        raise RuntimeError("video upload broke")

    monkeypatch.setattr(wandb, "Video", broken_video)
    assert not log_video_to_wandb(run, log_cfg, video, 7)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "video upload broke" in warnings[0], warnings
    assert video.is_file()
    assert not log_video_to_wandb(run, types.SimpleNamespace(wandb="disabled"), video, 7)


def test_eval_video_renders_pendulum_episodes(tmp_path):
    # PendulumSwingup: the DM Control task that compiles fastest. 40 control steps with action repeat 4:
    # 10 agent steps, so 10 frames per episode at 1 / (0.02 s x 4) = 12.5 fps.
    run = make_run_dir(tmp_path / "run", "PendulumSwingup", 1234, "env.episode_length=40", "env.action_repeat=4")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "mjxmbrl.cli", "eval", str(run), "--episodes", "3", "--video", "--video-episodes", "2",
         "--width", "96", "--height", "64"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = run / "videos" / "eval-1234.mp4"
    summary = json.loads((run / "eval.json").read_text())
    assert summary["video"] == str(path)
    assert (summary["video_episodes"], summary["video_frames"], summary["video_size"]) == (2, 20, [96, 64])
    assert summary["video_fps"] == pytest.approx(12.5)
    assert len(summary["returns"]) == 3 and np.all(np.isfinite(summary["returns"]))

    frames, fps = read_mp4(path)
    assert frames.shape == (20, 64, 96, 3)
    assert fps == pytest.approx(12.5)
    assert frames.std() > 10  # a rendered scene, not a blank image
    # Each episode starts from its own random initial state, so episode 2's first frame differs from episode 1's.
    assert np.abs(frames[0].astype(int) - frames[10]).mean() > 0.5


def test_eval_video_on_the_toy_task_is_one_clear_error(tmp_path, capsys):
    from mjxmbrl.cli import main

    run = make_run_dir(tmp_path / "run", "toy_reach", 0)
    before = files_under(run)
    assert main(["eval", str(run), "--video"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: toy_reach has no MuJoCo model to render"]
    assert files_under(run) == before  # no videos/, no eval.json


def test_eval_video_rejects_more_video_episodes_than_episodes(tmp_path, capsys):
    from mjxmbrl.cli import main

    run = make_run_dir(tmp_path / "run", "CartpoleSwingup", 0)
    before = files_under(run)
    assert main(["eval", str(run), "--episodes", "2", "--video", "--video-episodes", "3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --video-episodes must be in [1, --episodes=2]"), err
    assert files_under(run) == before
