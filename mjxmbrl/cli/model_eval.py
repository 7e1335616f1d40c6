"""`mjxmbrl model-eval`: open-loop prediction error of every model type on the same data.

The protocol of Amos et al. 2021, Fig. 3: collect episodes (a run's trained
policy, sampled stochastically, plus uniformly random actions), split them by
episode into training and held-out sets, train each model type on the training
episodes, then roll each model open loop from every start state of the
held-out episodes under the recorded actions and report the squared error at
1, 5, 10 and 25 steps, normalised per observation dimension by the training
data's standard deviation (so 1.0 is the error of predicting the mean state).
Two trivial baselines sit next to the models: predicting no change, and a
linear model s_{t+1} - s_t = W [s_t, a_t, 1] fitted by least squares.

Outputs in the output directory: model_eval.md (the table), model_eval.json
(every figure and setting) and model_eval.png (error against horizon).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mjxmbrl.config import ConfigError, EnvConfig, read_yaml
from mjxmbrl.envs import init_stats, make_vector_env, normalize
from mjxmbrl.models import make_model
from mjxmbrl.models.base import open_loop
from mjxmbrl.models.trainer import make_model_trainer
from mjxmbrl.replay.buffer import sequence_mask
from mjxmbrl.types import MjxmbrlError, Transition

HORIZONS = (1, 5, 10, 25)
LEARNED = ("mlp", "gru", "ensemble", "rssm")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """What model-eval collects and how long it trains each model."""

    transitions: int = 25_000  # agent steps per split (train and held-out), rounded up to whole episodes
    policy_fraction: float = 0.5  # share of episodes from the run's policy; the rest use uniform random actions
    updates: int = 3000  # gradient updates per model
    start_stride: int = 5  # held-out start states every this many steps
    seed: int = 0


def collect_episodes(env_cfg: EnvConfig, num_episodes: int, act_fn, key) -> tuple:
    """Runs `num_episodes` envs for one episode without auto-reset.

    act_fn(obs [E, D], key) -> actions [E, A]. Returns (Transition [E, T, ...],
    valid [E, T]) where valid marks steps taken before the env's episode ended.
    """
    env = make_vector_env(
        env_cfg.name, num_episodes, impl=env_cfg.impl, episode_length=env_cfg.episode_length,
        action_repeat=env_cfg.action_repeat, auto_reset=False,
    )
    steps = math.ceil(env.episode_length / env.action_repeat)
    reset_key, act_key = jax.random.split(key)

    @jax.jit
    def run(reset_key, act_key):
        def body(state, step_key):
            action = act_fn(state.obs, step_key)
            alive = 1.0 - state.done
            nxt = env.step(state, action)
            tr = Transition(state.obs, action, nxt.reward, nxt.info["final_obs"], nxt.info["terminated"], nxt.info["truncated"])
            return nxt, (tr, alive)

        _, (data, alive) = jax.lax.scan(body, env.reset(reset_key), jax.random.split(act_key, steps))
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (data, alive))

    return run(reset_key, act_key)


def _policy_act_fn(run_dir: Path, run_cfg):
    from mjxmbrl.agents import build_agent
    from mjxmbrl.replay import make_replay
    from mjxmbrl.run.checkpoints import load_seed_policy

    env_cfg = run_cfg.env
    spec_env = make_vector_env(env_cfg.name, 1, impl=env_cfg.impl)
    sampler = make_replay(2 * env_cfg.num_envs, env_cfg.num_envs, spec_env.observation_size, spec_env.action_size)
    agent = build_agent(run_cfg, sampler)
    if agent.policy is None or not (run_dir / "policy").exists():
        raise MjxmbrlError(f"{run_dir} has no exported policy (policy/); finish or resume the run first")
    # A multi-seed run's export holds every seed's policy: its first seed collects the data.
    params, extra, _ = load_seed_policy(run_dir / "policy", like_extra={"obs_stats": init_stats(spec_env.observation_size)}, seed_index=0)
    stats = extra["obs_stats"]

    def act(obs, key):
        obs = normalize(stats, obs) if env_cfg.normalize_obs else obs
        return agent.policy(params, obs, key, False)

    return act


def _random_act_fn(action_size: int):
    def act(obs, key):
        return jax.random.uniform(key, (obs.shape[0], action_size), minval=-1.0, maxval=1.0)

    return act


def _concat(parts: Sequence[tuple]) -> tuple:
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)


def make_window_sampler(data: Transition, valid: jax.Array, seq_len: int, batch_size: int):
    """sample(key) -> (Transition [B, L, ...], mask [B, L]) of windows inside the episodes.

    mask is zero after an episode end inside the window and on steps past the
    episode's last valid step.
    """
    num_episodes, length = valid.shape
    if seq_len > length:
        raise MjxmbrlError(f"model seq_len {seq_len} is longer than the episodes ({length} steps)")
    t = jnp.arange(seq_len)

    def sample(key):
        k_e, k_t = jax.random.split(key)
        e = jax.random.randint(k_e, (batch_size,), 0, num_episodes)
        t0 = jax.random.randint(k_t, (batch_size,), 0, length - seq_len + 1)
        idx = t0[:, None] + t[None, :]
        batch = jax.tree.map(lambda x: x[e[:, None], idx], data)
        mask = sequence_mask(jnp.maximum(batch.terminated, batch.truncated)) * valid[e[:, None], idx]
        return batch, mask

    return sample


def fit_linear(data: Transition, valid: jax.Array) -> np.ndarray:
    """Least-squares W [D + A + 1, D] of s_{t+1} - s_t = [s_t, a_t, 1] W on valid transitions."""
    v = np.asarray(valid).reshape(-1) > 0
    obs = np.asarray(data.obs).reshape(-1, data.obs.shape[-1])[v]
    act = np.asarray(data.action).reshape(-1, data.action.shape[-1])[v]
    nxt = np.asarray(data.next_obs).reshape(-1, data.obs.shape[-1])[v]
    x = np.concatenate([obs, act, np.ones((obs.shape[0], 1))], axis=1)
    w, *_ = np.linalg.lstsq(x.astype(np.float64), (nxt - obs).astype(np.float64), rcond=None)
    return w.astype(np.float32)


def eval_windows(data: Transition, valid: jax.Array, horizon: int, stride: int) -> tuple:
    """Held-out windows starting every `stride` steps whose `horizon` steps are all valid and in one episode.

    Returns (obs0 [W, D], actions [W, H, A], targets [W, H, D]).
    """
    obs, act, nxt = (np.asarray(x) for x in (data.obs, data.action, data.next_obs))
    done = np.maximum(np.asarray(data.terminated), np.asarray(data.truncated))
    valid = np.asarray(valid)
    starts = [
        (e, t0)
        for e in range(valid.shape[0])
        for t0 in range(0, valid.shape[1] - horizon + 1, stride)
        if valid[e, t0 : t0 + horizon].all() and not done[e, t0 : t0 + horizon - 1].any()
    ]
    if not starts:
        raise MjxmbrlError(f"no held-out window of {horizon} steps: episodes are too short")
    e, t0 = (np.array(x) for x in zip(*starts))
    idx = t0[:, None] + np.arange(horizon)[None, :]
    return obs[e, t0], act[e[:, None], idx], nxt[e[:, None], idx]


def error_by_horizon(pred: np.ndarray, target: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Mean over windows and dims of ((pred - target) / std)^2 for each step: [W, H, D] -> [H]."""
    return np.mean(np.square((pred - target) / std), axis=(0, 2))


