"""`mjxmbrl sweep`: run a W&B-style sweep file locally, every trial in this process.

A sweep file follows W&B's sweep schema (https://docs.wandb.ai/guides/sweeps/sweep-config-keys),
restricted to what runs without W&B's server:

    name: debug-grid
    method: grid                       # grid | random (bayes needs W&B's controller)
    metric: {name: eval/return, goal: maximize}
    run_cap: 8                         # number of trials; required for random
    parameters:                        # keys are our dotted config keys
      agent.actor_lr: {values: [3.0e-4, 1.0e-3]}
      train.updates_per_step: {value: 2}
      agent.critic_lr: {min: 1.0e-4, max: 1.0e-2, distribution: log_uniform_values}
    command: [${env}, mjxmbrl, train, configs/debug.yaml, ${args}]

The same file drives an online sweep (`wandb sweep FILE` + `wandb agent ID`):
the agent runs `command` with `${args}` expanded to `--agent.actor_lr=0.001 ...`,
which `mjxmbrl train` accepts. Locally, `run_sweep` trains each trial through
`mjxmbrl.run.loop.train` in `<log.runs_dir>/<sweep name>/trial-NNN-<values>`, as an
offline W&B run grouped by the sweep name, and writes `sweep_summary.md` and
`sweep_summary.csv` ranking the trials by the final value of the metric (the mean
over seeds when a trial trains several seeds with `train.num_seeds`).

The installed wandb package holds no sweep-config schema offline (it delegates
validation to the optional `sweeps` package, `wandb[sweeps]`); the checks here
follow W&B's documented schema, and every one of them runs before any trial starts.
"""

from __future__ import annotations

import copy
import csv
import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from mjxmbrl.registry import did_you_mean
from mjxmbrl.types import MjxmbrlError


class SweepError(MjxmbrlError):
    """A sweep file, or a trial config built from it, that cannot run."""


SUMMARY_MD = "sweep_summary.md"
SUMMARY_CSV = "sweep_summary.csv"
DEFAULT_METRIC = "eval/return"
DEFAULT_GOAL = "maximize"  # when the file has no `metric` at all; W&B's own default goal (metric without goal) is minimize

TOP_LEVEL_KEYS = (
    "method", "parameters", "metric", "name", "description", "run_cap",
    "program", "command", "project", "entity", "early_terminate",
)
METHODS = ("grid", "random")
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")  # the last three: W&B's controller only
GOALS = ("maximize", "minimize")
# The log keys every trial gets from the sweep itself.
MANAGED_KEYS = ("log.run_name", "log.wandb_group")

# distribution -> (required keys, optional keys with defaults)
DISTRIBUTIONS: Dict[str, Tuple[Tuple[str, ...], Dict[str, Any]]] = {
    "constant": (("value",), {}),
    "categorical": (("values",), {"probabilities": None}),
    "int_uniform": (("min", "max"), {}),
    "uniform": (("min", "max"), {}),
    "q_uniform": (("min", "max"), {"q": 1.0}),
    "log_uniform": (("min", "max"), {}),  # min/max are log(value), as in W&B
    "log_uniform_values": (("min", "max"), {}),
    "q_log_uniform": (("min", "max"), {"q": 1.0}),
    "q_log_uniform_values": (("min", "max"), {"q": 1.0}),
    "normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "log_normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_log_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
}
UNSUPPORTED_DISTRIBUTIONS = ("inv_log_uniform", "inv_log_uniform_values", "beta", "q_beta")
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
SPEC_KEYS = ("value", "values", "probabilities", "distribution", "min", "max", "q", "mu", "sigma")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class Param:
    """One swept config key and how its values are chosen (a W&B parameter spec)."""

    key: str  # dotted config key, e.g. agent.actor_lr
    distribution: str
    spec: Dict[str, Any]  # the spec's keys, defaults filled in

    def grid_values(self) -> List[Any]:
        """The values a grid search takes, in order (as W&B's grid controller: q_uniform excludes max)."""
        s = self.spec
        if self.distribution == "constant":
            return [s["value"]]
        if self.distribution == "categorical":
            return list(s["values"])
        if self.distribution == "int_uniform":
            return list(range(s["min"], s["max"] + 1))
        count = math.ceil((s["max"] - s["min"]) / s["q"] - 1e-9)  # min + k q < max, robust to float steps
        return [_tidy(s["min"] + k * s["q"], s["q"]) for k in range(max(count, 0))]

    def sample(self, rng: np.random.Generator) -> Any:
        """One random-search draw; the result is plain Python data (int, float or a `values` element)."""
        s, d = self.spec, self.distribution
        if d == "constant":
            return s["value"]
        if d == "categorical":
            return s["values"][int(rng.choice(len(s["values"]), p=s["probabilities"]))]
        if d == "int_uniform":
            return int(rng.integers(s["min"], s["max"] + 1))
        if d in ("uniform", "q_uniform"):
            x = float(rng.uniform(s["min"], s["max"]))
        elif d in ("log_uniform", "q_log_uniform"):  # min and max are logs
            x = math.exp(rng.uniform(s["min"], s["max"]))
        elif d in ("log_uniform_values", "q_log_uniform_values"):
            x = math.exp(rng.uniform(math.log(s["min"]), math.log(s["max"])))
        elif d in ("normal", "q_normal"):
            x = float(rng.normal(s["mu"], s["sigma"]))
        else:  # log_normal, q_log_normal
            x = math.exp(rng.normal(s["mu"], s["sigma"]))
        return _tidy(x, s["q"]) if "q" in s else x


