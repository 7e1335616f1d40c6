"""`mjxmbrl bench sac`: train throughput and the chunk-vs-parts overhead ratio.

Configuration of MuJoCo Playground's DM Control SAC recipe: CartpoleSwingup,
128 envs, batch 512, 8 gradient updates per vectorised env step, (256, 256)
networks. Reports
  * train env steps/s over `total` env steps, evaluation included and excluded;
  * ratio = time(one train chunk) / (time(env steps alone) + time(updates alone)),
    each part jitted and scanned on its own over the same number of steps.
"""

from __future__ import annotations

import datetime
import platform
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp

from mjxmbrl.config import Config, EnvConfig, LogConfig, ReplayConfig, SACConfig, TrainConfig
from mjxmbrl.runner import eval_key
from mjxmbrl.train import build, init_state, make_train_chunk, timed


def bench_config(quick: bool) -> Config:
    if quick:
        return Config(
            env=EnvConfig(name="toy_reach", num_envs=8),
            agent=SACConfig(hidden_sizes=(32, 32), batch_size=64),
            replay=ReplayConfig(capacity=20_000),
            train=TrainConfig(total_env_steps=2_048, warmup_env_steps=0, updates_per_step=2, log_every=512, eval_episodes=2),
            log=LogConfig(wandb="disabled", progress=False),
        )
    return Config(
        env=EnvConfig(name="CartpoleSwingup", num_envs=128, episode_length=1000),
        agent=SACConfig(hidden_sizes=(256, 256), batch_size=512),
        replay=ReplayConfig(capacity=1_000_000),
        train=TrainConfig(
            total_env_steps=102_400, warmup_env_steps=0, updates_per_step=8, log_every=12_800, eval_every=25_600, eval_episodes=16
        ),
        log=LogConfig(wandb="disabled", progress=False),
    )


def _parts(components, steps: int):
    """Jitted scans of the two halves of a train step, each alone."""
    env, learner, replay = components.env, components.learner, components.replay
    cfg = components.cfg

    @jax.jit
    def env_only(key, ts):
        def step(carry, k):
            env_state = carry
            action = learner.policy(learner.policy_params(ts.learner), env_state.obs, k, False)
            return env.step(env_state, action), None

        env_state, _ = jax.lax.scan(step, ts.env_state, jax.random.split(key, steps))
        return env_state

    @jax.jit
    def updates_only(key, ts):
        def step(learner_state, k):
            sample_key, update_key = jax.random.split(k)
            batch = replay.sample(sample_key, ts.replay, cfg.agent.batch_size)
            return learner.update(update_key, learner_state, batch, ts.env_steps)

        learner_state, metrics = jax.lax.scan(step, ts.learner, jax.random.split(key, steps * cfg.train.updates_per_step))
        return learner_state, metrics

    return env_only, updates_only