def _baseline_predictions(w_linear: np.ndarray, obs0: np.ndarray, actions: np.ndarray) -> Dict[str, np.ndarray]:
    horizon = actions.shape[1]
    no_change = np.repeat(obs0[:, None], horizon, axis=1)
    preds, s = [], obs0.astype(np.float64)
    for t in range(horizon):
        x = np.concatenate([s, actions[:, t], np.ones((s.shape[0], 1))], axis=1)
        s = s + x @ w_linear
        preds.append(s)
    return {"no change": no_change, "linear (least squares)": np.stack(preds, axis=1).astype(np.float32)}


def model_settings(path: Optional[Path]) -> Dict[str, Any]:
    """Per-model config overrides from a YAML mapping {model name: {key: value}} (None: paper defaults).

    Besides model config keys, `updates` sets that model's number of gradient updates.
    """
    if path is None:
        return {}
    raw = read_yaml(path)
    for name, values in raw.items():
        if name not in LEARNED:
            raise ConfigError(f"{path}: '{name}' is not a learned model ({', '.join(LEARNED)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: settings of '{name}' must be a mapping")
    return raw


def build_model_config(name: str, overrides: Dict[str, Any]):
    from mjxmbrl.config import _build_section
    from mjxmbrl.models import MODELS

    return _build_section("model", MODELS.get(name).config, {"name": name, **overrides})


