"""`mjxmbrl bench gpu`: one call that measures what an accelerator is lent for, within minutes.

Each part runs in its own process with a time cap (compile time counts), so a slow or broken part
cannot eat the others' time:

  env-cartpole, env-walker, env-humanoid  raw env steps/s at 4096, 1024 and 256 parallel envs (MJX JAX backend)
  sac       SAC train env steps/s, Playground settings (batch 512, 8 updates per vectorised step), 2048 and 1024 envs
  seeds     8 vmapped seeds against one (`mjxmbrl bench seeds`)
  dmc100k   one DMC-100k SAC cell (configs/sac/cartpole_swingup.yaml), 8 vmapped seeds, trained to the end
  svg       SVG(2) train env steps/s (configs/svg/cartpole_swingup.yaml)
  smc       SMC planning (S = 250, H = 10) per env step with 256 envs (`mjxmbrl bench acting`)

A part that outlives its cap, or the call's --budget, is killed and recorded as "timeout" with the rows it
had finished; one that fails is recorded as "error" with the end of its log; a part the budget no longer
allows is "skipped". Any of these makes the command exit 1, after everything is written. The parent process
never initialises JAX, so each part has the whole device to itself. OUT/bench-gpu.md and OUT/bench-gpu.json
are rewritten after every part (a call killed from outside keeps what it measured); OUT/bench-gpu.log holds
the parts' output, and the DMC-100k cell adds OUT/dmc100k-learning_curve.png: four files, as a device call
brings back at most eight. --quick: tiny sizes on the toy task, for CPU smoke tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

SAC_CONFIG = "configs/sac/cartpole_swingup.yaml"
SVG_CONFIG = "configs/svg/cartpole_swingup.yaml"
GPU_BUDGET_S = 450.0  # the whole call on a device: 7.5 minutes, within one 10-minute command with the install
QUICK_BUDGET_S = 900.0
QUICK_CAP_S = 180.0  # every part in quick mode: generous, a shared 2-core CPU is slow to compile
MIN_PART_S = 20.0  # a part is skipped when less than this is left of the budget
DEFAULT_OUT = "runs/bench/gpu"
OFF = ["log.wandb=disabled", "log.progress=false"]
TOY = ["env.name=toy_reach", "env.action_repeat=1", "replay.capacity=2000"]  # quick mode: the pure-JAX toy task

Rows = Iterator[dict]


@dataclasses.dataclass(frozen=True)
class Part:
    """One measurement: `fn(quick, scratch_dir, out_dir)` yields table rows, one per finished size."""

    name: str
    what: str
    cap_s: float  # on an accelerator
    fn: Callable[[bool, Path, Path], Rows]


def _env_part(env_name: str) -> Callable[[bool, Path, Path], Rows]:
    def rows(quick: bool, scratch: Path, out: Path) -> Rows:
        from mjxmbrl.cli.bench import env_throughput

        name, sizes, steps = ("toy_reach", (8,), 20) if quick else (env_name, (4096, 1024, 256), 100)
        for n in sizes:  # the largest first: the figure that matters most is in even if the cap cuts the rest
            compile_s, call_s, rate = env_throughput(name, n, steps)
            yield {"env": name, "num_envs": n, "steps_per_call": steps, "compile_s": compile_s, "call_s": call_s,
                   "env_steps_per_s": rate}

    return rows


def _sac(quick: bool, scratch: Path, out: Path) -> Rows:
    """`_chunk_time` of configs/sac/cartpole_swingup.yaml with MuJoCo Playground's DM Control SAC settings."""
    from mjxmbrl.cli.bench import _chunk_time
    from mjxmbrl.config import load_config

    sizes, steps = ((4,), 8) if quick else ((2048, 1024), 50)
    base = ["env.action_repeat=1", "train.updates_per_step=8", "train.warmup_env_steps=0"] + OFF
    base += TOY + ["agent.hidden_sizes=[16,16]", "agent.batch_size=32"] if quick else []
    for n in sizes:
        cfg = load_config(SAC_CONFIG, base + [f"env.num_envs={n}"])
        compile_s, chunk_s = _chunk_time(cfg, steps)
        yield {"env": cfg.env.name, "num_envs": n, "batch": cfg.agent.batch_size, "updates_per_step": cfg.train.updates_per_step,
               "steps_per_chunk": steps, "compile_s": compile_s, "chunk_s": chunk_s,
               "env_steps_per_s": steps * n * cfg.env.action_repeat / chunk_s,
               "updates_per_s": steps * cfg.train.updates_per_step / chunk_s}


