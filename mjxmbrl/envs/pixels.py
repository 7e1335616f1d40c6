"""Pixel observations: the env's observation becomes a rendered RGB frame (PlaNet, Hafner et al. 2019).

`env.pixels: true` wraps the task's env in `PixelEnv`: its observation is the
frame of the current simulator state, `image_size` x `image_size` RGB (64 x 64
as in PlaNet, arXiv:1811.04551, and S V, Jalagam, LeCun, Sobal 2023,
"Gradient-based Planning with World Models", arXiv:2312.17227), quantised to
`bit_depth` bits (5) with PlaNet's preprocessing

    obs = floor(x / 2^(8 - bits)) / 2^bits - 0.5      x in {0, ..., 255}

and flattened in (row, column, channel) order to a float32 vector
[image_size * image_size * 3] with values in [-0.5, 0.5 - 2^-bits]. The env's
observation is deterministic; the uniform dequantisation noise U[0, 2^-bits)
of PlaNet is added by the pixel RSSM's loss (models/rssm.py), not here.
Rewards, termination and the simulator are the wrapped task's, unchanged.

Rendering. Frames are rendered on the host with `mujoco.Renderer` on the
task's `mj_model`, from the state's qpos, qvel (and mocap poses) after
`mj_forward`, as Playground's `render` and our eval videos do, through
`jax.pure_callback` inside the jitted env step (vmap_method "expand_dims":
one callback renders every env of a batch). Camera: the model's camera 0
(DM Control's default render camera, camera_id=0: `fixed` for cartpole,
`side`, which tracks the torso, for walker), the free
camera where a model has none; Playground's `render` defaults to the free
camera, which shows the cartpole small and loses the walker. One GL context
per `PixelEnv`, owned by one worker thread (EGL and OSMesa contexts belong to
the thread that made them current; XLA may call back from any thread).
MuJoCo picks its GL backend from MUJOCO_GL when it is first imported: the CLI
sets `egl` (Mesa's software EGL on a CPU); library users set MUJOCO_GL
themselves before importing mujoco.

Cost. The callback leaves the compiled program once per vectorised step and
renders the envs one after another on the host: on a shared 2-core CPU with
Mesa's software EGL 17-38 ms per 64 x 64 frame under load, 16 ms unloaded
(docs/benchmarks.md, "Pixel observations: render cost"). Under action repeat k the frame is rendered once
per agent step, after the k simulator steps (`VectorEnv` calls
`physics_step` for the sub-steps and `observe` after them), not k times.

The pixel task's `EnvSpec` (`pixel_spec`) has obs_size image_size^2 * 3, no
observation groups and no known reward (`reward_fn` None: the task's known
rewards read proprioceptive observations), so planners must score with the
model's reward (planner.reward=model). `check_pixel_config` is the config-time
check of env.pixels.
"""

from __future__ import annotations

import concurrent.futures
import copy
import os
import queue
import threading
import weakref
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from mjxmbrl.types import ConfigError, MjxmbrlError

DEFAULT_IMAGE_SIZE = 64
DEFAULT_BIT_DEPTH = 5
PIXEL_FAMILIES = ("dm_control", "polo", "byravan")  # Playground MjxEnvs with an mj_model and mjx.Data states


class RenderError(MjxmbrlError):
    """A frame cannot be rendered: no GL backend, or a task without a MuJoCo model."""


def pixel_obs_size(image_size: int) -> int:
    """Length of a flattened RGB frame: image_size * image_size * 3."""
    return int(image_size) * int(image_size) * 3


def pixel_spec(spec: Any, image_size: int = DEFAULT_IMAGE_SIZE) -> Any:
    """The EnvSpec of `spec`'s task with pixel observations: obs_size H*W*3, no groups, no known reward."""
    return spec._replace(obs_size=pixel_obs_size(image_size), obs_groups=(), reward_fn=None)


def pixel_options(env_cfg: Any) -> dict:
    """make_env / make_vector_env keyword arguments of an env config (defaults where a field is missing)."""
    return {
        "pixels": bool(getattr(env_cfg, "pixels", False)),
        "image_size": int(getattr(env_cfg, "image_size", DEFAULT_IMAGE_SIZE)),
        "bit_depth": int(getattr(env_cfg, "bit_depth", DEFAULT_BIT_DEPTH)),
    }


def quantize(frame: jax.Array, bit_depth: int = DEFAULT_BIT_DEPTH) -> jax.Array:
    """PlaNet's preprocessing, uint8 [...] -> float32 [...]: floor(x / 2^(8-bits)) / 2^bits - 0.5."""
    x = jnp.asarray(frame).astype(jnp.float32)
    return jnp.floor(x / 2.0 ** (8 - bit_depth)) / 2.0**bit_depth - 0.5


