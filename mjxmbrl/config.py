"""Typed run configuration: YAML files plus dotted command-line overrides.

A config has six sections (env, agent, model, replay, train, log), each a frozen
dataclass. `load_config(path, overrides)` reads YAML, applies `section.key=value`
overrides, checks every key and type, and returns a `Config`. Unknown keys get a
"did you mean" suggestion; wrong types name the key, the expected type and the
value. Every error is a `ConfigError` (a `MjxmbrlError`), which the CLI prints
as one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import yaml

from mjxmbrl.types import MjxmbrlError


class ConfigError(MjxmbrlError):
    """A config file or override that is not valid."""


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    name: str = "toy_reach"
    impl: str = "jax"  # MJX backend for Playground tasks: "jax" (CPU/GPU) or "warp" (GPU)
    num_envs: int = 8
    # Episode length in simulator control steps (DM Control: 1000), independent of action repeat.
    episode_length: Optional[int] = None  # None: the task's own default
    action_repeat: int = 1
    normalize_obs: bool = False


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Soft actor-critic (Haarnoja et al. 2018; Amos et al. 2021 Sec. 3, Table 3)."""

    name: str = "sac"
    hidden_sizes: Tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_alpha: float = 0.1
    discount: float = 0.99
    tau: float = 0.005
    num_critics: int = 2
    batch_size: int = 512
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    reward_scale: float = 1.0
    # Target entropy: "constant" uses target_entropy (None: -action_dim);
    # "decay" follows Amos et al. Eq. 14 from target_entropy_init to target_entropy_final.
    entropy_schedule: str = "constant"
    target_entropy: Optional[float] = None
    target_entropy_init: float = 0.0
    target_entropy_final: float = -1.0
    entropy_decay_beta: float = 1.0


@dataclasses.dataclass(frozen=True)
class SVGConfig(SACConfig):
    """SAC-SVG(H): SAC whose actor ascends an H-step value expansion through a learned model (Amos et al. 2021)."""

    name: str = "svg"
    # Table 3 of Amos et al.: actor/critic 2 x 512, LR 1e-4, temperature LR 5e-4, init temperature 0.1.
    hidden_sizes: Tuple[int, ...] = (512, 512)
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    alpha_lr: float = 5e-4
    horizon: int = 2  # H of Eq. 9, in agent steps; 0 is SAC's actor update
    critic_mve: bool = False  # critic targets from an H-step model expansion (Feinberg et al.; Sec. 5.1.2 ablation)
    learn_termination: bool = True  # only where the task can terminate (Eq. 12-13); DM Control tasks never do
    head_sizes: Tuple[int, ...] = (512, 512)  # reward and termination MLPs (Table 3)
    head_lr: float = 1e-3  # reward and termination LR (Table 3)


AGENT_CONFIGS: Dict[str, type] = {"sac": SACConfig, "svg": SVGConfig}


# ---- world models (mjxmbrl/models) -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NoModelConfig:
    """No world model (model-free agent)."""

    name: str = "none"


@dataclasses.dataclass(frozen=True)
class MLPModelConfig:
    """Per-group deterministic MLP dynamics (Byravan et al. 2022, App. C, Eqs. 17-20)."""

    name: str = "mlp"
    hidden_sizes: Tuple[int, ...] = (256, 256, 256)  # elu + layer norm, one MLP per observation group
    learning_rate: float = 1e-4  # App. C.1
    batch_size: int = 256
    seq_len: int = 10  # T of the open-loop multi-step loss (Eq. 20)
    updates_per_step: int = 1  # model updates per vectorised env step
    grad_clip: float = 100.0
    learn_reward: bool = False  # Byravan et al. plan with known rewards; True adds the reward model (Amos Eq. 11)
    learn_termination: bool = False
    head_sizes: Tuple[int, ...] = (256, 256)


