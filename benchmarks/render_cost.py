"""Cost of 64 x 64 RGB pixel observations rendered on the host from MJX states (envs/pixels.py).

For each task (CartpoleSwingup, WalkerWalk):

  (a) host loop: one frame = set qpos/qvel of an MjData, mj_forward, update_scene, render
      (mujoco.Renderer, camera 0), timed per frame over `--frames` states of an MJX rollout;
  (b) jitted: one env step of N envs (vmap) with and without the frame rendered through
      jax.pure_callback (PixelEnv.step, vmap_method "expand_dims": one callback per batch, and
      "sequential": one callback per env), per env step; the difference is the rendering cost;
  (c) the training env: one vectorised step (VectorEnv, action repeat 8, auto-reset) of N envs,
      proprioceptive against pixel observations (one frame per agent step, after the 8 sub-steps).

Prints a markdown report and writes it with the JSON record (default docs/results/render-cost/):

    MUJOCO_GL=egl JAX_PLATFORMS=cpu python benchmarks/render_cost.py [--quick] [--out DIR]

Timings: median over `--reps` calls after one warm-up call (compile and GL context excluded).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported (Mesa's software EGL on a CPU)

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def median_ms(fn, reps: int) -> float:
    jax.block_until_ready(fn())  # warm-up: compile, open the GL context
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def rollout_states(env, n: int, key):
    """n states of one env along a random-action rollout: (qpos [n, nq], qvel [n, nv]) on the host."""
    step = jax.jit(env.step)
    state = env.reset(key)
    qpos, qvel = [], []
    for i in range(n):
        action = jax.random.uniform(jax.random.fold_in(key, i), (env.action_size,), minval=-1, maxval=1)
        state = step(state, action)
        qpos.append(np.asarray(state.data.qpos))
        qvel.append(np.asarray(state.data.qvel))
    return np.stack(qpos), np.stack(qvel)


def host_loop_ms(mj_model, qpos, qvel, image_size: int) -> dict:
    """(a): per-frame cost of the plain host loop, split into mj_forward + update_scene and render."""
    import mujoco

    from mjxmbrl.envs.pixels import default_camera

    renderer = mujoco.Renderer(mj_model, height=image_size, width=image_size)
    data = mujoco.MjData(mj_model)
    camera = default_camera(mj_model)
    renderer.update_scene(data, camera=camera)
    renderer.render()  # first frame: GL set-up
    t_scene = t_render = 0.0
    for q, v in zip(qpos, qvel):
        start = time.perf_counter()
        data.qpos[:], data.qvel[:] = q, v
        mujoco.mj_forward(mj_model, data)
        renderer.update_scene(data, camera=camera)
        mid = time.perf_counter()
        renderer.render()
        end = time.perf_counter()
        t_scene += mid - start
        t_render += end - mid
    renderer.close()
    n = len(qpos)
    return {"frame_ms": 1e3 * (t_scene + t_render) / n, "forward_scene_ms": 1e3 * t_scene / n, "render_ms": 1e3 * t_render / n}


def jitted_rows(name: str, base_env, sizes, reps: int, image_size: int, methods) -> list:
    """(b): ms per env step of jit(vmap(step)) with and without the callback frame."""
    from mjxmbrl.envs.pixels import PixelEnv

    rows = []
    pix = {m: PixelEnv(base_env, image_size, vmap_method=m) for m in methods}
    for n in sizes:
        keys = jax.random.split(jax.random.PRNGKey(0), n)
        state = jax.jit(jax.vmap(pix[methods[0]].reset))(keys)
        action = jnp.zeros((n, base_env.action_size))
        base_step = jax.jit(jax.vmap(base_env.step))
        base_state = state.replace(obs=jax.jit(jax.vmap(base_env.reset))(keys).obs)
        row = {"task": name, "num_envs": n, "step_ms": median_ms(lambda: base_step(base_state, action), reps) / n}
        for m in methods:
            pix_step = jax.jit(jax.vmap(pix[m].step))
            row[f"pixel_step_ms_{m}"] = median_ms(lambda: pix_step(state, action), reps) / n
            row[f"render_ms_{m}"] = row[f"pixel_step_ms_{m}"] - row["step_ms"]
        rows.append(row)
        print(row, flush=True)
    for env in pix.values():
        env.renderer.close()
    return rows


def vector_rows(name: str, sizes, reps: int, action_repeat: int) -> list:
    """(c): ms per vectorised step (N envs, action repeat) of the training env, proprioceptive vs pixels."""
    from mjxmbrl.envs import make_vector_env

    rows = []
    for n in sizes:
        row = {"task": name, "num_envs": n, "action_repeat": action_repeat}
        for pixels in (False, True):
            env = make_vector_env(name, n, action_repeat=action_repeat, pixels=pixels)
            state = env.reset(jax.random.PRNGKey(0))
            action = jnp.zeros((n, env.action_size))
            row["pixels_ms" if pixels else "proprio_ms"] = median_ms(lambda: env.step(state, action), reps)
            if pixels:
                env.env.renderer.close()
        row["pixels_per_env_ms"] = row["pixels_ms"] / n
        rows.append(row)
        print(row, flush=True)
    return rows


def machine() -> str:
    """reproduce's machine line (host, cores, CPU model, jax backend, load) plus the GL backend."""
    from mjxmbrl.cli.reproduce import machine_description

    return f"{machine_description()}; MUJOCO_GL={os.environ.get('MUJOCO_GL')}"