def _tidy(x: float, q: Any) -> Any:
    """round(x / q) * q, without float noise (0.30000000000000004 -> 0.3); an int when q and the result are whole."""
    v = round(x / q) * q
    v = float(f"{v:.12g}")
    return int(v) if _is_int(q) and v.is_integer() else v


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file."""

    name: str
    method: str
    params: Tuple[Param, ...]
    metric: str = DEFAULT_METRIC
    goal: str = DEFAULT_GOAL
    run_cap: Optional[int] = None
    description: str = ""
    project: Optional[str] = None
    entity: Optional[str] = None
    command_config: Optional[str] = None  # the .yaml after `train` in `command`
    command_overrides: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()  # keys accepted but used only online


def _parse_param(key: Any, spec: Any, where: str) -> Param:
    if isinstance(spec, dict) and "parameters" in spec:
        raise SweepError(f"{where}: parameter '{key}' has nested parameters; write each one as a dotted key instead (e.g. agent.actor_lr)")
    if not isinstance(key, str) or "." not in key or key.startswith(".") or key.endswith("."):
        raise SweepError(f"{where}: parameter '{key}' must be a dotted config key section.key, e.g. agent.actor_lr")
    if key in MANAGED_KEYS or key == "log.runs_dir":
        raise SweepError(f"{where}: parameter '{key}' cannot be swept: the sweep sets it for every trial")
    if not isinstance(spec, dict):
        raise SweepError(f"{where}: parameter '{key}' needs a mapping with value, values, or min and max; got {spec!r}")
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise SweepError(f"{where}: parameter '{key}' has unknown key '{unknown[0]}'" + did_you_mean(unknown[0], SPEC_KEYS))
    dist = spec.get("distribution")
    if dist is None:
        if "value" in spec and "values" in spec:
            raise SweepError(f"{where}: parameter '{key}' has both value and values; give one")
        if "value" in spec:
            dist = "constant"
        elif "values" in spec:
            dist = "categorical"
        elif "min" in spec and "max" in spec:
            dist = "int_uniform" if _is_int(spec["min"]) and _is_int(spec["max"]) else "uniform"
        else:
            raise SweepError(f"{where}: parameter '{key}' needs value, values, or min and max (with an optional distribution)")
    if not isinstance(dist, str) or dist not in DISTRIBUTIONS:
        if dist in UNSUPPORTED_DISTRIBUTIONS:
            raise SweepError(f"{where}: parameter '{key}': distribution '{dist}' is not supported locally (supported: {', '.join(DISTRIBUTIONS)})")
        raise SweepError(f"{where}: parameter '{key}': unknown distribution '{dist}'" + did_you_mean(dist, list(DISTRIBUTIONS)))
    required, optional = DISTRIBUTIONS[dist]
    missing = [k for k in required if k not in spec]
    if missing:
        raise SweepError(f"{where}: parameter '{key}': distribution '{dist}' needs {' and '.join(required)}")
    extra = [k for k in spec if k != "distribution" and k not in required and k not in optional]
    if extra:
        raise SweepError(f"{where}: parameter '{key}': '{extra[0]}' is not used by distribution '{dist}'")
    full = {**optional, **{k: v for k, v in spec.items() if k != "distribution"}}
    _check_spec(key, dist, full, where)
    return Param(key, dist, full)


def _check_spec(key: str, dist: str, s: Dict[str, Any], where: str) -> None:
    what = f"{where}: parameter '{key}'"
    if dist == "categorical":
        values = s["values"]
        if not isinstance(values, list):
            raise SweepError(f"{what}: values must be a list, got {values!r}")
        if not values:
            raise SweepError(f"{what}: values is an empty list")
        probs = s["probabilities"]
        if probs is not None:
            if not isinstance(probs, list) or len(probs) != len(values) or not all(_is_number(p) and p >= 0 for p in probs):
                raise SweepError(f"{what}: probabilities must be {len(values)} non-negative numbers, one per value")
            if abs(sum(probs) - 1.0) > 1e-6:
                raise SweepError(f"{what}: probabilities must sum to 1, got {sum(probs):g}")
        return
    for name in ("min", "max", "q", "mu", "sigma"):
        if name in s and not _is_number(s[name]):
            raise SweepError(f"{what}: {name} must be a number, got {s[name]!r}")
    if dist == "int_uniform":
        if not (_is_int(s["min"]) and _is_int(s["max"])):
            raise SweepError(f"{what}: int_uniform needs integer min and max, got {s['min']!r} and {s['max']!r}")
        if s["min"] > s["max"]:
            raise SweepError(f"{what}: min ({s['min']}) is above max ({s['max']})")
    elif "min" in s and s["min"] >= s["max"]:
        raise SweepError(f"{what}: min ({s['min']}) must be below max ({s['max']})")
    if dist in ("log_uniform_values", "q_log_uniform_values") and s["min"] <= 0:
        raise SweepError(f"{what}: {dist} needs min > 0 (min and max are the values themselves), got {s['min']}")
    if "q" in s and s["q"] <= 0:
        raise SweepError(f"{what}: q must be > 0, got {s['q']}")
    if "sigma" in s and s["sigma"] < 0:
        raise SweepError(f"{what}: sigma must be >= 0, got {s['sigma']}")


def _parse_command(command: Any, where: str) -> Tuple[Optional[str], Tuple[str, ...], Tuple[str, ...]]:
    """(config file, overrides, notes) from a W&B `command` list such as [${env}, mjxmbrl, train, CFG.yaml, ${args}]."""
    if not isinstance(command, list) or not all(isinstance(c, (str, int, float)) for c in command):
        raise SweepError(f"{where}: command must be a list of strings, got {command!r}")
    command = [str(c) for c in command]
    if "train" not in command:
        raise SweepError(f"{where}: command must run `mjxmbrl train` (e.g. [${{env}}, mjxmbrl, train, configs/debug.yaml, ${{args}}]), got {command}")
    config, overrides, notes = None, [], []
    for item in command[command.index("train") + 1:]:
        if item.startswith("${") and item.endswith("}"):
            continue
        override = as_override(item)
        if override is not None:
            if override.split("=", 1)[0] == "log.wandb":
                notes.append(f"command sets {override} for the online agent; local trials keep the base config's log.wandb")
                continue
            overrides.append(override)
        elif item.endswith((".yaml", ".yml")) and config is None:
            config = item
        else:
            raise SweepError(f"{where}: command element '{item}' after `train` is not a config file, a section.key=value override or a ${{macro}}")
    return config, tuple(overrides), tuple(notes)


_OVERRIDE = re.compile(r"^(--)?([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_.]*)=(.*)$", re.S)


def as_override(arg: str) -> Optional[str]:
    """'--section.key=value' or 'section.key=value' -> 'section.key=value'; None for anything else."""
    m = _OVERRIDE.match(arg)
    return None if m is None else f"{m.group(2)}={m.group(3)}"


def parse_sweep(raw: Any, source: str = "sweep") -> Sweep:
    """Checks a sweep mapping (as read from YAML) against the supported W&B schema subset."""
    where = source
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: a sweep file must be a mapping (method, parameters, ...), got {type(raw).__name__}")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise SweepError(f"{where}: unknown sweep key '{key}'" + did_you_mean(key, TOP_LEVEL_KEYS))
    method = raw.get("method")
    if method is None:
        raise SweepError(f"{where}: method is missing; use method: grid or method: random")
    if method not in METHODS:
        reason = "it needs W&B's server-side controller" if method == "bayes" else "it is not a W&B search method we know"
        raise SweepError(
            f"{where}: method '{method}' cannot run locally ({reason}); only grid and random run locally"
            + (" (run bayes online: wandb sweep FILE, then wandb agent SWEEP_ID)" if method == "bayes" else "")
        )
    name = raw.get("name", Path(source).stem)
    if not isinstance(name, str) or not re.sub(r"[^A-Za-z0-9._-]+", "", name).strip("."):
        raise SweepError(f"{where}: name must be a non-empty string, got {name!r}")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    for key in ("description", "program", "project", "entity"):
        if key in raw and not isinstance(raw[key], str):
            raise SweepError(f"{where}: {key} must be a string, got {raw[key]!r}")
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not _is_int(run_cap) or run_cap <= 0):
        raise SweepError(f"{where}: run_cap must be a positive integer, got {run_cap!r}")
    if method == "random" and run_cap is None:
        raise SweepError(f"{where}: method random needs run_cap (the number of trials to draw)")
    metric, goal = DEFAULT_METRIC, DEFAULT_GOAL
    if "metric" in raw:
        m = raw["metric"]
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"]:
            raise SweepError(f"{where}: metric must be a mapping with a name, e.g. {{name: eval/return, goal: maximize}}")
        for key in m:
            if key not in METRIC_KEYS:
                raise SweepError(f"{where}: unknown metric key '{key}'" + did_you_mean(key, METRIC_KEYS))
        goal = m.get("goal", "minimize")  # W&B's default
        if goal not in GOALS:
            raise SweepError(f"{where}: metric goal '{goal}' is not one of maximize, minimize")
        metric = m["name"]
    params_raw = raw.get("parameters")
    if not isinstance(params_raw, dict) or not params_raw:
        raise SweepError(f"{where}: parameters must be a non-empty mapping of dotted config keys to value, values or min/max")
    params = tuple(_parse_param(k, v, where) for k, v in params_raw.items())
    if method == "grid":
        for p in params:
            if p.distribution not in GRID_DISTRIBUTIONS:
                raise SweepError(
                    f"{where}: method grid needs value, values, int_uniform or q_uniform for every parameter; "
                    f"'{p.key}' is {p.distribution} (use method: random)"
                )
            if p.distribution == "categorical" and p.spec["probabilities"] is not None:
                raise SweepError(f"{where}: parameter '{p.key}': probabilities are for method random, not grid")
            if not p.grid_values():
                raise SweepError(f"{where}: parameter '{p.key}' gives no grid values (q_uniform takes min, min+q, ... below max)")
    notes = []
    command_config, command_overrides = None, ()
    if "command" in raw:
        command_config, command_overrides, command_notes = _parse_command(raw["command"], where)
        notes.extend(command_notes)
    if "early_terminate" in raw:
        if not isinstance(raw["early_terminate"], dict):
            raise SweepError(f"{where}: early_terminate must be a mapping, got {raw['early_terminate']!r}")
        notes.append("early_terminate is used by W&B's online controller only; every local trial runs to the end")
    return Sweep(
        name=name, method=method, params=params, metric=metric, goal=goal, run_cap=run_cap,
        description=raw.get("description", ""), project=raw.get("project"), entity=raw.get("entity"),
        command_config=command_config, command_overrides=command_overrides, notes=tuple(notes),
    )


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: invalid YAML: {err}") from None
    return parse_sweep(raw, str(path))


def trial_values(sweep: Sweep, seed: int = 0) -> List[Dict[str, Any]]:
    """The parameter values of every trial: the grid's Cartesian product (first key slowest), or run_cap random draws."""
    if sweep.method == "grid":
        grids = [p.grid_values() for p in sweep.params]
        trials = [dict(zip([p.key for p in sweep.params], combo)) for combo in itertools.product(*grids)]
        return trials[: sweep.run_cap] if sweep.run_cap is not None else trials
    rng = np.random.default_rng(seed)
    return [{p.key: p.sample(rng) for p in sweep.params} for _ in range(sweep.run_cap)]


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_fmt(v) for v in value)
    return str(value)


