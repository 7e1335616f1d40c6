"""Typed run configuration: YAML files plus dotted command-line overrides.

A config has eight sections, each a frozen dataclass: env, replay, train,
log and transfer are defined here; agent, model and planner are the config classes of the
methods they name, found in the registries (`mjxmbrl.agents.AGENTS`,
`mjxmbrl.models.MODELS`, `mjxmbrl.planners.PLANNERS`) by the section's `name`.
Each method's config class and its config-time check live with the method.
`load_config(path, overrides)` reads YAML, applies `section.key=value`
overrides, checks every key, type and choice (a config class lists its
choices in a `choices` class attribute), runs the generic range checks and
each named method's own check, and returns a `Config`. A path `configs/...`
that is not a file where the command runs names the copy shipped inside the
package (`mjxmbrl/configs/`), so installed wheels run the README's commands;
a user's own file of that name wins. Unknown keys and names
get a "did you mean" suggestion; wrong types name the key, the expected type
and the value. Every error is a `ConfigError` (a `MjxmbrlError`), which the
CLI prints as one line.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, ClassVar, Dict, Optional, Sequence, Tuple

import yaml

from mjxmbrl.learners.sac import SACConfig
from mjxmbrl.models.base import NoModelConfig
from mjxmbrl.planners.base import NoPlannerConfig
from mjxmbrl.registry import did_you_mean
from mjxmbrl.types import ConfigError

__all__ = ["Config", "ConfigError", "EnvConfig", "LogConfig", "ReplayConfig", "TrainConfig", "load_config", "resolve_config_path"]

SHIPPED_CONFIGS = Path(__file__).parent / "configs"  # the package's copy of the repository's configs/


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {"impl": ("jax", "warp")}

    name: str = "toy_reach"
    impl: str = "jax"  # MJX backend for Playground tasks: "jax" (CPU/GPU) or "warp" (GPU)
    num_envs: int = 8
    # Episode length in simulator control steps (DM Control: 1000), independent of action repeat.
    episode_length: Optional[int] = None  # None: the task's own default
    action_repeat: int = 1
    normalize_obs: bool = False
    # Pixel observations (PlaNet, Hafner et al. 2019; S V et al. 2023, arXiv:2312.17227): the observation is
    # the task's frame, rendered on the host with MuJoCo (camera 0) once per agent step, image_size x
    # image_size RGB quantised to bit_depth bits, floor(x / 2^(8-bits)) / 2^bits - 0.5, flattened to
    # [image_size^2 * 3] (envs/pixels.py). Rewards and termination are the task's. The task then has no known
    # reward (planner.reward=model); wired for agent mpc with model rssm, model.pixels=true.
    pixels: bool = False
    image_size: int = 64  # frame side in pixels (the pixel RSSM's CNN takes 64)
    bit_depth: int = 5  # bits per colour channel kept by the quantisation (PlaNet: 5)


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    capacity: int = 1_000_000  # transitions, over all envs


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    total_env_steps: int = 100_000  # simulator control steps over all envs (action repeat counted)
    warmup_env_steps: int = 5_000  # uniform random actions, no updates, before this many env steps
    updates_per_step: int = 1  # gradient updates per vectorised env step (one step of all num_envs) ...
    # ... taken on every update_every-th vectorised step: the rate limit of Byravan et al. 2022 App. E is
    # num_envs * update_every / updates_per_step actor steps per learner update (8 for their walking tasks).
    # `auto` in a YAML file or an override: max(1, env.action_repeat // 2), one update per two control steps
    # (docs/sac.md), resolved when the config is built, so it follows an overridden action repeat.
    update_every: int = 1
    log_every: int = 5_000  # env steps per jitted chunk; metrics are logged once per chunk
    eval_every: int = 10_000  # env steps; rounded up to a whole number of chunks
    eval_episodes: int = 10
    checkpoint_every: int = 50_000  # env steps; rounded up to a whole number of chunks
    keep_checkpoints: int = 3
    # Also log the env's own per-step metrics (Playground's reward terms, the POLO worlds' coverage) as
    # env/<name>: the mean over envs at the last step of each logged chunk.
    log_env_metrics: bool = False
    # Independent seeds seed, seed+1, ..., seed+num_seeds-1 trained together in one jitted program
    # (the whole TrainState vmapped over a leading seed axis); summary.json reports their mean and spread.
    num_seeds: int = 1
    # Data parallelism: a 1-D device mesh over which envs and the replay's env axis are sharded
    # (params replicated). 0: automatic (the most local devices that divide env.num_envs; every device of a
    # multi-host job); N: the first N, which must divide env.num_envs.
    devices: int = 0
    # Multi-host: call jax.distributed.initialize() first (also done when JAX_COORDINATOR_ADDRESS is set).
    distributed: bool = False


@dataclasses.dataclass(frozen=True)
class LogConfig:
    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {"wandb": ("disabled", "offline", "online")}

    runs_dir: str = "runs"
    run_name: Optional[str] = None  # None: <timestamp>-<env>-<agent>-s<seed>
    wandb: str = "offline"  # disabled | offline | online
    wandb_project: str = "mjxmbrl"
    wandb_entity: Optional[str] = None
    wandb_group: Optional[str] = None  # W&B run group; `mjxmbrl sweep` sets it to the sweep's name
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Parts of a trained run loaded into a fresh run before its first step (Byravan et al. 2022, "Evaluating
    model-based planning and planner amortization for continuous control", arXiv:2110.03363, Sec. 5.3-5.4 and
    App. F.3): its learned world model and its task-agnostic proposal, each frozen (never updated here) or
    fine-tuned (updated like a fresh one, from the loaded parameters). Resuming a run does not load them again:
    its checkpoint holds them. run/transfer.py."""

    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {
        "model": ("none", "frozen", "finetune"),
        "proposal": ("none", "frozen", "finetune"),
    }

    source_run: Optional[str] = None  # a training run directory (its newest checkpoint)
    source_seed_index: int = 0  # which seed of a multi-seed source run (index i is its train.seed + i)
    model: str = "none"  # none | frozen | finetune: the source's world model (model.params, with its statistics)
    proposal: str = "none"  # none | frozen | finetune: the source's task-agnostic proposal (agent.agnostic_proposal)