def frame_levels(obs: jax.Array, bit_depth: int = DEFAULT_BIT_DEPTH) -> jax.Array:
    """`quantize`'s float32 frames -> their uint8 levels k in [0, 2^bits) (obs = k / 2^bits - 0.5), exactly."""
    levels = jnp.round((jnp.asarray(obs, jnp.float32) + 0.5) * 2.0**bit_depth)
    return jnp.clip(levels, 0, 2**bit_depth - 1).astype(jnp.uint8)


def frame_from_levels(levels: jax.Array, bit_depth: int = DEFAULT_BIT_DEPTH) -> jax.Array:
    """The inverse of `frame_levels`: uint8 levels -> float32 frames k / 2^bits - 0.5."""
    return levels.astype(jnp.float32) / 2.0**bit_depth - 0.5


def dequantization_noise(key: jax.Array, shape: tuple, bit_depth: int = DEFAULT_BIT_DEPTH) -> jax.Array:
    """PlaNet's uniform dequantisation noise U[0, 2^-bits), added to quantised frames in the model loss."""
    return jax.random.uniform(key, shape, jnp.float32, 0.0, 2.0**-bit_depth)


def default_camera(mj_model: Any) -> int:
    """Camera 0 (DM Control's default render camera) where the model has cameras, else the free camera -1."""
    return 0 if int(mj_model.ncam) > 0 else -1


def mj_model_of(env: Any) -> Any:
    """The MuJoCo model behind an env from `make_env` (Playground tasks expose `mj_model`)."""
    inner = getattr(env, "unwrapped", env)
    for owner in (inner, env, getattr(inner, "sys", None)):
        model = getattr(owner, "mj_model", None) if owner is not None else None
        if model is not None:
            return model
    name = getattr(getattr(env, "spec", None), "name", type(env).__name__)
    raise RenderError(f"{name} has no MuJoCo model to render pixel observations from")


def open_renderer(mj_model: Any, height: int, width: int, error: type = RenderError, purpose: str = ""):
    """(model, mujoco.Renderer of height x width) on a copy of `mj_model` whose offscreen buffer fits the frame.

    The copy keeps the env's model untouched. A renderer that cannot open (no GL backend) raises `error`
    with one line saying which MUJOCO_GL to set; `purpose` names what the frames are for in that line.
    """
    import mujoco

    model = copy.copy(mj_model)
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
    try:
        return model, mujoco.Renderer(model, height=height, width=width)
    except Exception as err:
        backend = os.environ.get("MUJOCO_GL", "")
        raise error(
            f"cannot open a MuJoCo renderer{purpose} with MUJOCO_GL={backend!r} "
            f"({err.__class__.__name__}: {' '.join(str(err).split())[:200]}). Set MUJOCO_GL before Python "
            "starts: egl (GPU, or Mesa's libegl-mesa0 + libgl1-mesa-dri on a CPU) or osmesa (Debian libosmesa6)"
        ) from None


def _render_batch(model, data, renderer, camera: int, image_size: int, qpos, qvel, mocap_pos, mocap_quat) -> np.ndarray:
    import mujoco

    lead = np.broadcast_shapes(qpos.shape[:-1], qvel.shape[:-1], mocap_pos.shape[:-2], mocap_quat.shape[:-2])
    count = int(np.prod(lead, dtype=np.int64))

    def flat(x, trailing):  # [..., *trailing] -> [count, *trailing] (explicit count: nmocap may be 0)
        return np.broadcast_to(x, lead + x.shape[-trailing:]).reshape((count,) + x.shape[-trailing:])

    qpos, qvel, mocap_pos, mocap_quat = flat(qpos, 1), flat(qvel, 1), flat(mocap_pos, 2), flat(mocap_quat, 2)
    out = np.zeros((count, image_size, image_size, 3), np.uint8)
    for i in range(count):
        if not (np.all(np.isfinite(qpos[i])) and np.all(np.isfinite(qvel[i]))):
            continue  # NaN physics: black frame, flagged on the device side
        data.qpos[:] = qpos[i]
        data.qvel[:] = qvel[i]
        if model.nmocap:
            data.mocap_pos[:] = mocap_pos[i]
            data.mocap_quat[:] = mocap_quat[i]
        mujoco.mj_forward(model, data)
        renderer.update_scene(data, camera=camera)
        renderer.render(out=out[i])
    return out.reshape(lead + (image_size, image_size, 3))


