"""Train-step cost of PlaNet from pixels against PlaNet from proprioceptive observations (CPU smoke sizes).

Builds configs/gradmpc/planet_pixels_cartpole_swingup.yaml with the smoke overrides below (a tiny CEM
and model batch, so the figures show the per-step cost of rendering, the CNN filter and the CNN update,
not PlaNet's full planner) and the same config with env.pixels=false, model.pixels=false. For each:
one jitted chunk of `--chunk` agent steps compiled, then timed (median of `--reps`) in the warm-up
(plan + render, no model update) and after it (plus one model update per agent step).

    MUJOCO_GL=egl JAX_PLATFORMS=cpu python benchmarks/pixel_train_step.py [--chunk 8] [--reps 3] [--out FILE]

writes the JSON record to FILE (default docs/results/render-cost/pixel_train_step.json).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import jax

CONFIG = "configs/gradmpc/planet_pixels_cartpole_swingup.yaml"
SMOKE = [
    "planner.num_samples=16", "planner.iterations=2", "planner.horizon=4", "model.batch_size=4", "model.seq_len=8",
    "model.updates_per_step=1", "train.update_every=1", "replay.capacity=1000", "env.episode_length=1000",
    "log.wandb=disabled",
]


def measure(overrides, chunk: int, reps: int) -> dict:
    from mjxmbrl.config import load_config
    from mjxmbrl.train import build, init_state, make_train_chunk

    cfg = load_config(CONFIG, SMOKE + [f"train.warmup_env_steps={8 * chunk * (reps + 1)}"] + overrides)
    components = build(cfg)
    run = make_train_chunk(components, chunk)
    ts = init_state(components)
    start = time.perf_counter()
    ts, _ = run(ts)
    jax.block_until_ready(ts)
    compile_s = time.perf_counter() - start
    out = {"pixels": cfg.env.pixels, "compile_and_first_chunk_s": compile_s}
    for phase in ("warmup", "learning"):
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            ts, metrics = run(ts)
            jax.block_until_ready(ts)
            times.append(time.perf_counter() - start)
        if phase == "learning":
            out["model_learning"] = float(metrics["train/model_learning"][-1])
        agent_ms = 1e3 * statistics.median(times) / chunk
        out[f"{phase}_ms_per_agent_step"] = agent_ms
        out[f"{phase}_ms_per_env_step"] = agent_ms / (cfg.env.num_envs * cfg.env.action_repeat)
    print(out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "results" / "render-cost" / "pixel_train_step.json"))
    args = parser.parse_args()
    load = [round(x, 2) for x in os.getloadavg()]
    rows = [measure([], args.chunk, args.reps), measure(["env.pixels=false", "model.pixels=false"], args.chunk, args.reps)]
    record = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} ({jax.default_backend()})",
        "command": f"python benchmarks/pixel_train_step.py --chunk {args.chunk} --reps {args.reps}",
        "config": CONFIG, "overrides": SMOKE, "chunk": args.chunk, "reps": args.reps,
        "load_before": load, "load_after": [round(x, 2) for x in os.getloadavg()], "rows": rows,
    }
    print(json.dumps(record, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
