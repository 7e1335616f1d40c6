"""World models behind one interface (models/base.py): per-group MLP, GRU, ensemble, RSSM, oracle.

`make_model(model_cfg, env_cfg, obs_size, action_size)` builds the model a
config names; `make_model_trainer` (models/trainer.py) gives its update.
"""

from __future__ import annotations

from typing import Any

from mjxmbrl.types import MjxmbrlError

MODEL_NAMES = ("mlp", "gru", "ensemble", "rssm", "oracle")


def make_model(model_cfg: Any, env_cfg: Any, obs_size: int, action_size: int):
    """Builds the Model named by model_cfg.name for the task of env_cfg.

    The model step spans one agent step: the env's control dt times its action
    repeat (used by the per-group MLP's Eq. 17-18 integration).
    """
    from mjxmbrl.envs.registry import get_spec

    name = model_cfg.name
    spec = get_spec(env_cfg.name)
    if name == "mlp":
        from mjxmbrl.models.groups import OBS_GROUPS
        from mjxmbrl.models.mlp import make_mlp_model

        if env_cfg.name not in OBS_GROUPS:
            raise MjxmbrlError(f"model 'mlp' needs observation groups; env '{env_cfg.name}' declares none")
        return make_mlp_model(model_cfg, obs_size, action_size, spec.ctrl_dt * env_cfg.action_repeat, OBS_GROUPS[env_cfg.name])
    if name == "gru":
        from mjxmbrl.models.gru import make_gru_model

        return make_gru_model(model_cfg, obs_size, action_size)
    if name == "ensemble":
        from mjxmbrl.models.ensemble import make_ensemble_model

        return make_ensemble_model(model_cfg, obs_size, action_size)
    if name == "rssm":
        from mjxmbrl.models.rssm import make_rssm_model

        return make_rssm_model(model_cfg, obs_size, action_size)
    if name == "oracle":
        from mjxmbrl.models.oracle import make_oracle_model

        return make_oracle_model(env_cfg.name, env_cfg.impl, env_cfg.episode_length, env_cfg.action_repeat)
    raise MjxmbrlError(f"unknown model '{name}' (valid: {', '.join(MODEL_NAMES)})")