def _seeds(quick: bool, scratch: Path, out: Path) -> Rows:
    """`mjxmbrl bench seeds` (8 seeds on an accelerator), read back from its JSON record."""
    from mjxmbrl.cli.bench import bench_seeds

    bench_seeds(quick=quick, out=str(scratch / "seeds.md"))
    r = json.loads((scratch / "seeds.json").read_text())[-1]
    yield {"config": r["config"], "seeds": r["seeds"], "one_seed_chunk_s": r["one_seed_s"], "vmapped_chunk_s": r["vmapped_s"],
           "time_vs_one_seed": r["ratio_to_one_seed"], "time_vs_sequential": r["vmapped_s"] / (r["seeds"] * r["one_seed_s"])}


def _dmc100k(quick: bool, scratch: Path, out: Path) -> Rows:
    """`mjxmbrl train configs/sac/cartpole_swingup.yaml train.num_seeds=8` to the end, checkpoints and evals included.

    replay.capacity=100000: the 12,500 agent steps of a seed fit (none is overwritten), and each of the
    run's checkpoints holds 8 x 100k transitions rather than 8 x 1M.
    """
    from mjxmbrl.config import load_config
    from mjxmbrl.run.loop import train

    seeds = 2 if quick else 8
    overrides = [f"train.num_seeds={seeds}", "replay.capacity=100000", f"log.runs_dir={scratch}", "log.run_name=dmc100k"] + OFF
    if quick:
        overrides += TOY + ["agent.hidden_sizes=[16,16]", "agent.batch_size=32", "train.total_env_steps=800",
                            "train.warmup_env_steps=200", "train.log_every=200", "train.eval_every=400",
                            "train.checkpoint_every=800", "train.eval_episodes=2"]
    start = time.perf_counter()
    run_dir = train(load_config(SAC_CONFIG, overrides))
    wall = time.perf_counter() - start
    if (run_dir / "learning_curve.png").is_file():
        shutil.copy(run_dir / "learning_curve.png", out / "dmc100k-learning_curve.png")
    s = json.loads((run_dir / "summary.json").read_text())
    yield {"env": s["env"], "seeds": len(s["seeds"]), "env_steps": s["env_steps"], "wall_s": wall,
           "compile_and_first_chunk_s": s["compile_and_first_chunk_s"], "env_steps_per_s_all_seeds": s["env_steps_per_s_all_seeds"],
           "final_eval_return": s["final_eval_return"], "final_eval_return_std": s["final_eval_return_std"],
           "per_seed_final": [p["final_eval_return"] for p in s["per_seed"]]}


def _svg(quick: bool, scratch: Path, out: Path) -> Rows:
    """`_chunk_time` of configs/svg/cartpole_swingup.yaml (SVG(2)), warm-up off so that every step updates."""
    from mjxmbrl.cli.bench import _chunk_time
    from mjxmbrl.config import load_config

    sizes, steps = ((1,), 8) if quick else ((1, 256), 100)
    base = ["train.warmup_env_steps=0"] + OFF
    base += TOY + ["agent.hidden_sizes=[16,16]", "agent.batch_size=32", "agent.head_sizes=[16]", "model.encoder_sizes=[16]",
                   "model.gru_size=16", "model.decoder_sizes=[16]", "model.batch_size=32"] if quick else []
    for n in sizes:
        cfg = load_config(SVG_CONFIG, base + [f"env.num_envs={n}"])
        compile_s, chunk_s = _chunk_time(cfg, steps)
        yield {"env": cfg.env.name, "agent": f"svg({cfg.agent.horizon})", "num_envs": n, "action_repeat": cfg.env.action_repeat,
               "steps_per_chunk": steps, "compile_s": compile_s, "chunk_s": chunk_s,
               "env_steps_per_s": steps * n * cfg.env.action_repeat / chunk_s, "agent_steps_per_s": steps * n / chunk_s}


def _smc(quick: bool, scratch: Path, out: Path) -> Rows:
    """`mjxmbrl bench acting --envs 256` (SMC, S = 250, H = 10, per-group MLP), read back from its JSON record."""
    from mjxmbrl.cli.bench import bench_acting

    bench_acting(quick=quick, out=str(scratch / "acting.md"), envs=None if quick else [256])
    r = json.loads((scratch / "acting.json").read_text())[-1]
    for row in r["rows"]:
        plan, policy = row["eval"], row["policy"]
        yield {"env": r["env"], "num_envs": row["num_envs"], "particles": r["num_particles"], "horizon": r["horizon"],
               "plan_compile_s": plan["compile_s"], "plan_ms_per_step": plan["ms_per_step"],
               "policy_ms_per_step": policy["ms_per_step"], "plan_env_steps_per_s": plan["env_steps_per_s"],
               "ratio_plan_to_policy": row["ratio"], "actions_finite": plan["actions_finite"]}