@dataclasses.dataclass(frozen=True)
class Config:
    env: EnvConfig = EnvConfig()
    agent: Any = SACConfig()  # the config class of the agent named by agent.name (agents.AGENTS)
    model: Any = NoModelConfig()  # ... of the model named by model.name (models.MODELS)
    planner: Any = NoPlannerConfig()  # ... of the planner named by planner.name (planners.PLANNERS)
    replay: ReplayConfig = ReplayConfig()
    train: TrainConfig = TrainConfig()
    log: LogConfig = LogConfig()
    transfer: TransferConfig = TransferConfig()


SECTIONS: Dict[str, type] = {
    "env": EnvConfig,
    "replay": ReplayConfig,
    "train": TrainConfig,
    "log": LogConfig,
    "transfer": TransferConfig,
}
DEFAULT_NAMES = {"agent": "sac", "model": "none", "planner": "none"}  # the method sections and their default names


def seed_values(train_cfg: TrainConfig) -> list:
    """The seeds of a run: train.seed, train.seed + 1, ..., train.seed + num_seeds - 1."""
    return [int(train_cfg.seed) + i for i in range(int(train_cfg.num_seeds))]


def registries() -> Dict[str, Any]:
    """{"agent": AGENTS, "model": MODELS, "planner": PLANNERS} (imported here: they import the method modules)."""
    from mjxmbrl.agents import AGENTS
    from mjxmbrl.models import MODELS
    from mjxmbrl.planners import PLANNERS

    return {"agent": AGENTS, "model": MODELS, "planner": PLANNERS}