def trial_name(index: int, values: Dict[str, Any], varying: Sequence[str]) -> str:
    """trial-003-actor_lr_0.001-updates_per_step_2: the index and the values of the keys that vary."""
    short = {k: k.rsplit(".", 1)[-1] for k in varying}
    clash = {s for s in short.values() if list(short.values()).count(s) > 1}
    parts = [f"{(k if short[k] in clash else short[k])}_{_fmt(values[k])}" for k in varying]
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))[:80].rstrip("-_")
    return f"trial-{index:03d}" + (f"-{tail}" if tail else "")


@dataclass
class Trial:
    index: int
    name: str
    values: Dict[str, Any]
    cfg: Any  # mjxmbrl.config.Config
    metric: Optional[float] = None
    seeds: int = 0
    status: str = "pending"  # pending | ok | diverged | failed | no metric

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.log.runs_dir) / self.cfg.log.run_name


@dataclass
class SweepPlan:
    sweep: Sweep
    sweep_dir: Path
    base_config: Optional[str]
    trials: List[Trial] = field(default_factory=list)


def plan_sweep(sweep: Sweep, config_path: Optional[str] = None, overrides: Sequence[str] = (), seed: int = 0) -> SweepPlan:
    """Builds and validates every trial's config (nothing is written).

    The base config is `config_path`, else the sweep command's config file, else
    the defaults; then the command's overrides, then `overrides`, then the trial's
    values; the sweep sets log.runs_dir (its own folder), log.run_name and log.wandb_group.
    """
    from mjxmbrl.config import (
        ConfigError,
        apply_overrides,
        config_from_dict,
        parse_override,
        read_yaml,
    )
    from mjxmbrl.envs.registry import get_spec

    swept = {p.key for p in sweep.params}
    base_path = config_path if config_path is not None else sweep.command_config
    try:
        for text in [*sweep.command_overrides, *overrides]:
            section, key, _ = parse_override(text)
            if f"{section}.{key}" in swept:
                raise SweepError(f"override '{text}' sets '{section}.{key}', which the sweep varies; drop one of them")
            if f"{section}.{key}" in MANAGED_KEYS:
                raise SweepError(f"override '{text}': {section}.{key} is set by the sweep for every trial")
        base = apply_overrides(read_yaml(base_path) if base_path is not None else {}, [*sweep.command_overrides, *overrides])
        base_cfg = config_from_dict(base)
    except ConfigError as err:
        raise SweepError(f"base config ({base_path or 'defaults'}): {err}") from None
    sweep_dir = Path(base_cfg.log.runs_dir) / sweep.name
    values_list = trial_values(sweep, seed)
    varying = [p.key for p in sweep.params if len({repr(v[p.key]) for v in values_list}) > 1]
    plan = SweepPlan(sweep, sweep_dir, base_path)
    for i, values in enumerate(values_list):
        raw = copy.deepcopy(base)
        for key, value in values.items():
            section, name = key.split(".", 1)
            raw.setdefault(section, {})[name] = value
        log = raw.setdefault("log", {})
        log.update(runs_dir=str(sweep_dir), run_name=trial_name(i, values, varying), wandb_group=sweep.name)
        if sweep.project is not None:
            log["wandb_project"] = sweep.project
        if sweep.entity is not None:
            log["wandb_entity"] = sweep.entity
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        try:
            cfg = config_from_dict(raw)
            get_spec(cfg.env.name)
        except MjxmbrlError as err:
            raise SweepError(f"trial {i} ({shown}): {err}") from None
        plan.trials.append(Trial(i, log["run_name"], values, cfg))
    if sweep_dir.exists():
        raise SweepError(f"sweep directory {sweep_dir} already exists; give the sweep another name or remove it")
    return plan