def bench_sac(quick: bool = False, out: Optional[str] = None) -> str:
    cfg = bench_config(quick)
    components = build(cfg)
    per_step = cfg.env.num_envs * cfg.env.action_repeat
    steps_per_chunk = cfg.train.log_every // per_step
    chunk = make_train_chunk(components, steps_per_chunk)
    ts = init_state(components)

    compile_start = time.perf_counter()
    ts, _ = jax.block_until_ready(chunk(ts))
    compile_s = time.perf_counter() - compile_start
    evaluate = components.evaluate
    jax.block_until_ready(evaluate(eval_key(0, 0), components.learner.policy_params(ts.learner), ts.obs_stats))

    n_chunks = cfg.train.total_env_steps // cfg.train.log_every
    eval_every_chunks = max(1, cfg.train.eval_every // cfg.train.log_every)
    train_s = eval_s = 0.0
    chunk_times = []
    for i in range(n_chunks):
        (ts, _), dt = timed(chunk, ts)
        train_s += dt
        chunk_times.append(dt)
        if (i + 1) % eval_every_chunks == 0:
            _, dt = timed(evaluate, eval_key(0, i), components.learner.policy_params(ts.learner), ts.obs_stats)
            eval_s += dt
    env_steps = n_chunks * cfg.train.log_every

    env_only, updates_only = _parts(components, steps_per_chunk)
    key = jax.random.PRNGKey(1)
    timed(env_only, key, ts)
    timed(updates_only, key, ts)
    env_times = [timed(env_only, jax.random.fold_in(key, i), ts)[1] for i in range(3)]
    update_times = [timed(updates_only, jax.random.fold_in(key, i), ts)[1] for i in range(3)]
    chunk_s = sorted(chunk_times)[len(chunk_times) // 2]
    parts_s = min(env_times) + min(update_times)

    lines = [
        f"### SAC throughput ({'quick' if quick else 'Playground DM Control SAC configuration'})",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {platform.node()} ({platform.machine()}, "
        f"{jax.devices()[0].platform.upper()} x{jax.device_count()}, {_cpu_count()} cores); jax {jax.__version__}",
        f"- command: `mjxmbrl bench sac{' --quick' if quick else ''}`",
        f"- config: {cfg.env.name}, {cfg.env.num_envs} envs, batch {cfg.agent.batch_size}, "
        f"{cfg.train.updates_per_step} updates per vectorised env step, hidden {list(cfg.agent.hidden_sizes)}, "
        f"{env_steps} env steps, eval of {cfg.train.eval_episodes} episodes every {cfg.train.eval_every} env steps",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| compile + first chunk | {compile_s:.1f} s |",
        f"| train env steps/s (eval excluded) | {env_steps / train_s:,.0f} |",
        f"| train env steps/s (eval included) | {env_steps / (train_s + eval_s):,.0f} |",
        f"| time for {env_steps} env steps, eval included | {train_s + eval_s:.1f} s |",
        f"| one chunk ({steps_per_chunk} steps), median | {chunk_s * 1e3:.1f} ms |",
        f"| env steps alone (policy + env.step) | {min(env_times) * 1e3:.1f} ms |",
        f"| {steps_per_chunk * cfg.train.updates_per_step} updates alone (sample + SAC update) | {min(update_times) * 1e3:.1f} ms |",
        f"| ratio chunk / (env alone + updates alone) | {chunk_s / parts_s:.3f} |",
        "",
    ]
    report = "\n".join(lines)
    if out:
        with open(out, "a") as f:
            f.write(report + "\n")
    return report


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 0


def bench_models(quick: bool = False, out: Optional[str] = None, env_name: str = "CartpoleSwingup", action_repeat: int = 8) -> str:
    """Model steps/s of a 256-particle x 10-step open-loop rollout of each model type.

    Learned models use their paper-default sizes (config defaults); the oracle
    steps the true MJX simulator (`action_repeat` control steps per model step).
    One rollout = initial_particles + scan over 10 steps of the vmapped model
    step and observation; timed after compilation, best of 5.
    """
    from mjxmbrl.config import MODEL_CONFIGS
    from mjxmbrl.models import make_model
    from mjxmbrl.models.base import update_model_stats, init_model_stats
    from mjxmbrl.types import Transition

    particles, horizon = (16, 3) if quick else (256, 10)
    env_cfg = EnvConfig(name="toy_reach" if quick else env_name, action_repeat=1 if quick else action_repeat)
    from mjxmbrl.envs import make_vector_env

    probe = make_vector_env(env_cfg.name, 1, impl=env_cfg.impl, action_repeat=env_cfg.action_repeat, auto_reset=False)
    sim_state = jax.tree.map(lambda x: x[0], probe.reset(jax.random.PRNGKey(0)))
    obs, act_size = sim_state.obs, probe.action_size
    names = ["mlp", "gru", "ensemble", "rssm"] + ([] if quick else ["oracle"])
    rows = []
    for name in names:
        cfg = MODEL_CONFIGS[name]()
        if quick and name != "oracle":
            import dataclasses

            small = {"mlp": {"hidden_sizes": (16,)}, "gru": {"encoder_sizes": (16,), "gru_size": 16, "decoder_sizes": (16,), "head_sizes": (16,)},
                     "ensemble": {"hidden_sizes": (16,)}, "rssm": {"belief_size": 16, "state_size": 4, "hidden_size": 16, "embedding_size": 16}}[name]
            cfg = dataclasses.replace(cfg, **small)
        model = make_model(cfg, env_cfg, probe.observation_size, act_size)
        params = model.init(jax.random.PRNGKey(1))
        if "stats" in params:  # realistic normalisation: stats of a few random transitions
            fake = Transition(obs[None], jnp.zeros((1, act_size)), jnp.zeros(1), obs[None] + 0.01, jnp.zeros(1), jnp.zeros(1))
            params = {**params, "stats": update_model_stats(init_model_stats(obs.shape[0]), fake)}

        @jax.jit
        def rollout(params, key, actions):
            k0, k1 = jax.random.split(key)
            z = model.initial_particles(params, obs, k0, particles, sim_state)

            def body(z, inputs):
                a, k = inputs
                z = jax.vmap(lambda zi, ai, ki: model.step(params, zi, ai, ki))(z, a, jax.random.split(k, particles))
                return z, jax.vmap(lambda zi: model.observation(params, zi))(z)

            return jax.lax.scan(body, z, (actions, jax.random.split(k1, horizon)))[1]

        actions = jax.random.uniform(jax.random.PRNGKey(2), (horizon, particles, act_size), minval=-1, maxval=1)
        _, compile_s = timed(rollout, params, jax.random.PRNGKey(3), actions)
        best = min(timed(rollout, params, jax.random.PRNGKey(4 + i), actions)[1] for i in range(5))
        rows.append((name, compile_s, best, particles * horizon / best))

    lines = [
        f"### World-model rollout throughput ({'quick' if quick else env_cfg.name + f', action repeat {env_cfg.action_repeat}'})",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {platform.node()} ({platform.machine()}, "
        f"{jax.devices()[0].platform.upper()} x{jax.device_count()} {jax.devices()[0].device_kind}, {_cpu_count()} cores); jax {jax.__version__}",
        f"- command: `mjxmbrl bench models{' --quick' if quick else ''}`",
        f"- one rollout: {particles} particles x {horizon} steps, jitted (vmap over particles, scan over steps); "
        "paper-default sizes (mlp 3x256 per group, gru 2x512, ensemble 5 x 4x200, rssm 200/30); "
        "an oracle step is one agent step of the true MJX simulator (action repeat control steps)",
        "",
        "| model | compile s | one rollout ms | model steps/s |",
        "| --- | --- | --- | --- |",
    ] + [f"| {n} | {c:.1f} | {b * 1e3:.2f} | {sps:,.0f} |" for n, c, b, sps in rows] + [""]
    report = "\n".join(lines)
    if out:
        with open(out, "a") as f:
            f.write(report + "\n")
    return report
