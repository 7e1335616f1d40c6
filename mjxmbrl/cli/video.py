"""Videos of deterministic evaluation episodes: MJX rollout on device, MuJoCo rendering on host.

`EvalVideo` runs M evaluation episodes of a policy in one jitted rollout
(the evaluation itself) that keeps each agent step's simulator state (qpos,
qvel, mocap pose), cuts every episode at its first `done`, renders one frame
per agent step (after the action repeat) with `mujoco.Renderer` on the task's
`mj_model`, and writes one mp4 at 1 / (control dt x action repeat) frames per
second.

Headless OpenGL: MuJoCo picks its GL backend from `MUJOCO_GL` when `mujoco`
is first imported, so this module (and `mjxmbrl.cli`) default it to `egl`
before importing anything that imports mujoco. EGL works on NVIDIA GPUs and,
through Mesa's software renderer (Debian `libegl-mesa0` + `libgl1-mesa-dri`),
on CPU-only machines; `MUJOCO_GL=osmesa` needs Debian's `libosmesa6`.
mp4 encoding uses the ffmpeg binary shipped by the pip package
`imageio-ffmpeg`, so no system ffmpeg is needed.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import sys
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Tuple

import numpy as np

from mjxmbrl.types import MjxmbrlError

VIDEO_DIR = "videos"
DEFAULT_WIDTH = 320
DEFAULT_HEIGHT = 240


class VideoError(MjxmbrlError):
    """A video cannot be made: no MuJoCo model, no GL backend, no ffmpeg, bad sizes."""


class SimTrajectory(NamedTuple):
    """Simulator states after every agent step of M parallel episodes (numpy on host).

    qpos [T, M, nq], qvel [T, M, nv], mocap_pos [T, M, nmocap, 3],
    mocap_quat [T, M, nmocap, 4], done [T, M] (1 from an episode's last step
    on), returns [M] (undiscounted, rewards after `done` ignored).
    """

    qpos: np.ndarray
    qvel: np.ndarray
    mocap_pos: np.ndarray
    mocap_quat: np.ndarray
    done: np.ndarray
    returns: np.ndarray


# ---------------------------------------------------------------------------
# the task's MuJoCo model


def check_renderable(env_name: str) -> None:
    """Raises VideoError for tasks without a MuJoCo model (cheap: reads the static registry)."""
    from mjxmbrl.envs.registry import get_spec

    spec = get_spec(env_name)
    if spec.family == "toy":
        raise VideoError(f"{env_name} has no MuJoCo model to render")


def mj_model_of(env: Any) -> Any:
    """The `mujoco.MjModel` behind a VectorEnv or an env from `make_env`.

    Playground tasks expose `mj_model`; Brax tasks keep it in `sys.mj_model`.
    """
    base = getattr(env, "env", env) if hasattr(env, "num_envs") else env
    spec = getattr(base, "spec", None)
    name = spec.name if spec is not None else type(base).__name__
    if spec is not None:
        check_renderable(spec.name)
    inner = getattr(base, "unwrapped", base)
    for owner in (inner, getattr(inner, "sys", None)):
        model = getattr(owner, "mj_model", None) if owner is not None else None
        if model is not None:
            return model
    raise VideoError(f"{name} has no MuJoCo model to render")


# ---------------------------------------------------------------------------
# device rollout


def _sim_fields(data: Any):
    """(qpos, qvel, mocap_pos, mocap_quat) of one batched simulator state.

    MJX data (Playground, Brax "mjx") has qpos/qvel; Brax "generalized" states
    have q/qd in the same layout. States without mocap bodies give [N, 0, k].
    """
    import jax.numpy as jnp

    qpos = getattr(data, "qpos", None)
    qvel = getattr(data, "qvel", None)
    if qpos is None:
        qpos, qvel = data.q, data.qd
    n = qpos.shape[0]
    mocap_pos = getattr(data, "mocap_pos", None)
    mocap_quat = getattr(data, "mocap_quat", None)
    if mocap_pos is None or mocap_quat is None:
        mocap_pos, mocap_quat = jnp.zeros((n, 0, 3)), jnp.zeros((n, 0, 4))
    return qpos, qvel, mocap_pos, mocap_quat


def make_video_rollout(env: Any, actor: Tuple[Callable, Callable]) -> Callable:
    """Builds `rollout(key, params) -> SimTrajectory` (device arrays), jitted.

    The episodes of the one episode runner (mjxmbrl/rollout.py) for the actor
    `(act, init_carry)` on `env` (M envs, no auto-reset; the wrapper freezes an
    env once it is done): the same reset keys and actions as evaluation,
    recording the simulator state and `done` after every agent step.
    """
    from mjxmbrl.rollout import make_episode_runner

    run = make_episode_runner(env, *actor, record=lambda state: (*_sim_fields(state.data), state.done))

    def rollout(key, params) -> SimTrajectory:
        result = run(key, params)  # already jitted
        return SimTrajectory(*result.trace, result.returns)

    return rollout


def episode_frames(done: np.ndarray) -> np.ndarray:
    """Frames per episode: agent steps up to and including the first done, [T, M] -> [M] int.

    E.g. done[:, m] = [0, 0, 1, 1] -> 3; never done -> T.
    """
    done = np.asarray(done) > 0
    num_steps = done.shape[0]
    first = np.where(done.any(axis=0), done.argmax(axis=0) + 1, num_steps)
    return first.astype(np.int64)


# ---------------------------------------------------------------------------
# host rendering and encoding


def _make_renderer(mj_model: Any, width: int, height: int):
    from mjxmbrl.envs.pixels import open_renderer

    return open_renderer(mj_model, height, width, error=VideoError)


def render_frames(
    mj_model: Any,
    traj: SimTrajectory,
    episodes: int,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    camera: Optional[int | str] = None,
) -> np.ndarray:
    """Renders the first `episodes` episodes of `traj` one after another.

    Each frame sets qpos, qvel (and mocap poses) of an MjData, runs
    mj_forward, and renders from `camera` (default: the model's first camera,
    the free camera if it has none). Returns uint8 [F, height, width, 3],
    F = sum of episode_frames(traj.done)[:episodes].
    """
    import mujoco

    model, renderer = _make_renderer(mj_model, width, height)
    if camera is None:
        camera = 0 if model.ncam > 0 else -1
    data = mujoco.MjData(model)
    lengths = episode_frames(traj.done)
    frames = []
    try:
        for m in range(episodes):
            for t in range(int(lengths[m])):
                data.qpos[:] = traj.qpos[t, m]
                data.qvel[:] = traj.qvel[t, m]
                if model.nmocap:
                    data.mocap_pos[:] = traj.mocap_pos[t, m]
                    data.mocap_quat[:] = traj.mocap_quat[t, m]
                mujoco.mj_forward(model, data)
                renderer.update_scene(data, camera=camera)
                frames.append(renderer.render().copy())
    finally:
        renderer.close()
    return np.stack(frames).astype(np.uint8)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Encodes uint8 RGB frames [F, H, W, 3] as H.264 mp4 at `fps`; the file appears atomically.

    Uses the ffmpeg binary of the pip package imageio-ffmpeg; yuv420p (what
    players expect) for even sizes, yuv444p for odd ones, never rescaled.
    """
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoError("mp4 encoding needs the imageio-ffmpeg package: pip install imageio-ffmpeg") from None
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise VideoError(f"frames must be uint8 [F>0, H, W, 3], got shape {frames.shape}")
    height, width = frames.shape[1:3]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # keeps the .mp4 suffix ffmpeg picks the format from
    even = width % 2 == 0 and height % 2 == 0
    try:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (width, height), fps=float(fps), codec="libx264", pix_fmt_out="yuv420p" if even else "yuv444p",
            macro_block_size=1, ffmpeg_log_level="error", output_params=["-movflags", "+faststart"],
        )
        with warnings.catch_warnings():
            # JAX warns on every fork; this one only execs ffmpeg, so it cannot deadlock.
            warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
            writer.send(None)  # starts ffmpeg
        for frame in frames:
            writer.send(frame)
        writer.close()
        os.replace(tmp, path)
    except Exception as err:
        tmp.unlink(missing_ok=True)
        raise VideoError(f"cannot write {path}: {err.__class__.__name__}: {' '.join(str(err).split())[:200]}") from None
    return path


