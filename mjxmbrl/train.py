"""The collect-and-learn pipeline: build components, one jitted train step, the host loop.

`build(cfg)` binds every component to its sub-config; `init_state` makes the
`TrainState`, the whole truth of a run; `make_train_chunk` scans `train_step`
over a chunk inside one `jit` with the state donated; `run` is the host loop
that evaluates, logs and checkpoints between chunks.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mjxmbrl.config import Config
from mjxmbrl.envs import RunningStats, init_stats, make_vector_env, normalize, update_stats
from mjxmbrl.envs.registry import get_spec
from mjxmbrl.evaluate import make_evaluator
from mjxmbrl.learners import make_learner
from mjxmbrl.learners.base import Learner
from mjxmbrl.models import make_model
from mjxmbrl.models.trainer import ModelTrainer, make_model_trainer
from mjxmbrl.parallel import seed_values, shard_batches
from mjxmbrl.planners.base import PlanParams
from mjxmbrl.replay import ReplayState, make_replay
from mjxmbrl.types import Metrics, Transition

# Incremented at trace time only: a count above one per shape means recompilation.
TRACE_COUNTS: collections.Counter = collections.Counter()


@struct.dataclass
class TrainState:
    """Everything a run needs to continue bit for bit: save it, restore it, go on."""

    key: jax.Array  # raw uint32 PRNG key [2]
    env_state: Any  # batched env State, leading axis num_envs
    obs_stats: RunningStats
    replay: ReplayState
    learner: Any
    model: Any  # ModelState of the learned world model, or {} without one
    planner: Any  # per-env planner states [num_envs, ...] (warm starts), or {} without a planner
    episode_return: jax.Array  # [num_envs] return of each env's running episode
    env_steps: jax.Array  # int32: simulator control steps over all envs (action repeat counted)
    train_steps: jax.Array  # int32: vectorised env steps taken
    updates: jax.Array  # int32: gradient updates taken


class Components(NamedTuple):
    cfg: Config
    env: Any  # VectorEnv
    replay: Any  # Replay
    learner: Learner
    evaluate: Any  # jitted (key, policy_params, obs_stats) -> EvalResult
    model: Any = None  # Model, or None (cfg.model.name "none")
    model_trainer: Optional[ModelTrainer] = None  # None also for the oracle (nothing to train)
    planner: Any = None  # Planner acting in the envs, or None
    proposal: Any = None  # the planner's proposal: acts when the planner does not (probability 1 - p_plan)

    @property
    def env_steps_per_train_step(self) -> int:
        return self.cfg.env.num_envs * self.cfg.env.action_repeat


def build(cfg: Config) -> Components:
    """Binds env, replay, learner and evaluator to their sub-configs."""
    env = make_vector_env(
        cfg.env.name,
        num_envs=cfg.env.num_envs,
        impl=cfg.env.impl,
        episode_length=cfg.env.episode_length,
        action_repeat=cfg.env.action_repeat,
        auto_reset=True,
    )
    replay = make_replay(cfg.replay.capacity, cfg.env.num_envs, env.observation_size, env.action_size)
    model = trainer = None
    if cfg.model.name != "none":
        model = make_model(cfg.model, cfg.env, env.observation_size, env.action_size)
        trainer = make_model_trainer(model, cfg.model) if model.loss is not None else None
    learner = make_learner(
        cfg.agent,
        env.observation_size,
        env.action_size,
        cfg.train.total_env_steps,
        model=model,
        normalize_obs=cfg.env.normalize_obs,
        has_termination=get_spec(cfg.env.name).has_termination,
    )
    evaluate = make_evaluator(cfg.env, learner, cfg.train.eval_episodes)
    planner = proposal = None
    if cfg.planner.name != "none":
        from mjxmbrl.planners import make_planner

        planner, _, proposal = make_planner(cfg.planner, model, cfg.env, env.observation_size, env.action_size, learner)
    return Components(cfg, env, replay, learner, evaluate, model, trainer, planner, proposal)


def init_state(components: Components, root_key: Optional[jax.Array] = None) -> TrainState:
    """The TrainState of one seed; `root_key` defaults to PRNGKey(train.seed) (vmappable over root keys)."""
    cfg = components.cfg
    root = jax.random.PRNGKey(cfg.train.seed) if root_key is None else root_key
    key, env_key, learner_key = jax.random.split(root, 3)
    # A separate stream, so adding a model leaves the agent's initialisation unchanged.
    model_key = jax.random.fold_in(root, 1)
    env_state = components.env.reset(env_key)
    return TrainState(
        key=key,
        env_state=env_state,
        obs_stats=init_stats(components.env.observation_size),
        replay=components.replay.init(),
        learner=components.learner.init(learner_key),
        model=components.model_trainer.init(model_key) if components.model_trainer is not None else {},
        planner=jax.vmap(components.planner.init)(jax.random.split(model_key, cfg.env.num_envs)) if components.planner is not None else {},
        episode_return=jnp.zeros((cfg.env.num_envs,), jnp.float32),
        env_steps=jnp.zeros((), jnp.int32),
        train_steps=jnp.zeros((), jnp.int32),
        updates=jnp.zeros((), jnp.int32),
    )


def _maybe_normalize(normalize_obs: bool, stats: RunningStats, obs: jax.Array) -> jax.Array:
    return normalize(stats, obs) if normalize_obs else obs


def make_train_step(components: Components):
    """train_step(ts) -> (ts, metrics): act in all envs, insert, K learner updates.

    Before `warmup_env_steps` actions are uniform and no update runs; updates
    also wait until the buffer holds one batch.
    """
    cfg = components.cfg
    env, replay, learner = components.env, components.replay, components.learner
    num_updates = cfg.train.updates_per_step
    batch_size = cfg.agent.batch_size
    norm = cfg.env.normalize_obs
    steps_per_call = components.env_steps_per_train_step

    def learn(key, learner_state, replay_state, obs_stats, env_steps, model_state):
        def one_update(learner_state, update_key):
            sample_key, update_key = jax.random.split(update_key)
            batch = replay.sample(sample_key, replay_state, batch_size)
            if learner.uses_model:  # raw observations: the model predicts them; the learner normalises its inputs
                model_params = model_state.params if trainer is not None else {}
                return learner.update(update_key, learner_state, batch, env_steps, model_params, obs_stats)
            batch = batch._replace(
                obs=_maybe_normalize(norm, obs_stats, batch.obs),
                next_obs=_maybe_normalize(norm, obs_stats, batch.next_obs),
            )
            return learner.update(update_key, learner_state, batch, env_steps)

        learner_state, metrics = jax.lax.scan(one_update, learner_state, jax.random.split(key, num_updates))
        return learner_state, jax.tree.map(jnp.mean, metrics)

    trainer = components.model_trainer
    model_cfg = cfg.model

    def learn_model(key, model_state, replay_state):
        def one_update(model_state, update_key):
            sample_key, update_key = jax.random.split(update_key)
            batch, mask = replay.sample_sequences(sample_key, replay_state, model_cfg.batch_size, model_cfg.seq_len)
            return trainer.update(update_key, model_state, batch, mask)

        model_state, metrics = jax.lax.scan(one_update, model_state, jax.random.split(key, model_cfg.updates_per_step))
        return model_state, jax.tree.map(jnp.mean, metrics)

    def maybe_learn_model(key, model_state, replay_state, env_steps):
        """K model updates on replay sequences, once past warmup and one batch of full windows is stored."""
        if trainer is None or model_cfg.updates_per_step == 0:
            return model_state, {}, jnp.zeros((), bool)
        ready = (env_steps >= cfg.train.warmup_env_steps) & (replay_state.size >= model_cfg.seq_len)
        ready = ready & (replay_state.size * cfg.env.num_envs >= model_cfg.batch_size)
        shapes = jax.eval_shape(learn_model, key, model_state, replay_state)[1]
        model_state, metrics = jax.lax.cond(
            ready,
            learn_model,
            lambda k, s, r: (s, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)),
            key,
            model_state,
            replay_state,
        )
        return model_state, metrics, ready

    planner, proposal = components.planner, components.proposal

    def act_with_planner(key, ts: TrainState):
        """Byravan et al. Alg. 1: per env, the planner's action with probability p_plan, else the proposal's."""
        k_plan, k_prop, k_mix = jax.random.split(key, 3)
        pp = PlanParams(
            model=ts.model.params if trainer is not None else {},
            policy=learner.policy_params(ts.learner),
            value=(ts.learner, ts.obs_stats),
            obs_stats=ts.obs_stats,
        )
        progress = ts.env_steps.astype(jnp.float32) / cfg.train.total_env_steps
        plan_all = jax.vmap(planner.plan, in_axes=(0, 0, 0, 0, None, None))
        keys = jax.random.split(k_plan, cfg.env.num_envs)
        planned_action, planner_state, metrics = plan_all(keys, ts.planner, ts.env_state.obs, ts.env_state, pp, progress)
        proposed = proposal(pp, ts.env_state.obs, k_prop, progress)
        use_plan = jax.random.uniform(k_mix, (cfg.env.num_envs,)) < cfg.planner.p_plan
        action = jnp.where(use_plan[:, None], planned_action, proposed)
        metrics = {k: jnp.mean(v) for k, v in metrics.items()}
        return action, use_plan.astype(jnp.float32), planner_state, metrics

    def train_step(ts: TrainState, _=None):
        key, act_key, explore_key, learn_key = jax.random.split(ts.key, 4)
        model_key = jax.random.fold_in(learn_key, 1)
        obs = ts.env_state.obs
        warmup = ts.env_steps < cfg.train.warmup_env_steps
        if planner is None:
            policy_action = learner.policy(
                learner.policy_params(ts.learner), _maybe_normalize(norm, ts.obs_stats, obs), act_key, False
            )
            planned, planner_state, planner_metrics = jnp.zeros((cfg.env.num_envs,)), ts.planner, {}
        else:
            policy_action, planned, planner_state, planner_metrics = act_with_planner(act_key, ts)
            planned = planned * (1.0 - warmup)
        random_action = jax.random.uniform(explore_key, policy_action.shape, minval=-1.0, maxval=1.0)
        action = jnp.where(warmup, random_action, policy_action)

        env_state = env.step(ts.env_state, action)
        info = env_state.info
        transition = Transition(
            obs=obs,
            action=action,
            reward=env_state.reward,
            next_obs=info["final_obs"],
            terminated=info["terminated"],
            truncated=info["truncated"],
            planned=planned,
        )
        replay_state = replay.insert(ts.replay, transition)
        obs_stats = update_stats(ts.obs_stats, obs) if norm else ts.obs_stats
        env_steps = ts.env_steps + steps_per_call

        episode_return = ts.episode_return + env_state.reward
        done = env_state.done
        finished_returns = jnp.sum(done * episode_return)
        finished_count = jnp.sum(done)
        episode_return = episode_return * (1.0 - done)

        stored = replay_state.size * cfg.env.num_envs
        can_learn = (num_updates > 0) & (env_steps >= cfg.train.warmup_env_steps) & (stored >= batch_size)
        if num_updates > 0:
            learner_metric_shapes = jax.eval_shape(
                learn, learn_key, ts.learner, replay_state, obs_stats, env_steps, ts.model
            )[1]
            learner_state, learner_metrics = jax.lax.cond(
                can_learn,
                learn,
                lambda k, s, *_: (s, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), learner_metric_shapes)),
                learn_key,
                ts.learner,
                replay_state,
                obs_stats,
                env_steps,
                ts.model,
            )
        else:
            learner_state, learner_metrics = ts.learner, {}
        model_state, model_metrics, model_learning = maybe_learn_model(model_key, ts.model, replay_state, env_steps)

        ts = ts.replace(
            key=key,
            env_state=env_state,
            obs_stats=obs_stats,
            replay=replay_state,
            learner=learner_state,
            model=model_state,
            planner=planner_state,
            episode_return=episode_return,
            env_steps=env_steps,
            train_steps=ts.train_steps + 1,
            updates=ts.updates + can_learn.astype(jnp.int32) * num_updates,
        )
        metrics = {
            "train/reward": jnp.mean(env_state.reward),
            "train/episode_return_sum": finished_returns,
            "train/episodes": finished_count,
            "train/learning": can_learn.astype(jnp.float32),
            "train/model_learning": model_learning.astype(jnp.float32),
            **({"train/planned_fraction": jnp.mean(planned), **planner_metrics} if planner is not None else {}),
            **learner_metrics,
            **model_metrics,
        }
        return ts, metrics

    return train_step


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def init_run_state(components: Components) -> TrainState:
    """The state of a whole run: `init_state` for one seed, or vmapped over the root keys of
    seeds train.seed + i (leaves [num_seeds, ...]) when train.num_seeds > 1."""
    train_cfg = components.cfg.train
    if train_cfg.num_seeds == 1:
        return init_state(components)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seed_values(train_cfg)])
    return jax.vmap(lambda k: init_state(components, k))(keys)


def make_train_chunk(components: Components, num_steps: int, shardings: Any = None):
    """Jitted `chunk(ts) -> (ts, metrics)`: `num_steps` train steps in one `lax.scan`.

    The state is donated, so its buffers (the replay above all) are updated in
    place. Metrics are stacked per step [num_steps]; `train/params_finite`
    checks the learner and model states once at the end of the chunk.
    With train.num_seeds > 1 the scan is vmapped over the seed axis of the
    state, and every metric gets a leading seed axis [num_seeds, num_steps].
    `shardings` (a TrainState of NamedShardings from `parallel.state_shardings`)
    pins the state's layout on a device mesh; metrics come back replicated.
    """
    mesh = jax.tree.leaves(shardings)[0].mesh if shardings is not None else None
    if mesh is not None and mesh.size > 1:
        components = components._replace(replay=shard_batches(components.replay, mesh))
    train_step = make_train_step(components)

    def chunk(ts: TrainState):
        TRACE_COUNTS["train_chunk"] += 1
        ts, metrics = jax.lax.scan(train_step, ts, None, length=num_steps)
        metrics["train/params_finite"] = jnp.broadcast_to(_all_finite((ts.learner, ts.model)), (num_steps,))
        return ts, metrics

    if components.cfg.train.num_seeds > 1:
        chunk = jax.vmap(chunk)
    if shardings is None:
        return jax.jit(chunk, donate_argnums=0)
    metrics_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.jit(chunk, donate_argnums=0, in_shardings=(shardings,), out_shardings=(shardings, metrics_sharding))


def summarize_chunk(metrics: Metrics) -> dict:
    """Host-side reduction of one chunk's stacked metrics to one log row."""
    m = {k: np.asarray(v) for k, v in metrics.items()}
    row = {"train/reward": float(m["train/reward"].mean())}
    episodes = float(m["train/episodes"].sum())
    if episodes > 0:
        row["train/episode_return"] = float(m["train/episode_return_sum"].sum() / episodes)
    learning = m["train/learning"]
    model_learning = m["train/model_learning"]
    for key, values in m.items():
        if key.startswith("learner/") and learning.sum() > 0:
            row[key] = float((values * learning).sum() / learning.sum())
        if key.startswith("model/") and model_learning.sum() > 0:
            row[key] = float((values * model_learning).sum() / model_learning.sum())
    for key, values in m.items():
        if key.startswith("planner/") or key == "train/planned_fraction":
            row[key] = float(values.mean())
    row["train/params_finite"] = bool(m["train/params_finite"].all())
    return row


def chunk_plan(cfg: Config) -> dict:
    """Sizes of the host loop, all in whole chunks so resume points line up."""
    per_step = cfg.env.num_envs * cfg.env.action_repeat
    steps_per_chunk = max(1, math.ceil(cfg.train.log_every / per_step))
    chunk_env_steps = steps_per_chunk * per_step
    total_chunks = max(1, math.ceil(cfg.train.total_env_steps / chunk_env_steps))
    return {
        "steps_per_chunk": steps_per_chunk,
        "chunk_env_steps": chunk_env_steps,
        "total_chunks": total_chunks,
        "eval_every_chunks": max(1, math.ceil(cfg.train.eval_every / chunk_env_steps)),
        "checkpoint_every_chunks": max(1, math.ceil(cfg.train.checkpoint_every / chunk_env_steps)),
    }


def timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start