@dataclasses.dataclass(frozen=True)
class GRUModelConfig:
    """GRU multi-step dynamics with reward and termination models (Amos et al. 2021, Sec. 4.2, Table 3)."""

    name: str = "gru"
    encoder_sizes: Tuple[int, ...] = (512, 512)
    gru_size: int = 512
    gru_layers: int = 2
    decoder_sizes: Tuple[int, ...] = (512, 512)
    learning_rate: float = 1e-3
    batch_size: int = 1024  # multi-step batch size
    seq_len: int = 10  # H of Eq. 10 (sequence x_{1:H}); SVG sets it from its horizon
    updates_per_step: int = 4  # N_seq
    grad_clip: float = 100.0
    learn_reward: bool = True  # Eq. 11
    learn_termination: bool = True  # Eq. 12-13 (time-limit truncations excluded)
    head_sizes: Tuple[int, ...] = (512, 512)


@dataclasses.dataclass(frozen=True)
class EnsembleModelConfig:
    """PETS-style probabilistic ensemble (Chua et al. 2018; Byravan et al. 2022, App. F.4)."""

    name: str = "ensemble"
    num_members: int = 5
    hidden_sizes: Tuple[int, ...] = (200, 200, 200, 200)  # swish, as in PETS
    learning_rate: float = 1e-3
    batch_size: int = 256
    seq_len: int = 1  # single-step NLL
    updates_per_step: int = 1
    grad_clip: float = 100.0
    init_max_logvar: float = 0.5  # soft bounds on the predicted log-variance (learned)
    init_min_logvar: float = -10.0
    logvar_bound_weight: float = 0.01
    # 0 is the plain NLL of PETS; 0.5 (beta-NLL, Seitzer et al. 2022) keeps hard transitions pulling on the mean:
    # 10x lower 1-step error of the mean on CartpoleSwingup (docs/models.md). See models/ensemble.py.
    nll_beta: float = 0.5
    rollout: str = "ts_inf"  # mean | random (member per step) | ts_inf (member fixed per particle)
    learn_reward: bool = False
    learn_termination: bool = False
    head_sizes: Tuple[int, ...] = (200, 200)


@dataclasses.dataclass(frozen=True)
class RSSMModelConfig:
    """Recurrent state-space model (Hafner et al. 2019; gradient-based-planning Sec. 3.2, App. A.7)."""

    name: str = "rssm"
    belief_size: int = 200  # deterministic GRU state h
    state_size: int = 30  # stochastic state s
    hidden_size: int = 200
    embedding_size: int = 200  # MLP encoder of proprioceptive observations (PlaNet: 1024 for a CNN)
    min_std: float = 0.1
    # PlaNet uses 3 for 64x64 images; on proprioceptive vectors the KL stays below 3 nats, where max(KL, 3)
    # has no gradient and the prior (used for open-loop prediction) barely trains: 1.0 cut the 1-step
    # error on CartpoleSwingup from 0.057 to 0.015 (docs/models.md).
    free_nats: float = 1.0
    kl_scale: float = 1.0
    learning_rate: float = 1e-3
    adam_eps: float = 1e-4
    grad_clip: float = 1000.0
    batch_size: int = 50
    seq_len: int = 50
    updates_per_step: int = 1
    pixels: bool = False  # image observations: not available yet (proprioceptive only)
    rollout: str = "sample"  # sample: s ~ prior in rollouts (PlaNet) | mean: the prior's mean (deterministic)


@dataclasses.dataclass(frozen=True)
class OracleModelConfig:
    """The true MJX simulator as a model: its state is the env State (POLO; Byravan Table 1 "ground truth")."""

    name: str = "oracle"


