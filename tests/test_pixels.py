"""Pixel observations (envs/pixels.py) and the pixel RSSM (models/rssm.py, model.pixels=true).

The rendering tests need a headless GL backend: MUJOCO_GL is set to egl here unless the caller chose one
(MuJoCo reads it when it is first imported); without a working backend they are skipped with the reason.
The model tests run on hand-made frames and need no GL.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmbrl.config import load_config
from mjxmbrl.envs.pixels import dequantization_noise, frame_from_levels, frame_levels, pixel_spec, quantize
from mjxmbrl.envs.registry import config_spec, get_spec
from mjxmbrl.models.rssm import RSSMModelConfig, make_rssm_model
from mjxmbrl.models.trainer import make_model_trainer
from mjxmbrl.types import ConfigError, MjxmbrlError, Transition
from fast_compile import compile_fast

PIXEL_CONFIG = "configs/gradmpc/planet_pixels_cartpole_swingup.yaml"


@functools.lru_cache(maxsize=1)
def gl_problem() -> str:
    """'' if mujoco.Renderer opens here, else why not."""
    try:
        import mujoco

        model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
        renderer = mujoco.Renderer(model, 8, 8)
        renderer.render()
        renderer.close()
        return ""
    except Exception as err:  # no libEGL / libOSMesa, no display, another backend imported first
        return f"no GL backend for mujoco.Renderer (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): {type(err).__name__}: {err}"


def needs_gl():
    if gl_problem():
        pytest.skip(gl_problem())


# ---------------------------------------------------------------------------
# quantisation and specs (no GL)


def test_quantize_keeps_bit_depth_levels_like_planet():
    x = np.arange(256, dtype=np.uint8)
    q = np.asarray(quantize(x, 5))
    assert q.dtype == np.float32
    # floor(x / 8) / 32 - 0.5: 32 levels, 8 consecutive values each, from -0.5 to 31/32 - 0.5
    np.testing.assert_allclose(q, np.floor(np.arange(256) / 8) / 32 - 0.5)
    assert len(np.unique(q)) == 32
    assert q[0] == -0.5 and q[7] == -0.5 and q[8] == -0.5 + 1 / 32 and q[255] == pytest.approx(0.5 - 1 / 32)
    np.testing.assert_allclose(np.asarray(quantize(x, 8)), np.arange(256) / 256 - 0.5)  # 8 bits: nothing dropped
    assert len(np.unique(np.asarray(quantize(x, 1)))) == 2
    noise = np.asarray(dequantization_noise(jax.random.PRNGKey(0), (4096,), 5))
    assert noise.min() >= 0.0 and noise.max() < 1 / 32 and noise.std() > 0.005  # U[0, 2^-5): within one level


@pytest.mark.parametrize("bits", [1, 5, 8])
def test_frame_levels_round_trip_every_quantised_value(bits):
    pixels = jnp.arange(256, dtype=jnp.uint8)  # every 8-bit value a renderer can produce
    frames = quantize(pixels, bits)
    levels = frame_levels(frames, bits)
    assert levels.dtype == jnp.uint8 and int(levels.max()) == 2**bits - 1
    np.testing.assert_array_equal(np.asarray(levels), np.asarray(pixels) >> (8 - bits))
    np.testing.assert_array_equal(np.asarray(frame_from_levels(levels, bits)), np.asarray(frames))


def test_pixel_replay_stores_uint8_levels_and_samples_the_frames_exactly():
    from mjxmbrl.train import obs_codec
    from mjxmbrl.replay import make_replay

    cfg = load_config(PIXEL_CONFIG, ["env.bit_depth=6"])
    assert obs_codec(load_config("configs/debug.yaml").env) is None  # proprioceptive observations stay float32
    codec = obs_codec(cfg.env)
    size, envs = 12, 2
    plain = make_replay(8, envs, size, 1)
    coded = make_replay(8, envs, size, 1, obs_codec=codec)
    state, plain_state = coded.init(), plain.init()
    assert state.data.obs.dtype == state.data.next_obs.dtype == jnp.uint8
    assert state.data.obs.nbytes * 4 == plain_state.data.obs.nbytes
    key = jax.random.PRNGKey(0)
    frames = quantize(jax.random.randint(key, (5, envs, size), 0, 256), 6)  # 5 steps of 2 envs
    for t in range(4):
        step = Transition(obs=frames[t], action=jnp.zeros((envs, 1)), reward=jnp.full((envs,), float(t)),
                          next_obs=frames[t + 1], terminated=jnp.zeros(envs), truncated=jnp.zeros(envs))
        state, plain_state = coded.insert(state, step), plain.insert(plain_state, step)
    batch, ref = coded.sample(key, state, 16), plain.sample(key, plain_state, 16)
    assert batch.obs.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(batch.obs), np.asarray(ref.obs))
    np.testing.assert_array_equal(np.asarray(batch.next_obs), np.asarray(ref.next_obs))
    (seq, mask), (ref_seq, ref_mask) = coded.sample_sequences(key, state, 4, 3), plain.sample_sequences(key, plain_state, 4, 3)
    np.testing.assert_array_equal(np.asarray(seq.obs), np.asarray(ref_seq.obs))
    np.testing.assert_array_equal(np.asarray(seq.next_obs), np.asarray(ref_seq.next_obs))
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(ref_mask))


def test_pixel_spec_has_frames_and_no_known_reward():
    proprio = get_spec("CartpoleSwingup")
    assert proprio.reward_fn is not None and proprio.obs_size == 5
    spec = pixel_spec(proprio)
    assert (spec.obs_size, spec.action_size, spec.obs_groups, spec.reward_fn) == (64 * 64 * 3, 1, (), None)
    assert spec.ctrl_dt == proprio.ctrl_dt and spec.episode_length == proprio.episode_length
    cfg = load_config(PIXEL_CONFIG)
    assert cfg.env.pixels and cfg.model.pixels and cfg.planner.reward == "model" and cfg.env.action_repeat == 8
    assert config_spec(cfg.env) == spec
    assert config_spec(cfg.env.__class__(name="CartpoleSwingup")) == proprio


# ---------------------------------------------------------------------------
# config errors (no GL)


def test_pixel_config_errors_are_one_clear_error_each():
    base = [
        "env.name=CartpoleSwingup", "agent.name=mpc", "model.name=rssm", "planner.name=cem", "planner.reward=model",
        "replay.capacity=1000",
    ]
    with pytest.raises(ConfigError, match=r"model.pixels=true .* env 'CartpoleSwingup' provides proprioceptive"):
        load_config(None, base + ["model.pixels=true"])  # pixel model on a proprioceptive env
    with pytest.raises(ConfigError, match=r"pixel observations are not enabled"):  # as tests/test_cli.py expects
        load_config(None, ["model.name=rssm", "model.pixels=true"])
    with pytest.raises(MjxmbrlError, match=r"pixels=True: the RSSM's CNN takes .* got observations of size 5"):
        make_rssm_model(RSSMModelConfig(pixels=True), 5, 1)  # and the factory itself (tests/test_rssm.py)
    with pytest.raises(ConfigError, match=r"env.pixels=true .* the RSSM reads proprioceptive vectors"):
        load_config(None, base + ["env.pixels=true"])  # proprioceptive model on a pixel env
    with pytest.raises(ConfigError, match=r"only the RSSM reads image observations"):
        load_config(None, base[:2] + ["model.name=mlp", "planner.name=cem", "planner.reward=model",
                                      "model.learn_reward=true", "env.pixels=true", "replay.capacity=1000"])
    with pytest.raises(ConfigError, match=r"no known reward on pixel observations.*planner.reward=model"):
        load_config(PIXEL_CONFIG, ["planner.reward=known"])
    with pytest.raises(ConfigError, match=r"'toy_reach' \(toy\) has no pixel observations"):
        load_config(PIXEL_CONFIG, ["env.name=toy_reach"])
    with pytest.raises(ConfigError, match=r"take 64 x 64 frames; set env.image_size=64"):
        load_config(PIXEL_CONFIG, ["env.image_size=32"])
    with pytest.raises(ConfigError, match=r"env.bit_depth must be in \[1, 8\]"):
        load_config(PIXEL_CONFIG, ["env.bit_depth=9"])
    with pytest.raises(ConfigError, match=r"wired for agent mpc"):
        load_config(None, ["agent.name=sac"] + base[2:] + ["env.name=CartpoleSwingup", "env.pixels=true", "model.pixels=true"])


# ---------------------------------------------------------------------------
# the CNN RSSM (no GL): hand-made frames


def tiny_pixel_rssm():
    cfg = RSSMModelConfig(pixels=True, belief_size=32, state_size=8, hidden_size=32, embedding_size=1024,
                          free_nats=3.0, learning_rate=5e-4, batch_size=2, seq_len=3)
    return cfg, make_rssm_model(cfg, 64 * 64 * 3, 1)


def frame_batch(batch_size: int, seq_len: int) -> Transition:
    """Quantised frames of a bright square moving right by 4 pixels per step on a dark background."""
    frames = np.full((batch_size, seq_len + 1, 64, 64, 3), 30, np.uint8)
    for b in range(batch_size):
        for t in range(seq_len + 1):
            x = 8 + 4 * t + 10 * b
            frames[b, t, 20:36, x:x + 12] = (220, 160, 40)
    obs = np.asarray(quantize(frames, 5)).reshape(batch_size, seq_len + 1, -1)
    zeros = jnp.zeros((batch_size, seq_len))
    return Transition(obs=jnp.asarray(obs[:, :-1]), action=jnp.ones((batch_size, seq_len, 1)), reward=zeros + 0.5,
                      next_obs=jnp.asarray(obs[:, 1:]), terminated=zeros, truncated=zeros, valid=zeros + 1.0)


def test_cnn_rssm_shapes():
    cfg, model = tiny_pixel_rssm()
    params = model.init(jax.random.PRNGKey(0))
    net = params["net"]["params"]
    kernels = [net["encoder"][f"Conv2D_{i}"]["kernel"].shape for i in range(4)]
    assert kernels == [(4, 4, 3, 32), (4, 4, 32, 64), (4, 4, 64, 128), (4, 4, 128, 256)]  # 32-64-128-256, kernel 4
    assert "Dense_0" not in net["encoder"]  # 2 x 2 x 256 = 1024 = embedding_size: no projection
    kernels = [net["obs_decoder"][f"StridedConvTranspose_{i}"]["kernel"].shape for i in range(4)]
    assert kernels == [(5, 5, 1024, 128), (5, 5, 128, 64), (6, 6, 64, 32), (6, 6, 32, 3)]
    frame = frame_batch(1, 1).obs[0, 0]
    key = jax.random.PRNGKey(1)
    z = model.initial_state(params, frame, key)
    assert z["h"].shape == (32,) and z["s"].shape == (8,)
    z1 = model.filter(params, z, jnp.ones((1,)), frame, key)
    z2 = model.step(params, z1, jnp.ones((1,)), key)
    assert model.observation(params, z2).shape == (64 * 64 * 3,)
    assert model.reward(params, z1, jnp.ones((1,)), z2).shape == ()
    zs = model.initial_particles(params, frame, key, 5)
    assert zs["h"].shape == (5, 32)
    # no normalisation statistics on pixels: the model reads the quantised frame as it is
    assert model.normalize_input(params, frame) is frame
    cfg_embed = RSSMModelConfig(pixels=True, belief_size=32, state_size=8, hidden_size=32, embedding_size=64)
    small = make_rssm_model(cfg_embed, 64 * 64 * 3, 1).init(key)
    assert small["net"]["params"]["encoder"]["Dense_0"]["kernel"].shape == (1024, 64)


@pytest.mark.parametrize("matmul", [True, False])  # patches x matrix (the CPU default) and XLA's convolutions
@pytest.mark.parametrize("size, kernel", [(1, 5), (5, 5), (13, 6), (4, 3)])  # PlaNet's four layers, an odd small one
def test_strided_conv_transpose_is_flax_conv_transpose(size, kernel, matmul):
    import flax.linen as nn

    from mjxmbrl.models.rssm import StridedConvTranspose

    x = jax.random.normal(jax.random.PRNGKey(0), (3, size, size, 6))
    ref = nn.ConvTranspose(5, (kernel, kernel), strides=(2, 2), padding="VALID")
    params = ref.init(jax.random.PRNGKey(1), x)
    params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.PRNGKey(2), p.shape), params)  # nonzero bias too
    ours = StridedConvTranspose(5, kernel, matmul=matmul)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(1), x)) == jax.tree.map(jnp.shape, params)
    want = ref.apply(params, x)
    assert want.shape == (3, 2 * size + kernel - 2, 2 * size + kernel - 2, 5)
    np.testing.assert_allclose(ours.apply(params, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("matmul", [True, False])
@pytest.mark.parametrize("size, stride", [(64, 2), (14, 2), (9, 1)])
def test_conv2d_is_flax_conv(size, stride, matmul):
    import flax.linen as nn

    from mjxmbrl.models.rssm import Conv2D

    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))
    ref = nn.Conv(7, (4, 4), strides=(stride, stride), padding="VALID")
    params = ref.init(jax.random.PRNGKey(1), x)
    params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
    ours = Conv2D(7, 4, stride=stride, matmul=matmul)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(1), x)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)


def test_cnn_rssm_loss_decreases_on_a_fixed_batch():
    cfg, model = tiny_pixel_rssm()
    trainer = make_model_trainer(model, cfg)
    batch = frame_batch(cfg.batch_size, cfg.seq_len)
    mask = jnp.ones((cfg.batch_size, cfg.seq_len))
    state = trainer.init(jax.random.PRNGKey(0))
    update = jax.jit(trainer.update)
    losses = []
    for i in range(12):
        state, metrics = update(jax.random.PRNGKey(100 + i), state, batch, mask)
        losses.append((float(metrics["model/loss"]), float(metrics["model/obs_loss"])))
    assert all(np.isfinite(losses).ravel())
    # the reconstruction error is summed over 12288 values: hundreds at initialisation
    assert losses[0][1] > 100
    # Adam on a summed pixel loss is noisy from update to update: compare the mean of the last three
    last = np.mean(losses[-3:], axis=0)
    assert last[0] < 0.5 * losses[0][0] and last[1] < 0.5 * losses[0][1], losses


# ---------------------------------------------------------------------------
# rendering through the callback (GL)


def host_frame(mj_model, qpos, qvel, camera=0) -> np.ndarray:
    import mujoco

    renderer = mujoco.Renderer(mj_model, 64, 64)
    data = mujoco.MjData(mj_model)
    data.qpos[:], data.qvel[:] = qpos, qvel
    mujoco.mj_forward(mj_model, data)
    renderer.update_scene(data, camera=camera)
    frame = renderer.render().copy()
    renderer.close()
    return frame


def test_callback_frames_equal_host_renders_and_rewards_are_unchanged():
    needs_gl()
    from mjxmbrl.envs import make_vector_env

    kwargs = dict(num_envs=2, episode_length=48, action_repeat=8, auto_reset=False)  # no reset branch to compile
    pix = make_vector_env("CartpoleSwingup", pixels=True, **kwargs)
    proprio = make_vector_env("CartpoleSwingup", **kwargs)
    assert pix.observation_size == 64 * 64 * 3 and pix.spec.reward_fn is None and pix.env.camera == 0
    key = jax.random.PRNGKey(3)
    actions = jnp.array([[1.0], [-1.0]])
    s_pix, s_pro = compile_fast(pix._reset_batched, key)(key), compile_fast(proprio._reset_batched, key)(key)
    reset_obs = np.asarray(s_pix.obs)
    step_pix = compile_fast(pix._step_batched, s_pix, actions)
    step_pro = compile_fast(proprio._step_batched, s_pro, actions)
    for _ in range(3):
        s_pix, s_pro = step_pix(s_pix, actions), step_pro(s_pro, actions)
        # same simulator, same rewards and termination: only the observation differs
        np.testing.assert_array_equal(np.asarray(s_pix.reward), np.asarray(s_pro.reward))
        np.testing.assert_array_equal(np.asarray(s_pix.done), np.asarray(s_pro.done))
        np.testing.assert_array_equal(np.asarray(s_pix.data.qpos), np.asarray(s_pro.data.qpos))
    obs = np.asarray(s_pix.obs)
    assert obs.shape == (2, 64 * 64 * 3) and obs.dtype == np.float32
    mj_model = pix.env.mj_model
    for i in range(2):
        # the frame of the state after the whole action repeat, as a plain host render gives it
        frame = host_frame(mj_model, np.asarray(s_pix.data.qpos[i]), np.asarray(s_pix.data.qvel[i]))
        np.testing.assert_array_equal(obs[i], np.asarray(quantize(frame, 5)).reshape(-1))
        np.testing.assert_array_equal(np.asarray(s_pix.info["final_obs"][i]), obs[i])
    assert frame.std() > 10  # a scene, not a blank image
    # the cart was pushed right in env 0 and left in env 1 for 24 control steps: the pictures moved
    assert np.abs(obs[0] - reset_obs[0]).mean() > 1e-3 and np.abs(obs[0] - obs[1]).mean() > 1e-3


def test_agent_parts_see_the_pixel_task_so_eval_and_plan_build_like_train():
    """build_parts (used by eval, plan and train alike) gives the agent the pixel spec, not the state spec."""
    from mjxmbrl.agents import build_parts
    from mjxmbrl.config import load_config

    cfg = load_config("configs/gradmpc/planet_pixels_cartpole_swingup.yaml", ["log.wandb=disabled"])
    spec = build_parts(cfg, None).spec
    assert spec.obs_size == 64 * 64 * 3 and spec.reward_fn is None


def test_gradmpc_from_pixels_trains_and_evaluates_through_reproduce(tmp_path):
    """The Table 1 pixel cell of Grad-MPC (CNN RSSM, gradient planner in its latent space) runs end to end at the
    smoke budget: frames rendered in the jitted step, model updates, planned actions, an evaluation, a report."""
    needs_gl()
    import json

    from mjxmbrl.cli import main

    out = tmp_path / "gm"
    assert main(["reproduce", "gradmpc-dmc100k", "--budget", "smoke", "--cells", "gradmpc-cartpole_swingup-pixels",
                 "--out", str(out)]) == 0
    cell, = json.loads((out / "results.json").read_text())["cells"]
    assert cell["cell"] == "gradmpc-cartpole_swingup-pixels" and np.isfinite(cell["mean"])
    rows = [json.loads(line) for line in (out / "runs" / "gradmpc-cartpole_swingup-pixels-s0" / "metrics.jsonl").open()]
    recon = [r["model/obs_loss"] for r in rows if "model/obs_loss" in r]
    assert recon and all(np.isfinite(recon)) and any("eval/return" in r for r in rows)
