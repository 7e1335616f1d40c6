"""Installs that work outside a checkout: the wheel carries every config a command names, and runs one.

Builds the wheel of this checkout offline (`pip wheel --no-build-isolation`, setuptools from the test
extras), checks that every `configs/...yaml` named by an experiment, by the README or by the package's
own code is inside it, then installs it into a fresh virtual environment (its dependencies seen from
this one's site-packages) and runs a README command from an empty directory outside the checkout.
"""

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mjxmbrl.config import SHIPPED_CONFIGS, ConfigError, resolve_config_path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_NAME = re.compile(r"configs/[A-Za-z0-9_./-]+\.ya?ml")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (path,) = out.glob("mjxmbrl-*.whl")
    return path


def named_configs() -> set:
    """Every config path an experiment cell, the README or the package's source names."""
    from mjxmbrl.experiments import list_experiments

    names = {cell.config for e in list_experiments() for cell in e.cells}
    names |= set(CONFIG_NAME.findall((ROOT / "README.md").read_text()))
    for source in (ROOT / "mjxmbrl").rglob("*.py"):
        names |= set(CONFIG_NAME.findall(source.read_text()))
    return names


def test_every_named_config_is_in_the_wheel(wheel):
    names = named_configs()
    assert "configs/debug.yaml" in names and any(n.startswith("configs/byravan/") for n in names)
    with zipfile.ZipFile(wheel) as z:
        shipped = {n.replace("mjxmbrl/configs/", "configs/", 1) for n in z.namelist() if n.startswith("mjxmbrl/configs/")}
        data = {n for n in z.namelist() if n.startswith("mjxmbrl/envs/data/")}
    missing = sorted(names - shipped)
    assert not missing, f"named but not in the wheel: {missing}"
    assert "mjxmbrl/envs/data/ant_gttp_poses.npz" in data  # AntGTTP's reference poses


def test_configs_path_falls_back_to_the_shipped_copy_and_a_local_file_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("configs/sac/cartpole_swingup.yaml") == SHIPPED_CONFIGS / "sac" / "cartpole_swingup.yaml"
    own = tmp_path / "configs" / "sac" / "cartpole_swingup.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("env: {name: CartpoleSwingup}\n")
    assert resolve_config_path("configs/sac/cartpole_swingup.yaml") == Path("configs/sac/cartpole_swingup.yaml")
    with pytest.raises(ConfigError, match="neither here nor among the shipped configs"):
        resolve_config_path("configs/sac/no_such_task.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config_path("elsewhere/debug.yaml")


@pytest.mark.slow
def test_readme_command_runs_from_the_installed_wheel_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # the dependencies come from the interpreter running the tests, also when that is itself a venv (whose packages
    # --system-site-packages does not see); its editable mjxmbrl stays out: nested .pth files are not processed
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    where = subprocess.run([str(python), "-c", "import mjxmbrl; print(mjxmbrl.__file__)"], cwd=work, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(venv)), where.stdout  # the wheel's copy, not the checkout's
    # Every experiment's cells load their config from the installed package (the issue's `reproduce` failure).
    check = ("from mjxmbrl.experiments import list_experiments; from mjxmbrl.config import load_config; "
             "cells = [c for e in list_experiments() for c in e.cells]; [load_config(c.config_path) for c in cells]; print(len(cells))")
    loaded = subprocess.run([str(python), "-c", check], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and int(loaded.stdout.split()[-1]) > 0, loaded.stderr[-3000:]
    tiny = ["train.total_env_steps=800", "train.warmup_env_steps=200", "train.eval_every=400", "train.log_every=400",
            "train.checkpoint_every=400", "train.eval_episodes=1", "log.progress=false", "log.wandb=disabled"]
    proc = subprocess.run(
        [str(venv / "bin" / "mjxmbrl"), "train", "configs/debug.yaml", *tiny], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (work / "runs").iterdir()
    assert (run / "metrics.jsonl").is_file() and (run / "summary.json").is_file()