# ---- planners (mjxmbrl/planners) ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _PlannerCommon:
    """Settings every planner shares: horizon, discount, reward, proposal, value, and where learned parts come from."""

    horizon: int = 10  # agent steps (each spans env.action_repeat control steps)
    discount: float = 0.99
    reward: str = "known"  # known: the task's reward_fn on predicted observations | model: the model's own reward
    proposal: str = "gaussian"  # gaussian | policy | proprio | mixture (policy with prob w, else gaussian)
    proposal_sigma: float = 0.5  # std of the fixed Gaussian proposal
    mixture_start: float = 0.0  # mixture weight of the policy at the start of training ...
    mixture_end: float = 1.0  # ... and at the end (Byravan Sec. 5.4 anneals towards the policy)
    value: str = "none"  # none | learner: terminal value, mean of value_samples learner values (Byravan App. F.2)
    value_samples: int = 4
    source_run: Optional[str] = None  # run directory whose checkpoint supplies policy, value and learned model
    p_plan: float = 1.0  # acting in training: planner action with this probability, else the proposal's (Byravan Alg. 1)


@dataclasses.dataclass(frozen=True)
class NoPlannerConfig:
    """No planner: the agent acts with its policy."""

    name: str = "none"


@dataclasses.dataclass(frozen=True)
class SMCConfig(_PlannerCommon):
    """Sequential Monte Carlo (Byravan et al. 2022, Alg. 2): S = 250, H = 10, tau = 0.01 in the paper."""

    name: str = "smc"
    num_particles: int = 250
    temperature: float = 0.01
    warm_start: bool = False  # our addition: centre the Gaussian proposal on the previous plan (planners/smc.py)


@dataclasses.dataclass(frozen=True)
class CEMConfig(_PlannerCommon):
    """Cross-entropy method (Byravan et al. 2022, Alg. 3)."""

    name: str = "cem"
    num_samples: int = 250
    iterations: int = 4
    elite_fraction: float = 0.15
    sigma_init: float = 0.5
    alpha_mean: float = 0.9
    alpha_std: float = 0.5
    warm_start: bool = True  # start from the previous plan shifted by one step (first call: the proposal)


@dataclasses.dataclass(frozen=True)
class MPPIConfig(_PlannerCommon):
    """MPPI as in POLO (Lowrey et al. 2019, App. A: 120 rollouts, sigma 0.2, temperature 1.25, H = 64)."""

    name: str = "mppi"
    num_samples: int = 120
    noise_sigma: float = 0.2
    temperature: float = 1.25
    iterations: int = 1


@dataclasses.dataclass(frozen=True)
class GradConfig(_PlannerCommon):
    """Gradient-based MPC (gradient-based planning with world models, Alg. 1)."""

    name: str = "grad"
    num_candidates: int = 16
    iterations: int = 10
    learning_rate: float = 0.05
    init: str = "normal"  # normal: N(0, 1) candidates (Grad-MPC) | policy: proposal rollouts (Policy+Grad-MPC)
    warm_start: bool = True


PLANNER_CONFIGS: Dict[str, type] = {
    "none": NoPlannerConfig,
    "smc": SMCConfig,
    "cem": CEMConfig,
    "mppi": MPPIConfig,
    "grad": GradConfig,
}


MODEL_CONFIGS: Dict[str, type] = {
    "none": NoModelConfig,
    "mlp": MLPModelConfig,
    "gru": GRUModelConfig,
    "ensemble": EnsembleModelConfig,
    "rssm": RSSMModelConfig,
    "oracle": OracleModelConfig,
}


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    capacity: int = 1_000_000  # transitions, over all envs


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    total_env_steps: int = 100_000  # simulator control steps over all envs (action repeat counted)
    warmup_env_steps: int = 5_000  # uniform random actions, no updates, before this many env steps
    updates_per_step: int = 1  # gradient updates per vectorised env step (one step of all num_envs)
    log_every: int = 5_000  # env steps per jitted chunk; metrics are logged once per chunk
    eval_every: int = 10_000  # env steps; rounded up to a whole number of chunks
    eval_episodes: int = 10
    checkpoint_every: int = 50_000  # env steps; rounded up to a whole number of chunks
    keep_checkpoints: int = 3
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
    runs_dir: str = "runs"
    run_name: Optional[str] = None  # None: <timestamp>-<env>-<agent>-s<seed>
    wandb: str = "offline"  # disabled | offline | online
    wandb_project: str = "mjxmbrl"
    wandb_entity: Optional[str] = None
    wandb_group: Optional[str] = None  # W&B run group; `mjxmbrl sweep` sets it to the sweep's name
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Config:
    env: EnvConfig = EnvConfig()
    agent: Any = SACConfig()
    model: Any = NoModelConfig()
    planner: Any = NoPlannerConfig()
    replay: ReplayConfig = ReplayConfig()
    train: TrainConfig = TrainConfig()
    log: LogConfig = LogConfig()