def read_mp4(path: str | Path) -> tuple[np.ndarray, float]:
    """Decodes an mp4 -> (uint8 frames [F, H, W, 3], fps), with imageio-ffmpeg's ffmpeg."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in reader]
    return np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8), float(meta["fps"])


# ---------------------------------------------------------------------------
# W&B


def log_video_to_wandb(run_dir: Path, log_cfg: Any, video: Path, env_steps: int) -> bool:
    """Best effort: logs `video` as `eval/video` to the run's W&B run (resumed by id when known).

    Does nothing for `log.wandb: disabled`. Any W&B failure prints one
    warning and returns False; it never raises.
    """
    if log_cfg.wandb == "disabled":
        return False
    from mjxmbrl.run.logging import WandbLogger

    resume_id = None
    try:
        from mjxmbrl.run.checkpoints import Checkpointer

        ckpt_dir = Path(run_dir) / "checkpoints"
        if ckpt_dir.is_dir():
            with Checkpointer(ckpt_dir) as checkpoints:
                resume_id = checkpoints.read_metadata().get("wandb_id")
    except Exception:
        resume_id = None  # no checkpoint or unreadable metadata: a new W&B run in the same project
    logger = WandbLogger(
        log_cfg.wandb,
        project=log_cfg.wandb_project,
        entity=log_cfg.wandb_entity,
        run_dir=run_dir,
        run_name=Path(run_dir).name,
        resume_id=resume_id,
    )
    if not logger.enabled:
        return False  # WandbLogger has printed its one warning
    run, logger.enabled = logger._run, False  # this function logs and finishes the run itself
    errors = []
    try:
        import wandb

        # No explicit step: a resumed run only accepts steps past its last one.
        run.log({"eval/video": wandb.Video(str(video), format="mp4"), "video/env_steps": int(env_steps)})
    except (Exception, SystemExit) as err:
        errors.append(err)
    try:
        run.finish()
    except (Exception, SystemExit) as err:
        errors.append(err)
    if errors:
        err = errors[0]
        text = " ".join(str(err).split())[:160] or err.__class__.__name__
        print(f"warning: W&B video upload failed ({err.__class__.__name__}: {text}); the video is still at {video}",
              file=sys.stderr, flush=True)
    return not errors


# ---------------------------------------------------------------------------
# everything together


class EvalVideo:
    """Evaluation that films its episodes: a drop-in for an episode runner's `run(key, params)`.

    `evaluate(key, params)` runs the same jitted episodes as
    `rollout.make_episode_runner(env, *actor)` (same reset keys and actions,
    no auto-reset) and returns a SimTrajectory, whose
    `returns` [episodes] are the evaluation's; the first call's trajectory is
    kept for the video. `write(env_steps)` renders its first `video_episodes`
    episodes to RUN_DIR/videos/eval-<env_steps>.mp4, logs it to W&B when the
    run's config has W&B on, and returns {"video", "video_episodes",
    "video_frames", "video_fps", "video_size"}.

    Usage:
      rec = EvalVideo(run_dir, cfg, policy_actor(agent.policy, False), episodes=10, video_episodes=2)
      returns = rec.evaluate(jax.random.PRNGKey(0), (params, obs_stats)).returns
      info = rec.write(env_steps)
    """

    def __init__(
        self,
        run_dir: Path,
        cfg: Any,
        actor: Tuple[Callable, Callable],
        episodes: int = 10,
        video_episodes: int = 1,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        base_env: Any = None,
        camera: Optional[int | str] = None,
    ):
        from mjxmbrl.envs import VectorEnv, make_env

        check_renderable(cfg.env.name)
        if not 0 < video_episodes <= episodes:
            raise VideoError(f"--video-episodes must be in [1, --episodes={episodes}], got {video_episodes}")
        if width <= 0 or height <= 0:
            raise VideoError(f"--width and --height must be positive, got {width}x{height}")
        self.run_dir, self.log_cfg = Path(run_dir), cfg.log
        self.video_episodes, self.width, self.height, self.camera = int(video_episodes), int(width), int(height), camera
        if base_env is None:  # an unbatched env from make_env; building one takes seconds, so callers may pass theirs
            from mjxmbrl.envs.pixels import pixel_options

            base_env = make_env(cfg.env.name, impl=cfg.env.impl, episode_length=cfg.env.episode_length, **pixel_options(cfg.env))
        env = VectorEnv(base_env, episodes, base_env.spec.episode_length, cfg.env.action_repeat, auto_reset=False)
        self.mj_model = mj_model_of(env)
        self.fps = 1.0 / (env.dt * env.action_repeat)
        self._rollout = make_video_rollout(env, actor)
        self.trajectory: Optional[SimTrajectory] = None

    def evaluate(self, key: Any, params: Any) -> SimTrajectory:
        import jax

        out = jax.device_get(self._rollout(key, params))
        traj = SimTrajectory(*(np.asarray(x) for x in out))
        if self.trajectory is None:
            self.trajectory = traj
        return traj

    def write(self, env_steps: int, tag: str = "") -> dict:
        if self.trajectory is None:
            raise VideoError("EvalVideo.write needs an evaluate() call first")
        frames = render_frames(self.mj_model, self.trajectory, self.video_episodes, self.width, self.height, self.camera)
        path = write_mp4(self.run_dir / VIDEO_DIR / f"eval-{int(env_steps)}{tag}.mp4", frames, self.fps)
        log_video_to_wandb(self.run_dir, self.log_cfg, path, env_steps)
        return {
            "video": str(path),
            "video_episodes": self.video_episodes,
            "video_frames": int(len(frames)),
            "video_fps": float(self.fps),
            "video_size": [self.width, self.height],
        }
