"""Environments: the static registry, the batched training env and observation normalisation."""

from mjxmbrl.envs.normalization import RunningStats, init_stats, normalize, update_stats
from mjxmbrl.envs.registry import ENV_SPECS, EnvSpec, list_env_specs, make_env
from mjxmbrl.envs.wrappers import VectorEnv, make_vector_env

__all__ = [
    "EnvSpec",
    "ENV_SPECS",
    "list_env_specs",
    "make_env",
    "make_vector_env",
    "VectorEnv",
    "RunningStats",
    "init_stats",
    "update_stats",
    "normalize",
]