SECTIONS: Dict[str, type] = {
    "env": EnvConfig,
    "replay": ReplayConfig,
    "train": TrainConfig,
    "log": LogConfig,
}

CHOICES: Dict[Tuple[str, str], Tuple[str, ...]] = {
    ("env", "impl"): ("jax", "warp"),
    ("agent", "entropy_schedule"): ("constant", "decay"),
    ("log", "wandb"): ("disabled", "offline", "online"),
    ("model", "rollout"): ("mean", "random", "ts_inf", "sample"),
    ("planner", "reward"): ("known", "model"),
    ("planner", "proposal"): ("gaussian", "policy", "proprio", "mixture"),
    ("planner", "value"): ("none", "learner"),
    ("planner", "init"): ("normal", "policy"),
}


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(sorted(options))})"


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
            raise ConfigError(f"unknown config key '{section}.{key}'" + _suggest(key, names))
        value = _coerce(f"{section}.{key}", hints[key], value)
        choices = CHOICES.get((section, key))
        if choices is not None and value not in choices:
            raise ConfigError(f"{section}.{key}: '{value}' is not one of {', '.join(choices)}")
        kwargs[key] = value
    return cls(**kwargs)


def _check_ranges(cfg: Config) -> None:
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
        "agent.batch_size": cfg.agent.batch_size,
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
    if cfg.env.episode_length is not None and cfg.env.episode_length <= 0:
        raise ConfigError(f"env.episode_length must be positive, got {cfg.env.episode_length}")
    _check_agent(cfg)
    _check_model(cfg)
    _check_planner(cfg)
    if cfg.replay.capacity < cfg.env.num_envs * 2:
        raise ConfigError(f"replay.capacity ({cfg.replay.capacity}) must hold at least two steps of all {cfg.env.num_envs} envs")


def _check_agent(cfg: Config) -> None:
    """Rejects agent settings that cannot work: schedules, SVG horizons and models, before anything runs."""
    a = cfg.agent
    if a.entropy_schedule == "decay" and a.target_entropy_final > a.target_entropy_init:
        raise ConfigError(
            f"agent.target_entropy_final ({a.target_entropy_final}) exceeds agent.target_entropy_init "
            f"({a.target_entropy_init}): the decay of Amos et al. Eq. 14 anneals the target entropy down"
        )
    if a.name != "svg":
        return
    if a.horizon < 0:
        raise ConfigError(f"agent.horizon must be >= 0, got {a.horizon}")
    if a.critic_mve and a.horizon < 1:
        raise ConfigError("agent.critic_mve expands the critic target through the model: it needs agent.horizon >= 1")
    m = cfg.model
    if a.horizon == 0 and not a.critic_mve:
        return
    if m.name == "none":
        raise ConfigError(f"agent svg with horizon {a.horizon} unrolls a learned dynamics model: set model.name=gru (Amos et al. Sec. 4.2)")
    if m.name == "oracle":
        if cfg.env.impl == "warp":
            raise ConfigError(
                "agent svg differentiates the value expansion through the dynamics, and the Warp-backed oracle "
                "(env.impl=warp) cannot be differentiated by JAX; use a learned model (model.name=gru)"
            )
        raise ConfigError(
            "agent svg unrolls the model from replayed observations, but the oracle needs full simulator states, "
            "which the replay buffer does not store; use a learned model (model.name=gru)"
        )
    if getattr(m, "learn_reward", False) or getattr(m, "learn_termination", False):
        raise ConfigError(
            "agent svg fits its own reward and termination models on single-step batches (Amos et al. Alg. 1); "
            "set model.learn_reward=false and model.learn_termination=false"
        )
    if m.name == "gru" and m.seq_len < a.horizon:
        raise ConfigError(
            f"model.seq_len ({m.seq_len}) is shorter than agent.horizon ({a.horizon}): the dynamics would be unrolled "
            "past the windows they are trained on"
        )


