"""Cost of one model update of the pixel RSSM (PlaNet's CNN encoder and decoder) at several window batches.

Builds the model of configs/gradmpc/planet_pixels_cartpole_swingup.yaml with model.batch_size=B and
model.seq_len=T, and times its jitted `ModelTrainer.update` on random frames: compile and first call, then
the mean of `--reps` calls. This is what sets the update rate a pixel run can afford (docs/gradmpc.md,
"From pixels"): the paper's 50 x 50 windows, and the CPU budget's 16 x 32.

    JAX_PLATFORMS=cpu python benchmarks/pixel_update_cost.py [--shapes 50x50 16x32] [--reps 3] [--out FILE]

Prints one line per shape and writes the JSON record to FILE (default docs/results/render-cost/pixel_update_cost.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/gradmpc/planet_pixels_cartpole_swingup.yaml"


def measure(batch_size: int, seq_len: int, reps: int) -> dict:
    from mjxmbrl.config import load_config
    from mjxmbrl.models import make_model
    from mjxmbrl.models.trainer import make_model_trainer
    from mjxmbrl.types import Transition

    cfg = load_config(CONFIG, [f"model.batch_size={batch_size}", f"model.seq_len={seq_len}", "log.wandb=disabled"])
    obs_size = cfg.env.image_size**2 * 3
    trainer = make_model_trainer(make_model(cfg.model, cfg.env, obs_size=obs_size, action_size=1), cfg.model)
    state = trainer.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    shape = (batch_size, seq_len)
    frames = jax.random.uniform(key, shape + (obs_size,), minval=-0.5, maxval=0.5)
    batch = Transition(obs=frames, action=jnp.zeros(shape + (1,)), reward=jnp.zeros(shape), next_obs=frames,
                       terminated=jnp.zeros(shape), truncated=jnp.zeros(shape))
    update = jax.jit(trainer.update)
    start = time.perf_counter()
    state, metrics = update(key, state, batch, jnp.ones(shape))
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(reps):
        state, metrics = update(key, state, batch, jnp.ones(shape))
    jax.block_until_ready(metrics)
    per_update = (time.perf_counter() - start) / reps
    return {"batch_size": batch_size, "seq_len": seq_len, "frames": batch_size * seq_len,
            "compile_and_first_s": first, "update_s": per_update, "ms_per_frame": 1000 * per_update / (batch_size * seq_len)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["50x50", "16x32"], help="BxT window batches")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "docs/results/render-cost/pixel_update_cost.json"))
    args = parser.parse_args()
    os.chdir(ROOT)
    rows = []
    for shape in args.shapes:
        b, t = (int(x) for x in shape.split("x"))
        rows.append(measure(b, t, args.reps))
        r = rows[-1]
        print(f"B={b} T={t} ({r['frames']} frames): compile + first {r['compile_and_first_s']:.1f} s, "
              f"update {r['update_s']:.2f} s, {r['ms_per_frame']:.2f} ms per frame", flush=True)
    from mjxmbrl.cli.reproduce import machine_description

    record = {
        "benchmark": "pixel_update_cost", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(),  # host, CPU model, jax, backend, load average: as `reproduce` records it
        "command": "JAX_PLATFORMS=cpu python benchmarks/pixel_update_cost.py --shapes " + " ".join(args.shapes),
        "config": CONFIG, "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"record: {args.out}")


if __name__ == "__main__":
    main()