PARTS: Dict[str, Part] = {p.name: p for p in [
    Part("env-cartpole", "raw env steps/s, CartpoleSwingup", 45, _env_part("CartpoleSwingup")),
    Part("sac", "SAC train env steps/s, Playground settings (batch 512, 8 updates per vectorised step)", 75, _sac),
    Part("seeds", "S vmapped seeds against one, S = 8 on an accelerator (SAC, configs/sac/cartpole_swingup.yaml)", 60, _seeds),
    # 50k updates since the SAC default ties 4 updates per agent step to cartpole's repeat of 8 (docs/sac.md).
    Part("dmc100k", "DMC-100k SAC cell, CartpoleSwingup, 8 vmapped seeds, to the end", 210, _dmc100k),
    Part("svg", "SVG(2) train env steps/s (configs/svg/cartpole_swingup.yaml)", 90, _svg),
    Part("smc", "SMC planning, S = 250, H = 10, 256 envs (MPC+MPO+BC agent, untrained)", 90, _smc),
    Part("env-walker", "raw env steps/s, WalkerWalk", 60, _env_part("WalkerWalk")),
    Part("env-humanoid", "raw env steps/s, HumanoidWalk", 100, _env_part("HumanoidWalk")),
]}


def _to_json(x):
    return x.item() if hasattr(x, "item") else str(x)


def _child(argv: Sequence[str]) -> None:
    """Runs one part in this process: `python -m mjxmbrl.cli.bench_gpu PART RESULT.json OUT_DIR [--quick]`.

    RESULT.json is rewritten after every row, so the parent keeps the finished rows of a part it kills.
    """
    part, result_path, out = argv[0], Path(argv[1]), Path(argv[2])
    import jax

    devices = jax.devices()
    result = {"devices": [str(d) for d in devices], "device_kind": devices[0].device_kind, "platform": devices[0].platform,
              "jax": jax.__version__, "rows": [], "done": False}

    def save():
        result_path.write_text(json.dumps(result, default=_to_json))

    save()
    with tempfile.TemporaryDirectory() as scratch:
        for row in PARTS[part].fn("--quick" in argv, Path(scratch), out):
            result["rows"].append(row)
            save()
    result["done"] = True
    save()


def _run_part(cmd: List[str], cap_s: float, log: Path, result: Path) -> dict:
    """Runs `cmd` in a new process group, killed after `cap_s`, its output appended to `log`; returns its
    status, wall time, rows and, unless it finished, the end of its output."""
    start = time.perf_counter()
    with open(log, "ab") as f:
        f.write(f"==== {' '.join(cmd)}  (cap {cap_s:.0f} s)\n".encode())
        f.flush()
        offset = f.tell()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=cap_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
            status = "timeout"
        else:
            status = "ok" if rc == 0 else "error"
    wall = time.perf_counter() - start
    data = json.loads(result.read_text()) if result.is_file() and result.stat().st_size else {}
    if status == "ok" and not (data.get("done") and data.get("rows")):
        status = "error"
    out = {"status": status, "returncode": rc, "wall_s": round(wall, 2), **data}
    if status != "ok":
        with open(log, "rb") as f:
            f.seek(offset)
            out["log_tail"] = f.read().decode(errors="replace").splitlines()[-25:]
    return out


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}" if v >= 10_000 else str(v)
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def markdown(record: dict) -> str:
    """The record as markdown: a header, a summary table of the parts, then each part's rows."""
    first = next((p for p in record["parts"] if p.get("devices")), {})
    lines = [
        f"## GPU: one call measures everything{' (quick)' if record['quick'] else ''}",
        "",
        f"- date: {record['date']}; host: {record['host']} ({record['cpu_count']} cores)",
        f"- device: {first.get('device_kind', '?')} ({', '.join(first.get('devices', ['?']))}); jax {first.get('jax', '?')}; "
        f"Python {record['python']}",
        f"- command: `{record['command']}`",
        f"- budget {record['budget_s']:.0f} s; wall {record.get('wall_s', float('nan')):.0f} s; each part in its own process, "
        "compile time included in its wall time",
        "",
        "| part | status | wall s | cap s | what |",
        "| --- | --- | --- | --- | --- |",
    ] + [f"| {p['name']} | {p['status']} | {p.get('wall_s', 0):.1f} | {p['cap_s']:.0f} | {p['what']} |" for p in record["parts"]]
    for p in record["parts"]:
        lines += ["", f"### {p['name']}: {p['what']} ({p['status']})", ""]
        rows = p.get("rows") or []
        if rows:
            cols = list(dict.fromkeys(k for r in rows for k in r))
            lines += ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
            lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
        if p.get("log_tail"):
            lines += ["", "```", *p["log_tail"][-8:], "```"]
    return "\n".join(lines) + "\n"


