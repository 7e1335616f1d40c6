"""`mjxmbrl bench gpu`: every part measures in quick mode; a broken, slow or squeezed-out part is recorded and
makes the call fail; benchmarks/gpu_wheels.sh is ready and names what the GPU image lacks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mjxmbrl.cli import main
from mjxmbrl.cli.bench_gpu import PARTS, run_gpu_bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-gpu")
    rc = main(["bench", "gpu", "--quick", "--out", str(out)])
    return rc, out


def test_quick_run_measures_every_part(quick_run):
    rc, out = quick_run
    record = json.loads((out / "bench-gpu.json").read_text())
    assert rc == 0, [(p["name"], p["status"], p.get("log_tail")) for p in record["parts"]]
    assert [p["name"] for p in record["parts"]] == list(PARTS) and record["ok"] and record["quick"]
    for p in record["parts"]:
        assert p["status"] == "ok" and p["rows"] and 0 < p["wall_s"] <= p["cap_s"], p["name"]
        assert p["devices"] and p["jax"], p["name"]
        numbers = [v for row in p["rows"] for k, v in row.items() if k.endswith(("_per_s", "_s", "_step", "return"))]
        assert numbers and all(isinstance(v, (int, float)) and v == v for v in numbers), (p["name"], p["rows"])
    rates = {p["name"]: p["rows"][0] for p in record["parts"]}
    assert rates["env-humanoid"]["env_steps_per_s"] > 0 and rates["sac"]["env_steps_per_s"] > 0
    assert rates["seeds"]["seeds"] == 2 and rates["dmc100k"]["seeds"] == 2 and rates["dmc100k"]["env_steps"] == 800
    assert len(rates["dmc100k"]["per_seed_final"]) == 2
    # A device call brings back at most 8 files from $OUT.
    assert sorted(p.name for p in out.iterdir()) == ["bench-gpu.json", "bench-gpu.log", "bench-gpu.md", "dmc100k-learning_curve.png"]
    assert rates["svg"]["agent"] == "svg(2)" and rates["smc"]["plan_ms_per_step"] > 0 and rates["smc"]["actions_finite"]
    text = (out / "bench-gpu.md").read_text()
    assert text.startswith("## GPU: one call measures everything (quick)") and "`mjxmbrl bench gpu --quick" in text
    assert all(f"### {name}:" in text for name in PARTS)


CHILD = r"""
import json, sys, time
part, result = sys.argv[1], sys.argv[2]
if part == "sac":
    raise SystemExit("boom: a broken part")
json.dump({"rows": [{"env_steps_per_s": 1.0}], "done": part != "seeds"}, open(result, "w"))
if part == "seeds":
    time.sleep(120)
"""


def test_broken_slow_and_squeezed_out_parts_are_recorded_and_fail_the_call(tmp_path):
    """A part that exits non-zero is an error (its log kept), one past its cap a timeout (its finished rows
    kept), one the budget no longer allows is skipped; the call returns 1 with everything written."""
    rc = run_gpu_bench(tmp_path, quick=True, parts=["env-cartpole", "sac", "seeds", "dmc100k"], budget_s=25,
                       caps={"seeds": 6}, child=[sys.executable, "-c", CHILD])
    assert rc == 1
    record = json.loads((tmp_path / "bench-gpu.json").read_text())
    status = {p["name"]: p for p in record["parts"]}
    assert [p["status"] for p in record["parts"]] == ["ok", "error", "timeout", "skipped"] and not record["ok"]
    assert any("boom: a broken part" in line for line in status["sac"]["log_tail"])
    assert status["seeds"]["rows"] == [{"env_steps_per_s": 1.0}] and 6 <= status["seeds"]["wall_s"] < 30
    assert "left of the 25 s budget" in status["dmc100k"]["reason"]
    text = (tmp_path / "bench-gpu.md").read_text()
    assert "| sac | error |" in text and "| seeds | timeout |" in text and "| dmc100k | skipped |" in text


def test_bench_gpu_options_are_checked(capsys):
    assert main(["bench", "gpu", "--parts", "env-cartpole,nope"]) == 1
    assert main(["bench", "sac", "--budget", "10"]) == 1
    assert main(["bench", "gpu", "--envs", "16"]) == 1
    err = capsys.readouterr().err
    assert "unknown part(s) nope" in err and "belong to `mjxmbrl bench gpu`" in err and "belong to `mjxmbrl bench acting`" in err


def test_gpu_env_names_are_registered():
    """The quick run steps the toy task in every env part; the device's names must exist all the same."""
    from mjxmbrl.envs.registry import get_spec

    for name in ("CartpoleSwingup", "WalkerWalk", "HumanoidWalk"):
        assert get_spec(name).name == name


def test_gpu_wheels_script_is_ready_and_its_dry_run_names_the_wheels():
    script = ROOT / "benchmarks" / "gpu_wheels.sh"
    assert script.is_file() and os.access(script, os.X_OK)
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run([str(script), "--dry-run"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    fetched = {line.split()[-1].split("==")[0] for line in proc.stdout.splitlines() if line.startswith("would fetch ")}
    assert {"mujoco", "mujoco-core", "mujoco-mjx", "playground", "brax", "pyyaml", "tqdm", "trimesh", "lxml"} <= fetched
    assert not fetched & {"warp-lang", "wandb", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"}
    assert "--python-version 3.12" in proc.stdout and "pip wheel . -q --no-deps" in proc.stdout
    assert "--no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl" in proc.stdout
    assert "/.whl/" in (ROOT / ".gitignore").read_text().splitlines()


def test_gpu_wheels_script_names_missing_packages_in_a_dry_run_and_refuses_to_download_without_them(tmp_path):
    """CI's Python may lack a pinned dependency (tzdata came with one python-dateutil and not another)."""
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')  # -S: no site-packages, so nothing is installed
    bare.chmod(0o755)
    env = dict(os.environ, PYTHON=str(bare))
    script = str(ROOT / "benchmarks" / "gpu_wheels.sh")
    dry = subprocess.run([script, "--dry-run"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would fetch tzdata\n" in dry.stdout and "tzdata is not installed" in dry.stderr
    wheels = ROOT / ".whl"
    before = sorted(wheels.iterdir()) if wheels.is_dir() else None
    real = subprocess.run([script], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert real.returncode != 0 and "is not installed" in real.stderr
    assert (sorted(wheels.iterdir()) if wheels.is_dir() else None) == before  # collected wheels are kept