def _render_worker(model: Any, image_size: int, camera: int, requests: queue.Queue) -> None:
    """The one thread that owns the GL context: opens it, renders each request's batch, closes it on None.

    The renderer is local to this thread, so it is never used or collected elsewhere.
    """
    import mujoco

    renderer = data = None
    try:
        while True:
            item = requests.get()
            if item is None:
                return
            args, future = item
            try:
                if renderer is None:
                    model, renderer = open_renderer(model, image_size, image_size, purpose=" for pixel observations")
                    data = mujoco.MjData(model)
                future.set_result(None if args is None else _render_batch(model, data, renderer, camera, image_size, *args))
            except BaseException as err:  # handed to the caller (the XLA callback), which raises it
                future.set_exception(err)
    finally:
        if renderer is not None:
            renderer.close()


class FrameRenderer:
    """Host renderer of one task's frames: (qpos, qvel, mocap_pos, mocap_quat) -> uint8 [..., H, W, 3].

    Every call sets an MjData's state, runs mj_forward and renders from
    `camera`, for every index of the inputs' leading axes (broadcast against
    each other). A state with a non-finite qpos or qvel gives a black frame
    (`PixelEnv` turns its observation into NaN). The GL context is made, used
    and closed on one worker thread (a daemon), whichever thread calls.
    """

    def __init__(self, mj_model: Any, image_size: int = DEFAULT_IMAGE_SIZE, camera: Optional[int] = None):
        self.model = copy.copy(mj_model)  # a larger offscreen buffer must not touch the env's model
        self.image_size = int(image_size)
        self.model.vis.global_.offwidth = max(int(self.model.vis.global_.offwidth), self.image_size)
        self.model.vis.global_.offheight = max(int(self.model.vis.global_.offheight), self.image_size)
        self.camera = default_camera(mj_model) if camera is None else int(camera)
        self._requests: queue.Queue = queue.Queue()
        self._thread = threading.Thread(
            target=_render_worker, args=(self.model, self.image_size, self.camera, self._requests),
            name="mjxmbrl-render", daemon=True,
        )
        self._thread.start()
        weakref.finalize(self, self._requests.put, None)  # collected: the worker closes the context and ends

    def _ask(self, args) -> Any:
        if not self._thread.is_alive():
            raise RenderError("this FrameRenderer is closed")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._requests.put((args, future))
        return future.result()

    def open(self) -> None:
        """Opens the GL context now (RenderError if there is no GL backend) rather than at the first frame."""
        self._ask(None)

    def __call__(self, qpos, qvel, mocap_pos, mocap_quat) -> np.ndarray:
        return self._ask(tuple(np.asarray(x) for x in (qpos, qvel, mocap_pos, mocap_quat)))

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join()


def sim_state(data: Any, nmocap: int):
    """(qpos, qvel, mocap_pos [nmocap, 3], mocap_quat [nmocap, 4]) of one unbatched mjx.Data."""
    mocap_pos = getattr(data, "mocap_pos", None)
    mocap_quat = getattr(data, "mocap_quat", None)
    if mocap_pos is None or mocap_quat is None or nmocap == 0:
        mocap_pos, mocap_quat = jnp.zeros((0, 3), jnp.float32), jnp.zeros((0, 4), jnp.float32)
    return data.qpos, data.qvel, mocap_pos, mocap_quat


def render_callback(renderer: FrameRenderer, data: Any, vmap_method: str = "expand_dims") -> jax.Array:
    """uint8 [H, W, 3] frame of one (unbatched, vmappable) mjx.Data, rendered on the host via pure_callback."""
    size = renderer.image_size
    args = sim_state(data, int(renderer.model.nmocap))
    out = jax.ShapeDtypeStruct((size, size, 3), jnp.uint8)
    return jax.pure_callback(renderer, out, *args, vmap_method=vmap_method)