def train_and_predict(name: str, cfg, env_cfg: EnvConfig, train: tuple, windows: tuple, updates: int, key) -> tuple:
    """Trains model `name` for `updates` steps on train data; returns (predictions [W, H, D], seconds, final metrics)."""
    data, valid = train
    obs0, actions, _ = windows
    model = make_model(cfg, env_cfg, data.obs.shape[-1], data.action.shape[-1])
    trainer = make_model_trainer(model, cfg)
    sample = make_window_sampler(data, valid, cfg.seq_len, cfg.batch_size)
    init_key, train_key, roll_key = jax.random.split(key, 3)

    @jax.jit
    def train_all(state, key):
        def body(state, k):
            k_sample, k_update = jax.random.split(k)
            batch, mask = sample(k_sample)
            return trainer.update(k_update, state, batch, mask)

        return jax.lax.scan(body, state, jax.random.split(key, updates))

    tic = time.perf_counter()
    state, metrics = jax.block_until_ready(train_all(trainer.init(init_key), train_key))
    seconds = time.perf_counter() - tic
    final = {k: float(np.asarray(v)[-max(1, updates // 20) :].mean()) for k, v in metrics.items()}
    if not all(math.isfinite(v) for v in final.values()):
        raise MjxmbrlError(f"model '{name}' diverged during model-eval training (non-finite {[k for k, v in final.items() if not math.isfinite(v)]})")
    if name in ("ensemble", "rssm"):  # evaluate the mean prediction of the stochastic models
        model = make_model(dataclasses.replace(cfg, rollout="mean"), env_cfg, data.obs.shape[-1], data.action.shape[-1])

    @jax.jit
    def predict(params, obs0, actions, key):
        def one(o, acts, k):
            k0, k1 = jax.random.split(k)
            return open_loop(model, params, model.initial_state(params, o, k0), acts, k1)[1]

        return jax.vmap(one)(obs0, actions, jax.random.split(key, obs0.shape[0]))

    return np.asarray(predict(state.params, jnp.asarray(obs0), jnp.asarray(actions), roll_key)), seconds, final


def run_model_eval(
    env_cfg: EnvConfig,
    out_dir: Path,
    *,
    run_dir: Optional[Path] = None,
    run_cfg: Any = None,
    models: Sequence[str] = LEARNED,
    settings: EvalSettings = EvalSettings(),
    model_overrides: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Collects data, trains every model in `models`, writes the table, JSON and plot to out_dir."""
    for name in models:
        if name not in LEARNED:
            raise MjxmbrlError(f"unknown model '{name}' for model-eval (valid: {', '.join(LEARNED)})")
    model_overrides = model_overrides or {}
    updates = {n: int(model_overrides.get(n, {}).get("updates", settings.updates)) for n in models}
    cfgs = {n: build_model_config(n, {k: v for k, v in model_overrides.get(n, {}).items() if k != "updates"}) for n in models}
    if "mlp" in cfgs:
        from mjxmbrl.envs.registry import get_spec

        if not get_spec(env_cfg.name).obs_groups:
            raise MjxmbrlError(f"model 'mlp' needs observation groups; env '{env_cfg.name}' declares none")
    if settings.transitions <= 0 or not 0.0 <= settings.policy_fraction <= 1.0:
        raise MjxmbrlError(f"model-eval needs transitions > 0 and a policy fraction in [0, 1], got {settings.transitions}, {settings.policy_fraction}")
    if settings.policy_fraction > 0 and run_dir is None:
        raise MjxmbrlError("policy episodes need a run directory with a trained policy (or a policy fraction of 0)")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(settings.seed)
    k_train, k_test, k_models = jax.random.split(key, 3)
    probe = make_vector_env(env_cfg.name, 1, impl=env_cfg.impl, episode_length=env_cfg.episode_length, action_repeat=env_cfg.action_repeat)
    episodes = math.ceil(settings.transitions / math.ceil(probe.episode_length / probe.action_repeat))
    policy_episodes = round(episodes * settings.policy_fraction)
    sources = []
    if policy_episodes > 0:
        sources.append((policy_episodes, _policy_act_fn(run_dir, run_cfg)))
    if episodes - policy_episodes > 0:
        sources.append((episodes - policy_episodes, _random_act_fn(probe.action_size)))

    def split(key):
        keys = jax.random.split(key, len(sources))
        return _concat([collect_episodes(env_cfg, n, fn, k) for (n, fn), k in zip(sources, keys)])

    tic = time.perf_counter()
    train, test = split(k_train), split(k_test)
    collect_s = time.perf_counter() - tic
    max_h = max(HORIZONS)
    windows = eval_windows(*test, max_h, settings.start_stride)
    obs_flat = np.asarray(train[0].obs)[np.asarray(train[1]) > 0]
    std = np.sqrt(np.maximum(obs_flat.var(axis=0), 1e-8))

    curves: Dict[str, np.ndarray] = {}
    for label, pred in _baseline_predictions(fit_linear(*train), *windows[:2]).items():
        curves[label] = error_by_horizon(pred, windows[2], std)
    train_info = {}
    for i, name in enumerate(models):
        pred, seconds, final = train_and_predict(name, cfgs[name], env_cfg, train, windows, updates[name], jax.random.fold_in(k_models, i))
        curves[name] = error_by_horizon(pred, windows[2], std)
        train_info[name] = {"train_seconds": seconds, "updates": updates[name], "final_train_metrics": final}
        print(f"model-eval {env_cfg.name}: {name} trained in {seconds:.0f}s; error@1 {curves[name][0]:.3g} @10 {curves[name][9]:.3g}", flush=True)

    best_baseline = np.minimum(curves["no change"], curves["linear (least squares)"])
    result = {
        "env": env_cfg.name,
        "action_repeat": env_cfg.action_repeat,
        "run_dir": str(run_dir) if run_dir else None,
        "settings": dataclasses.asdict(settings),
        "model_configs": {n: dataclasses.asdict(c) for n, c in cfgs.items()},
        "episodes_per_split": {"policy": policy_episodes, "random": episodes - policy_episodes},
        "train_transitions": int(np.asarray(train[1]).sum()),
        "heldout_windows": int(windows[0].shape[0]),
        "collect_seconds": collect_s,
        "errors": {label: {str(h): float(c[h - 1]) for h in HORIZONS} for label, c in curves.items()},
        "improvement_over_best_baseline": {
            n: {str(h): float(best_baseline[h - 1] / max(curves[n][h - 1], 1e-12)) for h in HORIZONS} for n in models
        },
        "train": train_info,
        "date": time.strftime("%Y-%m-%d"),
        "device": str(jax.devices()[0]),
    }
    (out_dir / "model_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "model_eval.md").write_text(render_table(result))
    plot_curves(curves, out_dir / "model_eval.png", f"{env_cfg.name} (action repeat {env_cfg.action_repeat})")
    return result


def render_table(result: Dict[str, Any]) -> str:
    """Markdown: one row per predictor, normalised error at each horizon, and the gain over the better baseline."""
    lines = [
        f"### {result['env']} (action repeat {result['action_repeat']})",
        "",
        f"{result['train_transitions']} training transitions ({result['episodes_per_split']['policy']} policy + "
        f"{result['episodes_per_split']['random']} random episodes), {result['heldout_windows']} held-out windows "
        f"of {max(HORIZONS)} steps; "
        "normalised squared error (per-dimension squared error / data variance, mean over dims).",
        "",
        "| predictor | " + " | ".join(f"{h} step{'s' if h > 1 else ''}" for h in HORIZONS) + " | x better than best baseline (1 / 10 steps) | train s |",
        "|---|" + "---|" * len(HORIZONS) + "---|---|",
    ]
    for label, errs in result["errors"].items():
        gain = result["improvement_over_best_baseline"].get(label)
        gain_txt = f"{gain['1']:.1f}x / {gain['10']:.1f}x" if gain else "-"
        secs = result["train"].get(label, {}).get("train_seconds")
        lines.append(
            f"| {label} | " + " | ".join(f"{errs[str(h)]:.3g}" for h in HORIZONS) + f" | {gain_txt} | {'-' if secs is None else f'{secs:.0f}'} |"
        )
    return "\n".join(lines) + "\n"


def plot_curves(curves: Dict[str, np.ndarray], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, c in curves.items():
        style = "--" if label in ("no change", "linear (least squares)") else "-"
        ax.plot(np.arange(1, len(c) + 1), c, style, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("open-loop steps")
    ax.set_ylabel("normalised squared error")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