def _check_model(cfg: Config) -> None:
    """Rejects model settings that cannot work for this task, saying why."""
    from mjxmbrl.envs.registry import ENV_SPECS  # a static table: cheap to import
    from mjxmbrl.models.groups import OBS_GROUPS

    m = cfg.model
    if m.name == "none":
        return
    for key in ("batch_size", "seq_len", "learning_rate", "num_members", "gru_size", "gru_layers", "belief_size", "state_size"):
        value = getattr(m, key, None)
        if value is not None and value <= 0:
            raise ConfigError(f"model.{key} must be positive, got {value}")
    if getattr(m, "updates_per_step", 0) < 0:
        raise ConfigError(f"model.updates_per_step must be >= 0, got {m.updates_per_step}")
    spec = ENV_SPECS.get(cfg.env.name)
    if spec is None:
        return  # the env registry reports unknown names when the run is built
    if m.name == "mlp" and cfg.env.name not in OBS_GROUPS:
        raise ConfigError(
            f"model 'mlp' (per-group MLP) needs the observation groups of the task, and env '{cfg.env.name}' declares none "
            "(see mjxmbrl/models/groups.py); use model.name=gru or ensemble"
        )
    if m.name == "rssm" and m.pixels:
        raise ConfigError(
            f"model.pixels=true asks the RSSM for image observations, but env '{cfg.env.name}' provides proprioceptive "
            "observations only (pixel observations are not enabled); set model.pixels=false"
        )
    if m.name == "ensemble" and m.rollout == "sample":
        raise ConfigError("model.rollout for the ensemble is one of mean, random, ts_inf")
    if m.name == "rssm" and m.rollout not in ("sample", "mean"):
        raise ConfigError("model.rollout for the rssm is one of sample, mean")
    if m.name == "ensemble" and m.init_min_logvar >= m.init_max_logvar:
        raise ConfigError(f"model.init_min_logvar ({m.init_min_logvar}) must be below model.init_max_logvar ({m.init_max_logvar})")
    if m.name == "oracle":
        if spec.family == "toy" or cfg.env.name == "swimmer":
            raise ConfigError(f"model 'oracle' needs an MJX task; env '{cfg.env.name}' does not run on MJX")
    elif m.seq_len * cfg.env.num_envs > cfg.replay.capacity:
        raise ConfigError(f"model.seq_len ({m.seq_len}) does not fit in the replay buffer ({cfg.replay.capacity // cfg.env.num_envs} steps per env)")