def describe(plan: SweepPlan) -> str:
    s = plan.sweep
    lines = [
        f"sweep {s.name}: {s.method}, {len(plan.trials)} trials, metric {s.metric} ({s.goal}), "
        f"base config {plan.base_config or 'defaults'}, trials in {plan.sweep_dir}/"
    ]
    lines += [f"note: {n}" for n in s.notes]
    for t in plan.trials:
        lines.append(f"  {t.name}: " + " ".join(f"{k}={_fmt(v)}" for k, v in t.values.items()))
    return "\n".join(lines)


def trial_metric(run_dir: Path, metric: str) -> Tuple[Optional[float], int]:
    """(final value of `metric`, number of seeds): the last row with it per seed, averaged over seeds.

    Rows of a run that trains several seeds carry a `seed` field; then only such rows count.
    None when no row has the metric; NaN when a seed's final value is not a finite number.
    """
    from mjxmbrl.run.logging import read_metrics

    rows = [r for r in read_metrics(Path(run_dir) / "metrics.jsonl") if metric in r]
    if any("seed" in r for r in rows):
        rows = [r for r in rows if "seed" in r]
    last: Dict[Any, Any] = {}
    for r in rows:
        last[r.get("seed")] = r[metric]
    if not last:
        return None, 0
    finals = [float(v) if _is_number(v) else math.nan for v in last.values()]
    return (math.nan if any(math.isnan(v) for v in finals) else float(np.mean(finals))), len(finals)