class PixelEnv:
    """A task whose observation is its rendered, quantised frame (module docstring).

    reset(key) and step(state, action) are the wrapped env's with the
    observation replaced by the frame of the new state; `physics_step`
    leaves the previous observation in place (VectorEnv uses it for the
    sub-steps of an action repeat) and `observe(state)` renders.
    """

    def __init__(self, env: Any, image_size: int = DEFAULT_IMAGE_SIZE, bit_depth: int = DEFAULT_BIT_DEPTH,
                 camera: Optional[int] = None, vmap_method: str = "expand_dims"):
        if int(image_size) <= 0:
            raise MjxmbrlError(f"image_size must be positive, got {image_size}")
        if not 1 <= int(bit_depth) <= 8:
            raise MjxmbrlError(f"bit_depth must be in [1, 8], got {bit_depth}")
        self.env = env
        self.image_size, self.bit_depth = int(image_size), int(bit_depth)
        self.spec = pixel_spec(env.spec, self.image_size)
        self.mj_model = mj_model_of(env)
        self.renderer = FrameRenderer(self.mj_model, self.image_size, camera)
        self.renderer.open()  # no GL backend: one clear RenderError here, not an error inside a jitted callback
        self.camera = self.renderer.camera
        self.vmap_method = vmap_method  # of the pure_callback: "expand_dims" (one call per batch) or "sequential"

    @property
    def unwrapped(self) -> Any:
        return getattr(self.env, "unwrapped", self.env)

    def __getattr__(self, attr: str) -> Any:
        if attr == "env":  # not yet set (e.g. during unpickling)
            raise AttributeError(attr)
        return getattr(self.env, attr)

    @property
    def observation_size(self) -> int:
        return self.spec.obs_size

    @property
    def action_size(self) -> int:
        return int(self.env.action_size)

    @property
    def dt(self) -> float:
        return float(self.env.dt)

    def frame(self, data: Any) -> jax.Array:
        """uint8 [H, W, 3] of one simulator state (host render via pure_callback)."""
        return render_callback(self.renderer, data, self.vmap_method)

    def observe(self, state: Any) -> Any:
        """`state` with obs := the quantised frame of state.data, flattened [H*W*3]; NaN if the physics is not finite."""
        obs = quantize(self.frame(state.data), self.bit_depth).reshape(-1)
        finite = jnp.all(jnp.isfinite(state.data.qpos)) & jnp.all(jnp.isfinite(state.data.qvel))
        return state.replace(obs=jnp.where(finite, obs, jnp.nan))

    def reset(self, key: jax.Array) -> Any:
        return self.observe(self.env.reset(key))

    def physics_step(self, state: Any, action: jax.Array) -> Any:
        """The wrapped env's step with the observation left as it was (no render)."""
        return self.env.step(state, action).replace(obs=state.obs)

    def step(self, state: Any, action: jax.Array) -> Any:
        return self.observe(self.physics_step(state, action))


def wrap_pixels(env: Any, image_size: int = DEFAULT_IMAGE_SIZE, bit_depth: int = DEFAULT_BIT_DEPTH,
                camera: Optional[int] = None) -> PixelEnv:
    """`env` (from make_env) with pixel observations; only tasks with a MuJoCo model (PIXEL_FAMILIES)."""
    if env.spec.family not in PIXEL_FAMILIES:
        raise MjxmbrlError(
            f"env '{env.spec.name}' ({env.spec.family}) has no pixel observations: they are rendered for the "
            f"{' and '.join(PIXEL_FAMILIES)} tasks only"
        )
    return PixelEnv(env, image_size, bit_depth, camera)


def check_pixel_config(cfg: Any) -> None:
    """Config-time check of env.pixels, env.image_size and env.bit_depth (one ConfigError each).

    Pixel observations are wired for agent mpc planning over the pixel RSSM
    with the model's reward: the actor-critic agents read observations with
    MLPs, the other models and the known rewards read proprioceptive
    vectors, and observation statistics are not applied to pixels.
    """
    env = cfg.env
    if env.image_size <= 0:
        raise ConfigError(f"env.image_size must be positive, got {env.image_size}")
    if not 1 <= env.bit_depth <= 8:
        raise ConfigError(f"env.bit_depth must be in [1, 8], got {env.bit_depth}")
    if not env.pixels:
        return
    from mjxmbrl.envs.registry import get_spec

    spec = get_spec(env.name)
    if spec.family not in PIXEL_FAMILIES:
        raise ConfigError(
            f"env.pixels=true: env '{env.name}' ({spec.family}) has no pixel observations; they are rendered for "
            f"the {' and '.join(PIXEL_FAMILIES)} tasks only"
        )
    if cfg.model.name != "rssm":
        raise ConfigError(
            f"env.pixels=true: only the RSSM reads image observations; set model.name=rssm and model.pixels=true "
            f"(got model.name={cfg.model.name})"
        )
    if cfg.agent.name != "mpc":
        raise ConfigError(
            f"env.pixels=true is wired for agent mpc (planning over the pixel RSSM); agent {cfg.agent.name} reads "
            "observations with MLPs"
        )
    if getattr(cfg.planner, "reward", "model") != "model":
        raise ConfigError(
            f"env.pixels=true: env '{env.name}' has no known reward on pixel observations (its reward reads "
            "proprioceptive observations); set planner.reward=model"
        )
    if env.normalize_obs:
        raise ConfigError("env.pixels=true: pixel observations are used as quantised values; set env.normalize_obs=false")
