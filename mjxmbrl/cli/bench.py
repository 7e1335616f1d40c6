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
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mjxmbrl.config import Config, EnvConfig, LogConfig, ReplayConfig, TrainConfig
from mjxmbrl.learners.sac import SACConfig
from mjxmbrl.run.evaluation import make_seed_evaluator
from mjxmbrl.train import build, init_state, make_train_chunk


def timed(fn, *args):
    """(fn(*args) with its device work finished, seconds it took)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start

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
    """Jitted scans of the two halves of a train step, each alone: acting + env steps, and the agent's learning."""
    from mjxmbrl.agents import EXPLORE

    env, agent = components.env, components.agent

    @jax.jit
    def env_only(key, ts):
        def step(env_state, k):
            action = agent.act(k, ts.agent, ts.carry, env_state, ts.env_steps, EXPLORE)[0]
            return env.step(env_state, action), None

        env_state, _ = jax.lax.scan(step, ts.env_state, jax.random.split(key, steps))
        return env_state

    @jax.jit
    def updates_only(key, ts):
        def step(agent_state, k):
            return agent.learn(k, agent_state, ts.replay, ts.env_steps)

        return jax.lax.scan(step, ts.agent, jax.random.split(key, steps))

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
    evaluate = make_seed_evaluator(components, cfg)
    evaluate(0, ts)

    n_chunks = cfg.train.total_env_steps // cfg.train.log_every
    eval_every_chunks = max(1, cfg.train.eval_every // cfg.train.log_every)
    train_s = eval_s = 0.0
    chunk_times = []
    for i in range(n_chunks):
        (ts, _), dt = timed(chunk, ts)
        train_s += dt
        chunk_times.append(dt)
        if (i + 1) % eval_every_chunks == 0:
            _, dt = timed(evaluate, i, ts)
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
    return _write("\n".join(lines), {"bench": "sac", "markdown": "\n".join(lines)}, out)


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
    from mjxmbrl.models import MODELS, make_model
    from mjxmbrl.models.base import init_model_stats, update_model_stats
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
        cfg = MODELS.get(name).config()
        if quick and name != "oracle":
            import dataclasses

            small = {"mlp": {"hidden_sizes": (16,)}, "gru": {"encoder_sizes": (16,), "gru_size": 16, "decoder_sizes": (16,), "head_sizes": (16,)},
                     "ensemble": {"hidden_sizes": (16,)}, "rssm": {"belief_size": 16, "state_size": 4, "hidden_size": 16, "embedding_size": 16}}[name]
            cfg = dataclasses.replace(cfg, **small)
        model = make_model(cfg, env_cfg, probe.observation_size, act_size)
        belief = sim_state if model.uses_sim_state else None  # a restart from obs for the learned models
        params = model.init(jax.random.PRNGKey(1))
        if "stats" in params:  # realistic normalisation: stats of a few random transitions
            fake = Transition(obs[None], jnp.zeros((1, act_size)), jnp.zeros(1), obs[None] + 0.01, jnp.zeros(1), jnp.zeros(1))
            params = {**params, "stats": update_model_stats(init_model_stats(obs.shape[0]), fake)}

        @jax.jit
        def rollout(params, key, actions):
            k0, k1 = jax.random.split(key)
            z = model.initial_particles(params, obs, k0, particles, belief)

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
    return _write("\n".join(lines), {"bench": "models", "markdown": "\n".join(lines)}, out)


def bench_planners(quick: bool = False, out: Optional[str] = None, env_name: str = "CartpoleSwingup", action_repeat: int = 4) -> str:
    """Planner overhead: time per plan / time of the raw model rollouts it needs, for the oracle and the MLP.

    Raw rollouts: the same particles x horizon x iterations of vmapped model steps
    (initial particles, step, observation), in one jitted scan; for the gradient
    planner the raw cost is the forward and backward pass of those rollouts.
    Both are timed in this process after compilation, best of 5 calls.
    """
    import dataclasses

    from mjxmbrl.envs import make_vector_env
    from mjxmbrl.models import make_model
    from mjxmbrl.models.base import init_model_stats, update_model_stats
    from mjxmbrl.models.mlp import MLPModelConfig
    from mjxmbrl.models.oracle import OracleModelConfig
    from mjxmbrl.planners import PlanParams, make_planner
    from mjxmbrl.planners.cem import CEMConfig
    from mjxmbrl.planners.grad import GradConfig
    from mjxmbrl.planners.mppi import MPPIConfig
    from mjxmbrl.planners.smc import SMCConfig
    from mjxmbrl.types import Transition

    particles, horizon = (8, 3) if quick else (256, 10)
    env_cfg = EnvConfig(name="CartpoleSwingup" if quick else env_name, action_repeat=1 if quick else action_repeat)
    probe = make_vector_env(env_cfg.name, 1, impl=env_cfg.impl, action_repeat=env_cfg.action_repeat, auto_reset=False)
    sim_state = jax.tree.map(lambda x: x[0], probe.reset(jax.random.PRNGKey(0)))
    obs, act = sim_state.obs, probe.action_size
    common = dict(horizon=horizon, reward="known")
    planners = {
        "smc": (dataclasses.replace(SMCConfig(), num_particles=particles, temperature=0.1, **common), 1),
        "cem": (dataclasses.replace(CEMConfig(), num_samples=particles, iterations=3, **common), 3),
        "mppi": (dataclasses.replace(MPPIConfig(), num_samples=particles, iterations=1, **common), 1),
        "grad": (dataclasses.replace(GradConfig(), num_candidates=particles // 8, iterations=5, **common), 5),
    }
    models = {"oracle": OracleModelConfig(), "mlp": MLPModelConfig(hidden_sizes=(32,) if quick else (256, 256, 256))}
    rows = []
    for model_name, model_cfg in models.items():
        model = make_model(model_cfg, env_cfg, probe.observation_size, act)
        belief = sim_state if model.uses_sim_state else None
        params = model.init(jax.random.PRNGKey(1))
        if "stats" in params:
            fake = Transition(obs[None], jnp.zeros((1, act)), jnp.zeros(1), obs[None] + 0.01, jnp.zeros(1), jnp.zeros(1))
            params = {**params, "stats": update_model_stats(init_model_stats(obs.shape[0]), fake)}
        pp = PlanParams(model=params)
        for planner_name, (pcfg, iterations) in planners.items():
            n = pcfg.num_candidates if planner_name == "grad" else particles
            planner, core, _ = make_planner(pcfg, model, env_cfg, probe.observation_size, act)
            plan = jax.jit(lambda key, state: planner.plan(key, state, obs, belief, pp))

            def rollout_returns(actions, key, n=n):
                z = core.initial_particles(pp, obs, key, n, belief)

                def body(z, a):
                    z = jax.vmap(lambda zi, ai: model.step(pp.model, zi, ai, key))(z, a)
                    return z, jnp.sum(core.observe(pp, z))

                return jnp.sum(jax.lax.scan(body, z, jnp.swapaxes(actions, 0, 1))[1])

            grad_mode = planner_name == "grad"

            @jax.jit
            def raw(key, grad_mode=grad_mode, n=n, iterations=iterations):
                actions = jax.random.uniform(key, (iterations, n, horizon, act), minval=-1, maxval=1)
                fn = jax.value_and_grad(rollout_returns) if grad_mode else rollout_returns
                return jax.lax.map(lambda a: fn(a, key), actions)

            state = planner.init(jax.random.PRNGKey(0))
            timed(plan, jax.random.PRNGKey(2), state)
            timed(raw, jax.random.PRNGKey(2))
            plan_s = min(timed(plan, jax.random.PRNGKey(3 + i), state)[1] for i in range(5))
            raw_s = min(timed(raw, jax.random.PRNGKey(3 + i))[1] for i in range(5))
            rows.append((model_name, planner_name, n, iterations, plan_s, raw_s))

    lines = [
        f"### Planner overhead ({'quick' if quick else env_cfg.name + f', action repeat {env_cfg.action_repeat}'})",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {platform.node()} ({platform.machine()}, "
        f"{jax.devices()[0].platform.upper()} x{jax.device_count()} {jax.devices()[0].device_kind}, {_cpu_count()} cores); jax {jax.__version__}",
        f"- command: `mjxmbrl bench planners{' --quick' if quick else ''}`",
        f"- horizon {horizon}; ratio = time per plan / time of the raw model rollouts it needs "
        "(same particles x horizon x iterations; forward + backward for grad), best of 5, one process",
        "",
        "| model | planner | particles | iterations | plan ms | raw rollouts ms | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ] + [f"| {m} | {p} | {n} | {i} | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.2f} |" for m, p, n, i, a, b in rows] + [""]
    return _write("\n".join(lines), {"bench": "planners", "markdown": "\n".join(lines)}, out)


def bench_svg(quick: bool = False, out: Optional[str] = None) -> str:
    """SAC-SVG(H) train throughput against SAC with the same settings, one process (Amos et al. 2021).

    Runs configs/sac/cartpole_swingup.yaml (SAC), configs/svg/cartpole_swingup.yaml with horizon 0
    (SVG(0): SAC's update plus a GRU trained on the side) and with horizon 2 (SVG(2)), warm-up off so
    every step updates; times `chunks` jitted chunks after compiling. Ratio = SAC steps/s over the others'.
    """
    from mjxmbrl.config import load_config

    steps, chunks = (64, 2) if quick else (250, 4)
    common = [f"train.log_every={steps * 8}", "train.warmup_env_steps=0", "log.wandb=disabled", "log.progress=false"]
    small = ["agent.hidden_sizes=[32,32]", "agent.batch_size=64"] if quick else []
    small_model = ["model.encoder_sizes=[16]", "model.gru_size=16", "model.decoder_sizes=[16]", "agent.head_sizes=[16]",
                   "model.batch_size=32"] if quick else []
    runs = {
        # SAC with SVG's critic settings and update rate (one-step targets, no layer norm, one update per agent
        # step), so the ratio is the model's cost.
        "sac": load_config("configs/sac/cartpole_swingup.yaml", common + small + ["agent.n_step=1", "agent.critic_layer_norm=false",
                                                                                 "train.updates_per_step=1"]),
        "svg(0)": load_config("configs/svg/cartpole_swingup.yaml", common + small + small_model + ["agent.horizon=0", "model.seq_len=2"]),
        "svg(2)": load_config("configs/svg/cartpole_swingup.yaml", common + small + small_model),
    }
    rows = []
    for name, cfg in runs.items():
        components = build(cfg)
        chunk = make_train_chunk(components, steps)
        ts = init_state(components)
        (ts, _), compile_s = timed(chunk, ts)  # fills the buffer with one batch's worth of steps first
        times = []
        for _ in range(chunks):
            (ts, _), dt = timed(chunk, ts)
            times.append(dt)
        per_chunk = sorted(times)[len(times) // 2]
        rows.append((name, compile_s, per_chunk, steps * cfg.env.num_envs * cfg.env.action_repeat / per_chunk, steps / per_chunk))
    sac_rate = rows[0][3]
    lines = [
        f"### SAC-SVG(H) throughput against SAC ({'quick' if quick else 'CartpoleSwingup, DMC-100k settings'})",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {platform.node()} ({platform.machine()}, "
        f"{jax.devices()[0].platform.upper()} x{jax.device_count()} {jax.devices()[0].device_kind}, {_cpu_count()} cores); jax {jax.__version__}",
        f"- command: `mjxmbrl bench svg{' --quick' if quick else ''}`",
        "- configs: configs/sac/cartpole_swingup.yaml and configs/svg/cartpole_swingup.yaml (H = 0 and 2), warm-up off; "
        f"{steps} agent steps per chunk (1 env, action repeat 8, 1 learner update and, for SVG, 1 GRU update per agent step); "
        f"median of {chunks} chunks after compiling",
        "",
        "| agent | compile s | chunk s | env steps/s | agent steps/s | SAC / this |",
        "| --- | --- | --- | --- | --- | --- |",
    ] + [f"| {n} | {c:.1f} | {t:.2f} | {r:,.0f} | {a:,.1f} | {sac_rate / r:.2f} |" for n, c, t, r, a in rows] + [""]
    return _write("\n".join(lines), {"bench": "svg", "markdown": "\n".join(lines), "rows": [dict(zip(("agent", "compile_s", "chunk_s", "env_steps_per_s", "agent_steps_per_s"), r)) for r in rows]}, out)


def _machine() -> str:
    dev = jax.devices()[0]
    return (f"{platform.node()} ({platform.machine()}, {dev.platform.upper()} x{jax.device_count()} {dev.device_kind}, "
            f"{_cpu_count()} cores); jax {jax.__version__}")


def _write(report: str, record: dict, out: Optional[str]) -> str:
    """Appends the markdown to `out` and the record to the JSON list next to it (`out` with .json)."""
    if out:
        import json
        from pathlib import Path

        with open(out, "a") as f:
            f.write(report + "\n")
        path = Path(out).with_suffix(".json")
        records = json.loads(path.read_text()) if path.is_file() else []
        records.append({"date": datetime.date.today().isoformat(), "machine": _machine(), **record})
        path.write_text(json.dumps(records, indent=1) + "\n")
    return report


def env_throughput(name: str, num_envs: int, steps: int, calls: int = 3) -> tuple:
    """(compile s, best call s, env steps/s) of one jitted call: reset + `steps` vectorised env.step
    with uniform random actions, auto-reset on (MJX JAX backend); best of `calls` after compiling."""
    from mjxmbrl.envs import make_vector_env

    env = make_vector_env(name, num_envs, impl="jax", auto_reset=True)

    @jax.jit
    def run(key):
        state = env.reset(key)

        def body(state, k):
            action = jax.random.uniform(k, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
            return env.step(state, action), None

        return jax.lax.scan(body, state, jax.random.split(key, steps))[0].reward

    _, compile_s = timed(run, jax.random.PRNGKey(0))
    best = min(timed(run, jax.random.PRNGKey(i + 1))[1] for i in range(calls))
    return compile_s, best, num_envs * steps / best


def bench_scaling(quick: bool = False, out: Optional[str] = None, env_name: str = "CartpoleSwingup") -> str:
    """Env steps/s against the number of parallel envs: jitted scan of env.step with uniform actions (no learning).

    Sizes: 1..1024 envs on a CPU, 1..4096 on an accelerator (quick: 1, 8 on the toy task). Best of 3 calls
    after compiling, `steps` vectorised steps each.
    """
    on_cpu = jax.devices()[0].platform == "cpu"
    sizes = (1, 8) if quick else ((1, 16, 64, 256, 1024) if on_cpu else (1, 64, 256, 1024, 2048, 4096))
    name = "toy_reach" if quick else env_name
    steps = 20 if quick else 100
    rows = [(n, *env_throughput(name, n, steps)) for n in sizes]
    lines = [
        f"### Env steps/s against parallel envs ({name}, impl jax)",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {_machine()}",
        f"- command: `mjxmbrl bench scaling{' --quick' if quick else ''}`",
        f"- one call: reset + {steps} vectorised steps with uniform random actions, auto-reset on; best of 3 after compiling",
        "",
        "| envs | compile s | call s | env steps/s |",
        "| --- | --- | --- | --- |",
    ] + [f"| {n} | {c:.1f} | {t:.3f} | {r:,.0f} |" for n, c, t, r in rows] + [""]
    record = {"bench": "scaling", "env": name, "rows": [{"num_envs": n, "env_steps_per_s": r} for n, _, _, r in rows]}
    return _write("\n".join(lines), record, out)


def _chunk_time(cfg, steps: int, calls: int = 3) -> tuple:
    """(compile s, median s) of `calls` jitted chunks of `steps` train steps of `cfg` (all seeds of the run)."""
    from mjxmbrl.train import init_run_state

    components = build(cfg)
    chunk = make_train_chunk(components, steps)
    ts = init_run_state(components)
    (ts, _), compile_s = timed(chunk, ts)
    # Fill the buffer past one batch first: before that a single seed skips its updates (lax.cond), while
    # vmapped seeds run both branches of that cond, which would compare unequal work.
    while int(np.asarray(ts.replay.size).reshape(-1)[0]) * cfg.env.num_envs < cfg.agent.batch_size:
        ts, _ = chunk(ts)
    times = []
    for _ in range(calls):
        (ts, _), dt = timed(chunk, ts)
        times.append(dt)
    return compile_s, sorted(times)[len(times) // 2]


def bench_seeds(quick: bool = False, out: Optional[str] = None) -> str:
    """Cost of S seeds vmapped in one program against one seed (and S sequential runs = S x one seed).

    SAC on configs/sac/cartpole_swingup.yaml (quick: configs/debug.yaml with tiny networks), warm-up off,
    one chunk timed after compiling. S = 4 on a CPU, 8 on an accelerator.
    """
    from mjxmbrl.config import load_config

    on_cpu = jax.devices()[0].platform == "cpu"
    seeds = 2 if quick else (4 if on_cpu else 8)
    steps = 16 if quick else 100
    path = "configs/debug.yaml" if quick else "configs/sac/cartpole_swingup.yaml"
    base = ["train.warmup_env_steps=0", "log.wandb=disabled", "log.progress=false"] + (["agent.hidden_sizes=[16,16]", "agent.batch_size=32"] if quick else [])
    c1, t1 = _chunk_time(load_config(path, base), steps)
    cs, ts = _chunk_time(load_config(path, base + [f"train.num_seeds={seeds}"]), steps)
    lines = [
        f"### {seeds} vmapped seeds against one seed ({path})",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {_machine()}",
        f"- command: `mjxmbrl bench seeds{' --quick' if quick else ''}`",
        f"- one chunk of {steps} train steps, warm-up off (every step updates), median of 3 after compiling",
        "",
        "| run | compile s | chunk s | time / one seed | time / (S sequential seeds) |",
        "| --- | --- | --- | --- | --- |",
        f"| 1 seed | {c1:.1f} | {t1:.3f} | 1.00 | - |",
        f"| {seeds} seeds, vmapped | {cs:.1f} | {ts:.3f} | {ts / t1:.2f} | {ts / (seeds * t1):.2f} |",
        "",
    ]
    record = {"bench": "seeds", "config": path, "seeds": seeds, "one_seed_s": t1, "vmapped_s": ts, "ratio_to_one_seed": ts / t1}
    return _write("\n".join(lines), record, out)


def bench_memory(quick: bool = False, out: Optional[str] = None) -> str:
    """Peak device memory of each default config's jitted train chunk.

    On an accelerator: the device's peak_bytes_in_use after one chunk (fresh process per config is not
    needed for an upper bound: the figure is read after that config's chunk). On a CPU (no allocator
    statistics): XLA's compiled memory analysis, arguments + outputs + temporaries of the chunk.
    """
    from mjxmbrl.config import load_config
    from mjxmbrl.run.chunks import chunk_plan
    from mjxmbrl.train import init_run_state

    paths = ["configs/debug.yaml"] if quick else [
        "configs/debug.yaml", "configs/sac/cartpole_swingup.yaml", "configs/sac/walker_walk.yaml",
        "configs/svg/cartpole_swingup.yaml", "configs/svg/walker_walk.yaml",
    ]
    overrides = ["log.wandb=disabled", "log.progress=false"] + (["replay.capacity=20000"] if quick else [])
    rows = []
    for path in paths:
        cfg = load_config(path, overrides)
        components = build(cfg)
        steps = chunk_plan(cfg)["steps_per_chunk"]
        chunk = make_train_chunk(components, steps)
        ts = init_run_state(components)
        stats = jax.devices()[0].memory_stats()
        if stats and "peak_bytes_in_use" in stats:
            jax.block_until_ready(chunk(ts))
            peak, how = jax.devices()[0].memory_stats()["peak_bytes_in_use"], "allocator peak"
        else:
            analysis = chunk.lower(ts).compile().memory_analysis()
            peak = analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
            how = "XLA memory analysis"
        rows.append((path, cfg.replay.capacity, peak, how))
    lines = [
        "### Peak device memory of the default configs (one train chunk)",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {_machine()}",
        f"- command: `mjxmbrl bench memory{' --quick' if quick else ''}`",
        "",
        "| config | replay capacity | peak MiB | how |",
        "| --- | --- | --- | --- |",
    ] + [f"| {p} | {c:,} | {b / 2**20:,.1f} | {h} |" for p, c, b, h in rows] + [""]
    record = {"bench": "memory", "rows": [{"config": p, "peak_bytes": b, "how": h} for p, _, b, h in rows]}
    return _write("\n".join(lines), record, out)


ACTING_CONFIG = "configs/byravan/cartpole_swingup_mpc_mpo_bc.yaml"


def _or_dash(row: dict, mode: str, key: str, fmt: str) -> str:
    return format(row[mode][key], fmt) if mode in row else "–"


def bench_acting(
    quick: bool = False,
    out: Optional[str] = None,
    config: Optional[str] = None,
    envs: Optional[Sequence[int]] = None,
    steps: Optional[int] = None,
    overrides: Sequence[str] = (),
    calls: int = 3,
) -> str:
    """Cost per env step of acting with the planner against the amortized policy alone (Byravan et al. 2022).

    An agent without a policy (POLO, MPC: `agent.eval_modes` has no "policy") is timed planning only: the
    plan time per env step (Lowrey et al. 2019's MPPI on the simulator with the value ensemble, say).

    Builds the MPC+MPO+BC agent of `config` (default configs/byravan/cartpole_swingup_mpc_mpo_bc.yaml: SMC,
    S = 250 particles, H = 10, over the per-group MLP model) with env.num_envs = N for each N in `envs`
    (CPU default 1, 16, 64; accelerator 1, 256, 2048), with untrained parameters (the cost of a step does not
    depend on their values). For each act mode, "eval" (the actor: plans every step) and "policy" (the
    policy's mean, no planning), one jitted lax.scan runs `steps` vectorised steps of act + env.step
    (the policy mode 10x as many, its steps being cheap); timed after a warm-up call, best of `calls`.
    Ratio = ms per step of "eval" / ms per step of "policy". Quick: the toy task, N = 1, S = 8, H = 2, 2 steps,
    16-unit networks.
    """
    from mjxmbrl.agents import EVAL, POLICY
    from mjxmbrl.config import load_config

    on_cpu = jax.devices()[0].platform == "cpu"
    path = config or ACTING_CONFIG
    sizes = tuple(envs) if envs else ((1,) if quick else ((1, 16, 64) if on_cpu else (1, 256, 2048)))
    plan_steps = steps or (2 if quick else (5 if on_cpu else 20))
    # Quick: the toy task and tiny networks, so that it compiles in seconds (the tests run it).
    small = ["env.name=toy_reach", "env.action_repeat=1", "agent.policy_hidden_sizes=[16]", "agent.critic_hidden_sizes=[16]",
             "model.hidden_sizes=[16]", "model.head_sizes=[16]", "planner.num_particles=8", "planner.horizon=2"] if quick else []
    base = ["log.wandb=disabled", "log.progress=false", "replay.capacity=1000"] + small + list(overrides)
    rows = []
    for n in sizes:
        cfg = load_config(path, base + [f"env.num_envs={n}"])
        components = build(cfg)
        env, agent = components.env, components.agent
        # As init_state, without the replay this bench does not use; jitted: op by op it takes longer.
        setup = jax.jit(lambda root: (agent.init(root), agent.init_carry(jax.random.fold_in(root, 2), n),
                                      env.reset(jax.random.fold_in(root, 3))))
        state, carry, env_state = setup(jax.random.PRNGKey(cfg.train.seed))
        per_step = n * cfg.env.action_repeat

        def make_run(mode, k):
            @jax.jit
            def run(key, state, carry, env_state):
                def body(c, inputs):
                    carry, env_state, finite = c
                    k_act, t = inputs
                    env_steps = (t * per_step).astype(jnp.int32)
                    action, carry, _, _ = agent.act(k_act, state, carry, env_state, env_steps, mode)
                    finite = finite & jnp.all(jnp.isfinite(action))
                    return (carry, env.step(env_state, action), finite), None

                inputs = (jax.random.split(key, k), jnp.arange(k))
                return jax.lax.scan(body, (carry, env_state, jnp.array(True)), inputs)[0]

            return run

        row = {"num_envs": n}
        modes = ((EVAL, plan_steps), (POLICY, 10 * plan_steps)) if POLICY in agent.eval_modes else ((EVAL, plan_steps),)
        for mode, k in modes:
            run = make_run(mode, k)
            (_, _, finite), compile_s = timed(run, jax.random.PRNGKey(1), state, carry, env_state)
            best = min(timed(run, jax.random.PRNGKey(2 + i), state, carry, env_state)[1] for i in range(calls))
            row[mode] = {"steps": k, "compile_s": compile_s, "ms_per_step": best / k * 1e3,
                         "agent_steps_per_s": n * k / best, "env_steps_per_s": per_step * k / best,
                         "actions_finite": bool(finite)}
        row["ratio"] = row[EVAL]["ms_per_step"] / row[POLICY]["ms_per_step"] if POLICY in row else None
        rows.append(row)
    has_policy = POLICY in agent.eval_modes

    p = cfg.planner
    command = "mjxmbrl bench acting" + (" --quick" if quick else "")
    command += f" --config {config}" if config else ""
    command += f" --envs {','.join(map(str, envs))}" if envs else ""
    command += f" --steps {steps}" if steps else ""
    command += "".join(f" {o}" for o in overrides)
    samples = getattr(p, "num_particles", getattr(p, "num_samples", "-"))
    what = "against the policy alone" if has_policy else "(the agent has no policy: plan time only)"
    lines = [
        f"### Acting with {p.name.upper()} {what} ({cfg.env.name}, {path})",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {_machine()}",
        f"- command: `{command}`",
        f"- agent: {cfg.agent.name} + {p.name} (S = {samples} samples, H = {p.horizon}, "
        f"proposal {getattr(p, 'proposal', '-')}, value {getattr(p, 'value', '-')}) over model {cfg.model.name}; "
        f"action repeat {cfg.env.action_repeat}; untrained parameters (timing only)",
        f"- one call: lax.scan of act + env.step, {plan_steps} vectorised steps planning (mode eval)"
        + (f", {10 * plan_steps} with the policy mean (mode policy)" if has_policy else "")
        + f"; best of {calls} after a warm-up call; "
        "agent steps/s = N x steps / s, env steps/s counts action repeats",
        "",
        "| envs N | plan ms/step | policy ms/step | plan agent steps/s | policy agent steps/s | "
        "plan env steps/s | policy env steps/s | ratio plan / policy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ] + [
        f"| {r['num_envs']} | {r[EVAL]['ms_per_step']:.2f} | {_or_dash(r, POLICY, 'ms_per_step', '.3f')} | "
        f"{r[EVAL]['agent_steps_per_s']:,.0f} | {_or_dash(r, POLICY, 'agent_steps_per_s', ',.0f')} | "
        f"{r[EVAL]['env_steps_per_s']:,.0f} | {_or_dash(r, POLICY, 'env_steps_per_s', ',.0f')} | "
        + ("–" if r["ratio"] is None else f"{r['ratio']:.1f}") + " |"
        for r in rows
    ] + [""]
    record = {
        "bench": "acting", "config": path, "env": cfg.env.name, "action_repeat": cfg.env.action_repeat,
        "planner": p.name, "num_particles": None if samples == "-" else samples, "horizon": p.horizon,
        "overrides": list(overrides),
        "model": cfg.model.name, "untrained": True, "command": command, "markdown": "\n".join(lines), "rows": rows,
    }
    return _write("\n".join(lines), record, out)