def ranked(trials: Sequence[Trial], goal: str) -> List[Trial]:
    """Best first by `goal` among finished trials with a finite metric; the others (diverged, failed, no metric) after, in trial order."""
    good = [t for t in trials if t.status == "ok" and t.metric is not None and math.isfinite(t.metric)]
    bad = [t for t in trials if t not in good]
    good.sort(key=lambda t: (-t.metric if goal == "maximize" else t.metric, t.index))
    return good + bad


def write_summary(plan: SweepPlan) -> str:
    """Writes sweep_summary.md and .csv (finished trials, best first); returns the markdown."""
    s = plan.sweep
    done = [t for t in plan.trials if t.status != "pending"]
    keys = [p.key for p in s.params]
    order = ranked(done, s.goal)
    header = ["rank", "trial", *keys, s.metric, "seeds", "status"]
    rows = []
    for rank, t in enumerate(order, 1):
        value = "" if t.metric is None else f"{t.metric:.6g}"
        rows.append([str(rank), t.name, *[_fmt(t.values[k]) for k in keys], value, str(t.seeds), t.status])
    md = [f"# Sweep {s.name}", ""]
    if s.description:
        md += [s.description, ""]
    md += [
        f"{s.method} search, {len(done)} of {len(plan.trials)} trials, ranked by the final {s.metric} "
        f"(mean over seeds; {s.goal}), base config {plan.base_config or 'defaults'}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
        *["| " + " | ".join(r) + " |" for r in rows],
    ]
    text = "\n".join(md) + "\n"
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    (plan.sweep_dir / SUMMARY_MD).write_text(text)
    with open(plan.sweep_dir / SUMMARY_CSV, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*header, "run_dir"])
        for r, t in zip(rows, order):
            writer.writerow([*r, str(t.run_dir)])
    return text


