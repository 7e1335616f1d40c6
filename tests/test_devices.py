"""train.devices: envs and replay rows sharded over a 1-D mesh of 2 forced host CPU devices.

Each check runs in a subprocess, since the device count is fixed when JAX starts:
XLA_FLAGS=--xla_force_host_platform_device_count=2, JAX_PLATFORMS=cpu.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from jax.sharding import PartitionSpec as P

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    return env


SCRIPT = r"""
import json, sys
import jax, numpy as np
from mjxmbrl.config import load_config
from mjxmbrl.run.devices import ENV_AXIS, make_mesh, place, state_shardings
from mjxmbrl.train import build, init_run_state, make_train_chunk

assert jax.device_count() == 2, jax.devices()
base = ["log.wandb=disabled", "log.progress=false", "train.warmup_env_steps=8", "agent.hidden_sizes=[16]",
        "agent.batch_size=16", "env.num_envs=4", "train.updates_per_step=1"]
out, specs = {}, {}
for devices in (1, 2):
    cfg = load_config(sys.argv[1], base + [f"train.devices={devices}"])
    components = build(cfg)
    mesh = make_mesh(cfg)
    shardings = state_shardings(jax.eval_shape(lambda: init_run_state(components)), mesh, 4, False)
    ts = place(init_run_state(components), shardings)
    chunk = make_train_chunk(components, 8, shardings)
    for _ in range(2):
        ts, metrics = chunk(ts)
    specs[devices] = {
        "mesh": int(mesh.size),
        "replay": str(ts.replay.data.obs.sharding.spec),
        "env_obs": str(ts.env_state.obs.sharding.spec),
        "replay_shard_shape": list(ts.replay.data.obs.addressable_shards[0].data.shape),
        "actor": str(jax.tree.leaves(ts.agent.learner.actor_params)[0].sharding.spec),
        "learning": float(np.asarray(metrics["train/learning"]).sum()),
    }
    out[devices] = jax.device_get(ts)

worst, checked = 0.0, 0
for (path, x), (_, y) in zip(jax.tree_util.tree_flatten_with_path(out[1].agent.learner)[0],
                             jax.tree_util.tree_flatten_with_path(out[2].agent.learner)[0]):
    x, y = np.asarray(x), np.asarray(y)
    assert np.allclose(x, y, rtol=1e-5, atol=1e-6), (jax.tree_util.keystr(path), float(np.abs(x - y).max()))
    worst = max(worst, float(np.abs(x.astype(np.float64) - y).max()) if x.size else 0.0)
    checked += 1
# Actions of slightly different params move the point mass slightly differently: close, not equal.
np.testing.assert_allclose(np.asarray(out[1].replay.data.obs), np.asarray(out[2].replay.data.obs), rtol=1e-5, atol=1e-5)
moved = not np.allclose(np.asarray(jax.tree.leaves(out[2].agent.learner.actor_params)[0]),
                        np.asarray(jax.tree.leaves(init_run_state(components).agent.learner.actor_params)[0]))

# Two seeds: the env axis (axis 1 of env leaves, axis 2 of replay rows) is the sharded one.
cfg = load_config(sys.argv[1], base + ["train.devices=2", "train.num_seeds=2"])
components = build(cfg)
stacked = state_shardings(jax.eval_shape(lambda: init_run_state(components)), make_mesh(cfg), 4, True)
print(json.dumps({"specs": specs, "worst": worst, "checked": checked, "moved": moved,
                  "stacked_replay": str(stacked.replay.data.obs.spec), "stacked_env": str(stacked.env_state.obs.spec),
                  "stacked_params": str(jax.tree.leaves(stacked.agent.learner.actor_params)[0].spec)}))
"""


def test_two_devices_match_one_device(tmp_path):
    """The same global batch on a 2-device mesh and on 1 device: learner leaves allclose (rtol 1e-5, atol 1e-6).

    Measured on a 2-core CPU: largest difference about 1e-7 (float32 sums in another order); the
    replay contents agree to 1e-5.
    """
    script = tmp_path / "two_devices.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(ROOT / "configs/debug.yaml")],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"largest |2 devices - 1 device| over {result['checked']} learner leaves: {result['worst']:.3g}")
    one, two = result["specs"]["1"], result["specs"]["2"]
    assert two["mesh"] == 2 and one["mesh"] == 1
    assert two["replay"] == str(P(None, 'envs')) and two["env_obs"] == str(P('envs'))
    assert two["replay_shard_shape"][1] == 2  # each device holds 2 of the 4 envs' rows
    assert two["actor"] == str(P())  # parameters replicated
    assert one["learning"] == two["learning"] > 0 and result["moved"]
    assert result["stacked_replay"] == str(P(None, None, 'envs'))
    assert result["stacked_env"] == str(P(None, 'envs'))
    assert result["stacked_params"] == str(P())


def _cli(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "mjxmbrl.cli", "train", str(ROOT / "configs/debug.yaml"),
         "log.wandb=disabled", "log.progress=false", f"log.runs_dir={tmp_path / 'runs'}", *args],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )


def test_device_count_errors_through_the_cli(tmp_path):
    proc = _cli(tmp_path, "env.num_envs=3", "train.devices=2")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: train.devices=2 does not divide env.num_envs=3: every device steps an equal share of the envs"
    proc = _cli(tmp_path, "train.devices=4")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: train.devices=4, but only 2 cpu device(s) are available"), proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing written


def test_automatic_device_count_divides_the_envs():
    from mjxmbrl.run.devices import auto_device_count

    assert auto_device_count(8, 1) == 1  # a DMC-100k config (one env) on an 8-GPU node runs on one GPU
    assert auto_device_count(8, 256) == 8
    assert auto_device_count(8, 12) == 6
    assert auto_device_count(2, 3) == 1
    assert auto_device_count(1, 7) == 1