def _parse_number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _coerce(where: str, hint: Any, value: Any) -> Any:
    """Checks `value` against the type hint `hint`; converts only lossless cases."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(where, inner[0], value)
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(f"{where}[{i}]", args[0], v) for i, v in enumerate(value))
    if hint in (int, float) and isinstance(value, str):
        value = _parse_number(value)  # PyYAML reads '1e5' (no dot) as a string
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 1e5 in YAML is a float
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _build_section(section: str, cls: type, values: Dict[str, Any]) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"section '{section}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown config key '{section}.{key}'" + did_you_mean(key, names))
        value = _coerce(f"{section}.{key}", hints[key], value)
        choices = getattr(cls, "choices", {}).get(key)
        if choices is not None and value not in choices:
            raise ConfigError(f"{section}.{key}: '{value}' is not one of {', '.join(choices)}")
        kwargs[key] = value
    return cls(**kwargs)


def _check_ranges(cfg: Config) -> None:
    """The generic checks of env, replay and train; the method sections are checked by their own modules."""
    positive = {
        "env.num_envs": cfg.env.num_envs,
        "env.action_repeat": cfg.env.action_repeat,
        "replay.capacity": cfg.replay.capacity,
        "train.total_env_steps": cfg.train.total_env_steps,
        "train.log_every": cfg.train.log_every,
        "train.eval_every": cfg.train.eval_every,
        "train.eval_episodes": cfg.train.eval_episodes,
        "train.checkpoint_every": cfg.train.checkpoint_every,
        "train.keep_checkpoints": cfg.train.keep_checkpoints,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    if cfg.train.num_seeds < 1:
        raise ConfigError(f"train.num_seeds must be >= 1, got {cfg.train.num_seeds}")
    if cfg.train.devices < 0:
        raise ConfigError(f"train.devices must be >= 0 (0: all devices), got {cfg.train.devices}")
    if cfg.train.devices > 0 and cfg.env.num_envs % cfg.train.devices != 0:
        raise ConfigError(
            f"train.devices={cfg.train.devices} does not divide env.num_envs={cfg.env.num_envs}: "
            "every device steps an equal share of the envs"
        )
    if cfg.train.updates_per_step < 0 or cfg.train.warmup_env_steps < 0:
        raise ConfigError("train.updates_per_step and train.warmup_env_steps must be >= 0")
    if cfg.train.update_every < 1:
        raise ConfigError(f"train.update_every must be >= 1, got {cfg.train.update_every}")
    if cfg.env.episode_length is not None and cfg.env.episode_length <= 0:
        raise ConfigError(f"env.episode_length must be positive, got {cfg.env.episode_length}")
    if cfg.replay.capacity < cfg.env.num_envs * 2:
        raise ConfigError(f"replay.capacity ({cfg.replay.capacity}) must hold at least two steps of all {cfg.env.num_envs} envs")
    from mjxmbrl.envs.pixels import check_pixel_config

    check_pixel_config(cfg)
    _check_transfer(cfg)
    if getattr(cfg.planner, "through", "model") == "oracle":  # the planner rolls out the task's MJX step
        from mjxmbrl.models.oracle import check_oracle

        check_oracle(cfg)


def _check_transfer(cfg: Config) -> None:
    """A transfer section names a source and something to take from it, which this run can hold."""
    t = cfg.transfer
    loads = [part for part in ("model", "proposal") if getattr(t, part) != "none"]
    if t.source_run is None:
        if loads:
            raise ConfigError(f"transfer.{loads[0]}={getattr(t, loads[0])} needs transfer.source_run (a training run directory)")
        return
    if not loads:
        raise ConfigError("transfer.source_run is set but nothing is taken from it: set transfer.model or transfer.proposal "
                          "(frozen or finetune)")
    if t.source_seed_index < 0:
        raise ConfigError(f"transfer.source_seed_index must be >= 0, got {t.source_seed_index}")
    if t.model != "none" and cfg.model.name in ("none", "oracle"):
        raise ConfigError(f"transfer.model={t.model} loads a learned world model, but this run's model.name is "
                          f"'{cfg.model.name}': set model.name to the source run's model")
    if t.proposal != "none" and not getattr(cfg.agent, "agnostic_proposal", False):
        raise ConfigError(f"transfer.proposal={t.proposal} loads a task-agnostic proposal, but agent "
                          f"'{cfg.agent.name}' has none: set agent.agnostic_proposal=true (agent mpo)")


AUTO_UPDATES = "auto"


def updates_for_action_repeat(action_repeat: int) -> int:
    """`train.updates_per_step: auto`: one gradient update per two control steps, at least one per agent step.

    At one update per agent step a run with action repeat 8 takes 12,500 updates in DMC-100k's 100k control
    steps, too few for SAC or MPO on cartpole swingup (docs/sac.md, docs/byravan.md)."""
    return max(1, action_repeat // 2)


def _resolve_auto_updates(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Replaces `train.updates_per_step: auto` by its number for this config's env.action_repeat."""
    train = raw.get("train")
    if not isinstance(train, dict) or not isinstance(train.get("updates_per_step"), str):
        return raw
    if train["updates_per_step"] != AUTO_UPDATES:
        value = _parse_number(train["updates_per_step"])
        if isinstance(value, str):
            raise ConfigError(f"train.updates_per_step: expected a whole number or '{AUTO_UPDATES}' "
                              f"(max(1, env.action_repeat // 2)), got {value!r}")
        return raw
    env = raw.get("env") if isinstance(raw.get("env"), dict) else {}
    repeat = _coerce("env.action_repeat", int, env.get("action_repeat", EnvConfig.action_repeat))
    return {**raw, "train": {**train, "updates_per_step": updates_for_action_repeat(repeat)}}