def markdown(record: dict) -> str:
    lines = [
        f"- date: {record['date']}; machine: {record['machine']}",
        f"- command: `{record['command']}`; load average before/after: {record['load_before']} / {record['load_after']}",
        f"- frames {record['image_size']} x {record['image_size']} RGB, camera 0; median of {record['reps']} calls after a warm-up call",
        "",
        "(a) Plain host loop, per frame (mj_forward + update_scene, then render):",
        "",
        "| task | frame ms | forward + scene ms | render ms |",
        "| --- | --- | --- | --- |",
    ]
    for r in record["host"]:
        lines.append(f"| {r['task']} | {r['frame_ms']:.2f} | {r['forward_scene_ms']:.3f} | {r['render_ms']:.2f} |")
    methods = record["methods"]
    lines += [
        "",
        "(b) One jitted env step of N envs (vmap), per env step, without and with the frame "
        "(pure_callback; render = difference):",
        "",
        "| task | N | step ms | " + " | ".join(f"with frame ({m}) ms | render ({m}) ms" for m in methods) + " |",
        "| --- | --- | --- | " + " | ".join("--- | ---" for _ in methods) + " |",
    ]
    for r in record["jitted"]:
        cells = " | ".join(f"{r[f'pixel_step_ms_{m}']:.2f} | {r[f'render_ms_{m}']:.2f}" for m in methods)
        lines.append(f"| {r['task']} | {r['num_envs']} | {r['step_ms']:.3f} | {cells} |")
    lines += [
        "",
        f"(c) The training env (VectorEnv, action repeat {record['action_repeat']}, auto-reset): one vectorised step of N envs:",
        "",
        "| task | N | proprio ms | pixels ms | pixels ms per env |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in record["vector"]:
        lines.append(f"| {r['task']} | {r['num_envs']} | {r['proprio_ms']:.2f} | {r['pixels_ms']:.2f} | {r['pixels_per_env_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 1, 4; fewer frames and calls (a smoke run)")
    parser.add_argument("--tasks", default="CartpoleSwingup,WalkerWalk")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "render-cost"))
    args = parser.parse_args()
    sizes = (1, 4) if args.quick else (1, 16, 64)
    reps = args.reps or (2 if args.quick else 5)
    frames = args.frames or (20 if args.quick else 200)
    methods = ("expand_dims", "sequential")
    image_size, action_repeat = 64, 8

    from mjxmbrl.envs import make_env
    from mjxmbrl.envs.pixels import mj_model_of

    load_before = [round(x, 2) for x in os.getloadavg()]
    record = {
        "date": datetime.date.today().isoformat(), "machine": machine(), "image_size": image_size, "reps": reps,
        "command": "python benchmarks/render_cost.py" + (" --quick" if args.quick else ""),
        "methods": list(methods), "action_repeat": action_repeat, "host": [], "jitted": [], "vector": [],
    }
    for name in args.tasks.split(","):
        env = make_env(name)
        qpos, qvel = rollout_states(env, frames, jax.random.PRNGKey(1))
        host = {"task": name, "frames": frames, **host_loop_ms(mj_model_of(env), qpos, qvel, image_size)}
        print(host, flush=True)
        record["host"].append(host)
        record["jitted"] += jitted_rows(name, env, sizes, reps, image_size, methods)
        record["vector"] += vector_rows(name, sizes[-1:], reps, action_repeat)
    record["load_before"], record["load_after"] = load_before, [round(x, 2) for x in os.getloadavg()]
    report = markdown(record)
    print(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "render_cost.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "render_cost.md").write_text(report)
    print(f"wrote {out / 'render_cost.json'} and {out / 'render_cost.md'}")


if __name__ == "__main__":
    main()