def _check_planner(cfg: Config) -> None:
    """Rejects planner settings that cannot work, before anything runs."""
    p = cfg.planner
    if p.name == "none":
        return
    if p.horizon < 1:
        raise ConfigError(f"planner.horizon must be >= 1, got {p.horizon}")
    if not 0.0 < p.discount <= 1.0:
        raise ConfigError(f"planner.discount must be in (0, 1], got {p.discount}")
    for key in ("num_particles", "num_samples", "num_candidates", "iterations", "value_samples"):
        value = getattr(p, key, None)
        if value is not None and value < 1:
            raise ConfigError(f"planner.{key} must be >= 1, got {value}")
    for key in ("temperature", "learning_rate", "noise_sigma", "sigma_init", "proposal_sigma"):
        value = getattr(p, key, None)
        if value is not None and value <= 0:
            raise ConfigError(f"planner.{key} must be > 0, got {value}")
    if p.name == "cem":
        if int(round(p.elite_fraction * p.num_samples)) < 1:
            raise ConfigError(
                f"planner.elite_fraction ({p.elite_fraction}) x num_samples ({p.num_samples}) leaves zero elites"
            )
        for key in ("alpha_mean", "alpha_std", "elite_fraction"):
            if not 0.0 < getattr(p, key) <= 1.0:
                raise ConfigError(f"planner.{key} must be in (0, 1], got {getattr(p, key)}")
    if p.name == "smc" and p.warm_start and p.proposal != "gaussian":
        raise ConfigError("planner.warm_start for SMC centres the Gaussian proposal on the previous plan: it needs planner.proposal=gaussian")
    if not 0.0 <= p.p_plan <= 1.0:
        raise ConfigError(f"planner.p_plan must be in [0, 1], got {p.p_plan}")
    if cfg.model.name == "none":
        raise ConfigError("a planner needs a model: set model.name (oracle, or a learned model)")
    if p.reward == "known":
        from mjxmbrl.envs.rewards import KNOWN_REWARDS

        if cfg.env.name not in KNOWN_REWARDS and cfg.model.name != "oracle":
            raise ConfigError(
                f"planner.reward=known, but env '{cfg.env.name}' has no known reward function; use planner.reward=model"
            )
    elif cfg.model.name in ("mlp", "ensemble") and not cfg.model.learn_reward:
        raise ConfigError("planner.reward=model needs a reward model: set model.learn_reward=true (or planner.reward=known)")


def config_from_dict(raw: Dict[str, Any]) -> Config:
    """Builds and validates a Config from a nested dict (as read from YAML)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    valid = list(SECTIONS) + ["agent", "model", "planner"]
    for section in raw:
        if section not in valid:
            raise ConfigError(f"unknown config section '{section}'" + _suggest(section, valid))
    built = {name: _build_section(name, cls, raw.get(name) or {}) for name, cls in SECTIONS.items()}
    agent_raw = dict(raw.get("agent") or {})
    agent_name = agent_raw.get("name", "sac")
    if agent_name not in AGENT_CONFIGS:
        raise ConfigError(f"unknown agent '{agent_name}'" + _suggest(str(agent_name), list(AGENT_CONFIGS)))
    built["agent"] = _build_section("agent", AGENT_CONFIGS[agent_name], agent_raw)
    model_raw = dict(raw.get("model") or {})
    model_name = model_raw.get("name", "none")
    if agent_name == "svg" and model_name in ("mlp", "gru", "ensemble"):
        # SVG fits reward and termination itself (Alg. 1), so the model's own heads default to off; and
        # Alg. 1 fits the GRU on windows as long as the expansion it is unrolled for.
        model_raw.setdefault("learn_reward", False)
        model_raw.setdefault("learn_termination", False)
        if model_name == "gru":
            model_raw.setdefault("seq_len", max(1, built["agent"].horizon))
    if model_name not in MODEL_CONFIGS:
        raise ConfigError(f"unknown model '{model_name}'" + _suggest(str(model_name), list(MODEL_CONFIGS)))
    built["model"] = _build_section("model", MODEL_CONFIGS[model_name], model_raw)
    planner_raw = dict(raw.get("planner") or {})
    planner_name = planner_raw.get("name", "none")
    if planner_name not in PLANNER_CONFIGS:
        raise ConfigError(f"unknown planner '{planner_name}'" + _suggest(str(planner_name), list(PLANNER_CONFIGS)))
    built["planner"] = _build_section("planner", PLANNER_CONFIGS[planner_name], planner_raw)
    cfg = Config(**built)
    _check_ranges(cfg)
    return cfg


def config_to_dict(cfg: Config) -> Dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML, JSON and W&B."""

    def plain(x):
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        return x

    return {
        section: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, section)).items()}
        for section in ("env", "agent", "model", "planner", "replay", "train", "log")
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


def read_yaml(path: str | Path) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
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