def run_gpu_bench(
    out: str | Path = DEFAULT_OUT,
    quick: bool = False,
    parts: Optional[Sequence[str]] = None,
    budget_s: Optional[float] = None,
    command: str = "mjxmbrl bench gpu",
    caps: Optional[Dict[str, float]] = None,
    child: Optional[List[str]] = None,
) -> int:
    """Runs `parts` (default all, in PARTS order) one process each; writes OUT/bench-gpu.{md,json}.

    Returns 0 when every part finished, else 1. `caps` overrides parts' caps in seconds; `child` replaces
    the part's command (tests: a process that fails or hangs).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bench-gpu.log"
    log.unlink(missing_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    budget = budget_s or (QUICK_BUDGET_S if quick else GPU_BUDGET_S)
    record = {
        "bench": "gpu", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command, "quick": quick, "budget_s": budget, "host": platform.node(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "parts": [],
    }
    start = time.perf_counter()
    for name in parts or list(PARTS):
        part = PARTS[name]
        cap = (caps or {}).get(name) or (QUICK_CAP_S if quick else part.cap_s)
        left = budget - (time.perf_counter() - start)
        entry = {"name": name, "what": part.what, "cap_s": cap}
        if left < min(cap, MIN_PART_S):
            entry.update(status="skipped", wall_s=0.0, reason=f"{left:.0f} s left of the {budget:.0f} s budget")
        else:
            result = scratch / f"{name}.json"
            cmd = (child or [sys.executable, "-m", "mjxmbrl.cli.bench_gpu"]) + [name, str(result), str(out)] + (["--quick"] if quick else [])
            print(f"[bench gpu] {name}: cap {min(cap, left):.0f} s ...", file=sys.stderr, flush=True)
            entry.update(_run_part(cmd, min(cap, left), log, result))
            print(f"[bench gpu] {name}: {entry['status']} in {entry['wall_s']:.1f} s", file=sys.stderr, flush=True)
        record["parts"].append(entry)
        _save(out, record)
    record["wall_s"] = time.perf_counter() - start
    record["ok"] = all(p["status"] == "ok" for p in record["parts"])
    _save(out, record)
    shutil.rmtree(scratch, ignore_errors=True)
    return 0 if record["ok"] else 1


def _save(out: Path, record: dict) -> None:
    (out / "bench-gpu.json").write_text(json.dumps(record, indent=1, default=_to_json) + "\n")
    (out / "bench-gpu.md").write_text(markdown(record))


def add_gpu_arguments(p: argparse.ArgumentParser) -> None:
    """The options only `mjxmbrl bench gpu` takes (the bench parser's --quick and --out serve it too)."""
    p.add_argument("--budget", type=float, default=None,
                   help=f"gpu: seconds for the whole call; parts past it are killed or skipped (default {GPU_BUDGET_S:.0f}, quick {QUICK_BUDGET_S:.0f})")
    p.add_argument("--parts", default=None, help=f"gpu: comma-separated parts to run (default all: {','.join(PARTS)})")


def cmd_bench_gpu(args) -> int:
    """`mjxmbrl bench gpu [--quick] [--out DIR] [--budget S] [--parts a,b]`: prints the markdown, returns the exit code."""
    from mjxmbrl.types import MjxmbrlError

    if args.config or args.envs or args.steps is not None:
        raise MjxmbrlError("--config, --envs and --steps belong to `mjxmbrl bench acting`")
    parts = args.parts.split(",") if args.parts else None
    unknown = [p for p in parts or [] if p not in PARTS]
    if unknown:
        raise MjxmbrlError(f"unknown part(s) {', '.join(unknown)}; parts: {', '.join(PARTS)}")
    out = args.out or DEFAULT_OUT
    command = "mjxmbrl bench gpu" + (" --quick" if args.quick else "") + f" --out {out}"
    command += (f" --budget {args.budget:g}" if args.budget else "") + (f" --parts {args.parts}" if args.parts else "")
    rc = run_gpu_bench(out, quick=args.quick, parts=parts, budget_s=args.budget, command=command)
    print((Path(out) / "bench-gpu.md").read_text())
    print(f"written: {out}/bench-gpu.md, {out}/bench-gpu.json, {out}/bench-gpu.log", file=sys.stderr)
    return rc


if __name__ == "__main__":
    _child(sys.argv[1:])