def config_from_dict(raw: Dict[str, Any]) -> Config:
    """Builds and validates a Config from a nested dict (as read from YAML)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    valid = list(SECTIONS) + list(DEFAULT_NAMES)
    for section in raw:
        if section not in valid:
            raise ConfigError(f"unknown config section '{section}'" + did_you_mean(section, valid))
    tables = registries()
    agent = tables["agent"].get((raw.get("agent") or {}).get("name", DEFAULT_NAMES["agent"]))
    if agent.defaults is not None:  # an agent may set defaults of the other sections (SVG: the GRU's window)
        raw = agent.defaults(raw)
    raw = _resolve_auto_updates(raw)
    built = {name: _build_section(name, cls, raw.get(name) or {}) for name, cls in SECTIONS.items()}
    entries = {}
    for section, default in DEFAULT_NAMES.items():
        values = dict(raw.get(section) or {})
        entries[section] = tables[section].get(values.get("name", default))
        built[section] = _build_section(section, entries[section].config, values)
    cfg = Config(**built)
    _check_ranges(cfg)
    for section in ("agent", "model", "planner"):
        if entries[section].check is not None:
            entries[section].check(cfg)
    return cfg


def config_to_dict(cfg: Config) -> Dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML, JSON and W&B."""

    def plain(x):
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        return x

    return {
        section: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, section)).items()}
        for section in ("env", "agent", "model", "planner", "replay", "train", "log", "transfer")
    }


def parse_override(text: str) -> Tuple[str, str, Any]:
    """'section.key=value' -> (section, key, YAML-parsed value)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override '{text}' must look like section.key=value, e.g. train.seed=3")
    path, raw_value = text.split("=", 1)
    section, key = path.split(".", 1)
    try:
        value = yaml.safe_load(raw_value) if raw_value != "" else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{text}': cannot parse value ({err.__class__.__name__})") from None
    return section, key, value


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    raw = {k: dict(v or {}) for k, v in (raw or {}).items()}
    for text in overrides:
        section, key, value = parse_override(text)
        raw.setdefault(section, {})[key] = value
    return raw


def resolve_config_path(path: str | Path) -> Path:
    """`path` if it is a file; else, for a relative `configs/<rest>`, the shipped `mjxmbrl/configs/<rest>`."""
    path = Path(path)
    if path.is_file():
        return path
    parts = path.parts
    if not path.is_absolute() and len(parts) > 1 and parts[0] == "configs":
        shipped = SHIPPED_CONFIGS.joinpath(*parts[1:])
        if shipped.is_file():
            return shipped
        raise ConfigError(f"config file not found: {path} (neither here nor among the shipped configs; `mjxmbrl list configs` lists those)")
    raise ConfigError(f"config file not found: {path}")


def shipped_config_names() -> list:
    """Every config shipped inside the package, as the `configs/...` path commands accept."""
    return sorted(f"configs/{p.relative_to(SHIPPED_CONFIGS).as_posix()}" for p in SHIPPED_CONFIGS.rglob("*.yaml"))


def read_yaml(path: str | Path) -> Dict[str, Any]:
    path = resolve_config_path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    return raw or {}


def load_config(path: Optional[str | Path] = None, overrides: Sequence[str] = ()) -> Config:
    """Reads YAML at `path` (or the defaults), applies overrides, validates."""
    raw = read_yaml(path) if path is not None else {}
    return config_from_dict(apply_overrides(raw, overrides))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
