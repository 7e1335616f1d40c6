"""The collect-and-learn pipeline: build the components, one jitted train step that knows no method.

`build(cfg)` binds the env, the agent (agents/: learner, model, planner) and
the replay to their configs; `init_state` makes the `TrainState`, the whole
truth of a run; `make_train_step` acts, steps the envs, inserts (a transition
with a non-finite next observation stored with weight 0) and lets the agent
learn; `make_train_chunk` scans it inside one `jit` with the state donated.
The host loop lives in mjxmbrl/run/; the life of one step is drawn in
docs/architecture.md.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from flax import struct

from mjxmbrl.agents import EXPLORE, Agent, build_agent, build_parts
from mjxmbrl.agents.base import SEED_AXIS
from mjxmbrl.config import Config, seed_values
from mjxmbrl.envs import make_vector_env
from mjxmbrl.envs.pixels import frame_from_levels, frame_levels, pixel_options
from mjxmbrl.replay import ObsCodec, ReplayState, make_replay
from mjxmbrl.replay.sharding import shard_batches
from mjxmbrl.types import Transition

# Incremented at trace time only: a count above one per shape means recompilation.
TRACE_COUNTS: collections.Counter = collections.Counter()


@struct.dataclass
class TrainState:
    """Everything a run needs to continue bit for bit: save it, restore it, go on."""

    key: jax.Array  # raw uint32 PRNG key [2]
    env_state: Any  # batched env State, leading axis num_envs
    replay: ReplayState
    agent: Any  # the agent's state (learner, model, observation statistics, ...)
    carry: Any  # the agent's per-env acting state [num_envs, ...] (planner warm starts, filtered latents), or {}
    episode_return: jax.Array  # [num_envs] return of each env's running episode
    env_steps: jax.Array  # int32: simulator control steps over all envs (action repeat counted)
    train_steps: jax.Array  # int32: vectorised env steps taken
    updates: jax.Array  # int32: learner gradient updates taken (what the agent reports as train/updates)


class Components(NamedTuple):
    cfg: Config
    env: Any  # VectorEnv (auto-reset) the agent trains in
    replay: Any  # Replay
    agent: Agent
    parts: Any  # agents.AgentParts: the task spec, world model and its trainer the agent was built from

    @property
    def env_steps_per_train_step(self) -> int:
        return self.cfg.env.num_envs * self.cfg.env.action_repeat


def obs_codec(env_cfg: Any) -> Optional[ObsCodec]:
    """How the replay keeps observations: pixel frames as their uint8 levels (a quarter of float32's memory:
    25 KB instead of 98 KB per 64 x 64 transition), anything else as float32 (None)."""
    options = pixel_options(env_cfg)
    if not options["pixels"]:
        return None
    bits = options["bit_depth"]
    return ObsCodec(jnp.uint8, lambda obs: frame_levels(obs, bits), lambda levels: frame_from_levels(levels, bits))


def build(cfg: Config) -> Components:
    """Binds env, agent and replay to their configs (bad names fail here, before anything runs)."""
    env = make_vector_env(
        cfg.env.name,
        num_envs=cfg.env.num_envs,
        impl=cfg.env.impl,
        episode_length=cfg.env.episode_length,
        action_repeat=cfg.env.action_repeat,
        auto_reset=True,
        **pixel_options(cfg.env),
    )
    codec = obs_codec(cfg.env)
    sampler = make_replay(cfg.replay.capacity, cfg.env.num_envs, env.observation_size, env.action_size, obs_codec=codec)
    parts = build_parts(cfg, sampler)
    agent = build_agent(cfg, sampler, parts)
    replay = make_replay(cfg.replay.capacity, cfg.env.num_envs, env.observation_size, env.action_size, agent.extras_spec,
                         obs_codec=codec)
    return Components(cfg, env, replay, agent, parts)


def init_state(components: Components, root_key: Optional[jax.Array] = None) -> TrainState:
    """The TrainState of one seed; `root_key` defaults to PRNGKey(train.seed) (vmappable over root keys)."""
    cfg = components.cfg
    root = jax.random.PRNGKey(cfg.train.seed) if root_key is None else root_key
    key, env_key, _ = jax.random.split(root, 3)  # the third stream is the agent's (agents.base.root_streams)
    return TrainState(
        key=key,
        env_state=components.env.reset(env_key),
        replay=components.replay.init(),
        agent=components.agent.init(root),
        carry=components.agent.init_carry(jax.random.fold_in(root, 2), cfg.env.num_envs),
        episode_return=jnp.zeros((cfg.env.num_envs,), jnp.float32),
        env_steps=jnp.zeros((), jnp.int32),
        train_steps=jnp.zeros((), jnp.int32),
        updates=jnp.zeros((), jnp.int32),
    )


def observed_transition(obs: jax.Array, action: jax.Array, env_state, extras: dict) -> Transition:
    """The transition of one env step [N], with a non-finite next observation or reward made harmless.

    Such a transition (NaN physics) is kept with next_obs := obs, reward := 0 and
    valid = 0, so every loss can weight it 0; the others pass through unchanged.
    """
    info = env_state.info
    next_obs, reward = info["final_obs"], env_state.reward
    valid = jnp.all(jnp.isfinite(next_obs), axis=-1) & jnp.isfinite(reward)
    return Transition(
        obs=obs,
        action=action,
        reward=jnp.where(valid, reward, 0.0),
        next_obs=jnp.where(valid[:, None], next_obs, obs),
        terminated=info["terminated"],
        truncated=info["truncated"],
        valid=valid.astype(jnp.float32),
        extras=extras,
    )


def make_train_step(components: Components):
    """train_step(ts) -> (ts, metrics): the agent acts in all envs, the envs step, insert, the agent learns."""
    cfg, env, replay, agent = components.cfg, components.env, components.replay, components.agent
    warmup_env_steps = cfg.train.warmup_env_steps
    steps_per_call = components.env_steps_per_train_step

    def train_step(ts: TrainState, _=None):
        key, act_key, explore_key, learn_key = jax.random.split(ts.key, 4)
        obs = ts.env_state.obs
        action, carry, extras, act_metrics = agent.act(act_key, ts.agent, ts.carry, ts.env_state, ts.env_steps, EXPLORE)
        random_action = jax.random.uniform(explore_key, action.shape, minval=-1.0, maxval=1.0)
        action = jnp.where(ts.env_steps < warmup_env_steps, random_action, action)

        env_state = env.step(ts.env_state, action)
        transition = observed_transition(obs, action, env_state, extras)
        replay_state = replay.insert(ts.replay, transition)
        agent_state = agent.observe(ts.agent, transition)
        env_steps = ts.env_steps + steps_per_call
        agent_state, learn_metrics = agent.learn(learn_key, agent_state, replay_state, env_steps)
        updates = learn_metrics.pop("train/updates", jnp.zeros((), jnp.int32))

        episode_return = ts.episode_return + transition.reward
        done = env_state.done
        ts = ts.replace(
            key=key,
            env_state=env_state,
            replay=replay_state,
            agent=agent_state,
            carry=carry,
            episode_return=episode_return * (1.0 - done),
            env_steps=env_steps,
            train_steps=ts.train_steps + 1,
            updates=ts.updates + updates,
        )
        metrics = {
            "train/reward": jnp.mean(env_state.reward),
            "train/episode_return_sum": jnp.sum(done * episode_return),
            "train/episodes": jnp.sum(done),
            "train/invalid_transitions": jnp.sum(1.0 - transition.valid),
            **act_metrics,
            **learn_metrics,
        }
        if cfg.train.log_env_metrics:
            metrics.update({f"env/{name}": jnp.mean(value) for name, value in env_state.metrics.items()})
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
    checks the agent's state once at the end of the chunk.
    With train.num_seeds > 1 the scan is vmapped over the seed axis of the
    state, and every metric gets a leading seed axis [num_seeds, num_steps].
    `shardings` (a TrainState of NamedShardings from `run.devices.state_shardings`)
    pins the state's layout on a device mesh; metrics come back replicated.
    """
    mesh = jax.tree.leaves(shardings)[0].mesh if shardings is not None else None
    if mesh is not None and mesh.size > 1:  # the agent samples its batches laid out over the mesh
        replay = shard_batches(components.replay, mesh)
        components = components._replace(replay=replay, agent=build_agent(components.cfg, replay, components.parts))
    train_step = make_train_step(components)

    def chunk(ts: TrainState):
        TRACE_COUNTS["train_chunk"] += 1
        ts, metrics = jax.lax.scan(train_step, ts, None, length=num_steps)
        metrics["train/params_finite"] = jnp.broadcast_to(_all_finite(ts.agent), (num_steps,))
        return ts, metrics

    if components.cfg.train.num_seeds > 1:
        chunk = jax.vmap(chunk, axis_name=SEED_AXIS)  # named: agents/base.run_if keeps its cond unbatched
    if shardings is None:
        return jax.jit(chunk, donate_argnums=0)
    metrics_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.jit(chunk, donate_argnums=0, in_shardings=(shardings,), out_shardings=(shardings, metrics_sharding))