def run_sweep(plan: SweepPlan, train_fn: Optional[Callable[[Any], Path]] = None, echo: Callable[[str], None] = print) -> List[Trial]:
    """Trains every trial in turn (`train_fn`, default `mjxmbrl.run.loop.train`); returns them ranked.

    A trial that diverges is recorded and the sweep goes on; any other error, or
    Ctrl-C, stops the sweep after writing the summary of the trials that finished.
    """
    if train_fn is None:
        from mjxmbrl.run.loop import train as train_fn
    from mjxmbrl.run.loop import TrainingDiverged

    s = plan.sweep
    for t in plan.trials:
        echo(f"== {s.name} {t.name} ({t.index + 1}/{len(plan.trials)})")
        try:
            train_fn(t.cfg)
            t.status = "ok"
        except TrainingDiverged as err:
            t.status = "diverged"
            echo(f"{t.name} diverged: {err}")
        except (MjxmbrlError, KeyboardInterrupt):
            t.status = "failed"
            t.metric, t.seeds = trial_metric(t.run_dir, s.metric)
            write_summary(plan)
            echo(f"sweep stopped at {t.name}; the summary of the trials so far is in {plan.sweep_dir / SUMMARY_MD}")
            raise
        t.metric, t.seeds = trial_metric(t.run_dir, s.metric)
        if t.status == "ok" and t.metric is None:
            t.status = "no metric"
            if t.index == 0:
                from mjxmbrl.run.logging import read_metrics

                seen = sorted({k for r in read_metrics(t.run_dir / "metrics.jsonl") for k in r})
                write_summary(plan)
                close = difflib.get_close_matches(s.metric, seen, n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (it logs {', '.join(seen[:12])}, ...)"
                raise SweepError(
                    f"metric '{s.metric}' is not in {t.run_dir}/metrics.jsonl{hint}; the sweep stopped after its first trial"
                )
    echo(write_summary(plan))
    echo(f"written: {plan.sweep_dir / SUMMARY_MD}, {plan.sweep_dir / SUMMARY_CSV}")
    return ranked(plan.trials, s.goal)
