"""World models behind one interface (models/base.py): per-group MLP, GRU, ensemble, RSSM, oracle.

`MODELS` is the registry: name -> (config class, factory, config-time check).
A factory is `make(model_cfg, env_cfg, spec) -> Model` with `spec` the task's
EnvSpec; `make_model(model_cfg, env_cfg)` builds the model a config names and
`make_model_trainer` (models/trainer.py) gives its update. Adding a model is
one module (config dataclass, check, factory), one line below and its YAML.
"""

from __future__ import annotations

from typing import Any, Optional

from mjxmbrl.models.base import NoModelConfig, check_learned_model
from mjxmbrl.models.ensemble import (
    EnsembleModelConfig,
    check_ensemble,
    make_ensemble_model,
)
from mjxmbrl.models.gru import GRUModelConfig, make_gru_model
from mjxmbrl.models.mlp import MLPModelConfig, check_mlp, make_mlp_model
from mjxmbrl.models.oracle import OracleModelConfig, check_oracle, make_oracle_model
from mjxmbrl.models.rssm import RSSMModelConfig, check_rssm, make_rssm_model
from mjxmbrl.registry import Registry

MODELS = Registry("model")
MODELS.register("none", NoModelConfig, lambda cfg, env_cfg, spec: None)
MODELS.register("mlp", MLPModelConfig, lambda cfg, env_cfg, spec: make_mlp_model(
    cfg, spec.obs_size, spec.action_size, spec.ctrl_dt * env_cfg.action_repeat, spec.obs_groups), check=check_mlp)
MODELS.register("gru", GRUModelConfig, lambda cfg, env_cfg, spec: make_gru_model(cfg, spec.obs_size, spec.action_size),
                check=check_learned_model)
MODELS.register("ensemble", EnsembleModelConfig, lambda cfg, env_cfg, spec: make_ensemble_model(
    cfg, spec.obs_size, spec.action_size), check=check_ensemble)
MODELS.register("rssm", RSSMModelConfig, lambda cfg, env_cfg, spec: make_rssm_model(
    cfg, spec.obs_size, spec.action_size, bit_depth=getattr(env_cfg, "bit_depth", 5)), check=check_rssm)
MODELS.register("oracle", OracleModelConfig, lambda cfg, env_cfg, spec: make_oracle_model(
    env_cfg.name, env_cfg.impl, env_cfg.episode_length, env_cfg.action_repeat), check=check_oracle)


def make_model(model_cfg: Any, env_cfg: Any, obs_size: Optional[int] = None, action_size: Optional[int] = None):
    """Builds the Model named by model_cfg.name for the task of env_cfg (None for "none").

    The model step spans one agent step: the env's control dt times its action
    repeat (used by the per-group MLP's Eq. 17-18 integration). obs_size and
    action_size default to the task's (tests give models of other sizes).
    """
    from mjxmbrl.envs.registry import config_spec

    spec = config_spec(env_cfg)  # pixel observations (env.pixels) change obs_size
    spec = spec._replace(obs_size=obs_size or spec.obs_size, action_size=action_size or spec.action_size)
    return MODELS.get(model_cfg.name).make(model_cfg, env_cfg, spec)


__all__ = ["MODELS", "make_model"]
