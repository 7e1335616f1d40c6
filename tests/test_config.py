from pathlib import Path

import pytest

from mjxmbrl.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_config_loads():
    paths = sorted((ROOT / "configs").rglob("*.yaml"))
    assert paths, "no configs shipped"
    for path in paths:
        if path.parent.name == "model_eval":  # model-eval settings: {model: {key: value}}
            from mjxmbrl.cli.model_eval import build_model_config, model_settings

            for name, values in model_settings(path).items():
                build_model_config(name, {k: v for k, v in values.items() if k != "updates"})
        elif path.parent.name == "sweeps":  # W&B sweep files: every trial's config is built and checked
            from mjxmbrl.cli.sweep import load_sweep, plan_sweep

            plan_sweep(load_sweep(path), None, [])
        else:
            load_config(path)


def test_overrides_are_typed_and_applied():
    cfg = load_config(ROOT / "configs/debug.yaml", ["train.seed=7", "agent.hidden_sizes=[8,8]", "train.total_env_steps=1e4"])
    assert cfg.train.seed == 7
    assert cfg.agent.hidden_sizes == (8, 8)
    assert cfg.train.total_env_steps == 10_000 and isinstance(cfg.train.total_env_steps, int)
    assert cfg.env.name == "toy_reach"  # from the file


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.total_env_step'.*did you mean 'total_env_steps'"):
        load_config(None, ["train.total_env_step=10"])


def test_unknown_section_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config section 'trian'.*'train'"):
        config_from_dict({"trian": {}})


def test_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match=r"train.seed: expected int, got 'abc'"):
        load_config(None, ["train.seed=abc"])
    with pytest.raises(ConfigError, match=r"train.seed: expected int, got 1.5"):
        load_config(None, ["train.seed=1.5"])
    with pytest.raises(ConfigError, match=r"env.normalize_obs: expected bool"):
        load_config(None, ["env.normalize_obs=3"])


def test_choices_and_ranges():
    with pytest.raises(ConfigError, match="log.wandb: 'cloud' is not one of disabled, offline, online"):
        load_config(None, ["log.wandb=cloud"])
    with pytest.raises(ConfigError, match="env.num_envs must be positive"):
        load_config(None, ["env.num_envs=0"])


def test_unknown_agent_lists_valid():
    with pytest.raises(ConfigError, match=r"unknown agent 'sacc'.*did you mean 'sac'"):
        load_config(None, ["agent.name=sacc"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(None, ["seed=3"])


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(ROOT / "configs/sac/cartpole_swingup.yaml", ["train.seed=4"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg
    assert config_to_dict(again)["agent"]["hidden_sizes"] == [256, 256]


def test_auto_update_rate_follows_the_action_repeat(tmp_path):
    # max(1, action_repeat // 2) updates per agent step: one per two control steps, at least one
    for repeat, updates in [(1, 1), (2, 1), (3, 1), (4, 2), (6, 3), (8, 4)]:
        cfg = load_config(None, [f"env.action_repeat={repeat}", "train.updates_per_step=auto"])
        assert cfg.train.updates_per_step == updates, repeat
    assert load_config(None, ["train.updates_per_step=auto"]).train.updates_per_step == 1  # the default repeat, 1
    # a shipped config that says `auto` follows an overridden repeat; a number stays a number
    assert load_config(ROOT / "configs/sac/cartpole_swingup.yaml").train.updates_per_step == 4
    assert load_config(ROOT / "configs/sac/cartpole_swingup.yaml", ["env.action_repeat=4"]).train.updates_per_step == 2
    assert load_config(ROOT / "configs/sac/cartpole_swingup.yaml", ["train.updates_per_step=3"]).train.updates_per_step == 3
    # a run's saved config holds the number, so a resumed run takes the same rate
    cfg = load_config(ROOT / "configs/sac/reacher_easy.yaml")
    save_config(cfg, tmp_path / "c.yaml")
    assert "updates_per_step: 2" in (tmp_path / "c.yaml").read_text() and load_config(tmp_path / "c.yaml") == cfg
    with pytest.raises(ConfigError, match=r"train.updates_per_step: expected a whole number or 'auto'.*got 'fast'"):
        load_config(None, ["train.updates_per_step=fast"])
    with pytest.raises(ConfigError, match="env.action_repeat must be positive"):
        load_config(None, ["env.action_repeat=0", "train.updates_per_step=auto"])
