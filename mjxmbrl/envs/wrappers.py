"""The batched training env: vmap, action repeat, time limit, auto-reset.

`make_vector_env(name, num_envs, ...)` returns a `VectorEnv` whose State has a
leading axis [N] on every leaf. On top of the base env's own `info` keys it
keeps, in reset and step outputs alike (so the pytree structure is fixed for
`lax.scan`):

- `terminated` [N] float32: a true terminal (the base env's done) this step;
- `truncated` [N] float32: the time limit was hit and the step did not terminate;
- `final_obs` [N, D]: the true last observation of the step (after an
  auto-reset `obs` is the reset observation; `final_obs` is not);
- `steps` [N] int32: control steps (sub-steps of the repeat counted) in the
  current episode; 0 right after a reset;
- `reset_key` [N, ...]: each env's own PRNG key, split at every auto-reset of
  that env, so resets draw fresh initial states;
- `last_action` [N, A]: the action the last step executed (zeros after a
  reset): a latent model's filter reads it with the new observation.

`done = max(terminated, truncated)`.

A base env with `physics_step` and `observe` (the pixel env, envs/pixels.py)
steps with `physics_step` during the action repeat and computes its
observation once, with `observe`, after the last sub-step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from mujoco_playground._src.mjx_env import State

from mjxmbrl.envs.registry import EnvSpec, make_env
from mjxmbrl.types import MjxmbrlError

WRAPPER_INFO_KEYS = ("terminated", "truncated", "final_obs", "steps", "reset_key", "last_action")


def _where(cond: jax.Array, x: Any, y: Any) -> Any:
    """Leafwise select between pytrees x and y; cond is a scalar (unbatched)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(cond, a, b), x, y)


def _where_batched(cond: jax.Array, x: Any, y: Any) -> Any:
    """Leafwise select between batched pytrees; cond [N] broadcasts over trailing axes."""

    def sel(a, b):
        c = jnp.reshape(cond, cond.shape + (1,) * (a.ndim - cond.ndim))
        return jnp.where(c, a, b)

    return jax.tree_util.tree_map(sel, x, y)


class VectorEnv:
    """num_envs copies of a base env, stepped in lock-step (see module docstring).

    Attributes: env (the unbatched base env), spec, num_envs, observation_size,
    action_size, action_repeat, episode_length (control steps), auto_reset,
    dt (the base env's control step, seconds; one vector step spans
    dt * action_repeat).
    """

    def __init__(self, env: Any, num_envs: int, episode_length: int, action_repeat: int = 1, auto_reset: bool = True):
        self.env = env
        self.spec: EnvSpec = env.spec
        self.num_envs = int(num_envs)
        self.observation_size = int(env.observation_size)
        self.action_size = int(env.action_size)
        self.action_repeat = int(action_repeat)
        self.episode_length = int(episode_length)
        self.auto_reset = bool(auto_reset)
        self.dt = float(env.dt)
        # The pixel env renders once per agent step: physics alone in the repeat, then `observe`.
        self._physics_step = getattr(env, "physics_step", env.step)
        self._observe = getattr(env, "observe", None)
        # Jitted so eager calls return distinct buffers (obs and final_obs would
        # otherwise alias, which breaks donating the state) and run fast; inside
        # an outer jit/vmap these inline as usual.
        self._reset_jit = jax.jit(self._reset_batched)
        self._step_jit = jax.jit(self._step_batched)

    # ---- reset -------------------------------------------------------------

    def reset_one(self, key: jax.Array) -> State:
        """key -> unbatched State with the wrapper's info keys initialised."""
        key_reset, key_next = jax.random.split(key)
        state = self.env.reset(key_reset)
        info = dict(state.info)
        zero = jnp.zeros((), jnp.float32)
        info.update(
            terminated=zero, truncated=zero, final_obs=state.obs, steps=jnp.zeros((), jnp.int32), reset_key=key_next,
            last_action=jnp.zeros((self.action_size,), jnp.float32),
        )
        return state.replace(reward=state.reward.astype(jnp.float32), done=zero, info=info)

    def _reset_batched(self, key: jax.Array) -> State:
        return jax.vmap(self.reset_one)(jax.random.split(key, self.num_envs))

    def reset(self, key: jax.Array) -> State:
        """key -> State batched over [num_envs], each env from its own key."""
        return self._reset_jit(key)

    # ---- step --------------------------------------------------------------

    def step_one(self, state: State, action: jax.Array) -> State:
        """Unbatched: repeats `action` action_repeat times, freezing once done.

        Returns the State after the repeat, before any auto-reset, with reward
        the sum over executed sub-steps and the wrapper's info keys set.
        """
        info = state.info
        if self.auto_reset:
            # The incoming state was reset already if its episode ended.
            init_frozen = jnp.zeros((), bool)
            terminated0 = truncated0 = jnp.zeros((), jnp.float32)
        else:
            init_frozen = state.done > 0
            terminated0, truncated0 = info["terminated"], info["truncated"]

        def sub_step(carry, _):
            s, reward_sum, frozen, steps, terminated, truncated = carry
            nxt = self._physics_step(s, action)
            # Fixed dtypes and the wrapper's keys, so the carry keeps its structure.
            nxt = nxt.replace(
                reward=nxt.reward.astype(jnp.float32),
                done=nxt.done.astype(jnp.float32),
                info={**nxt.info, **{k: s.info[k] for k in WRAPPER_INFO_KEYS}},
            )
            new_steps = steps + 1
            term = nxt.done > 0
            trunc = jnp.logical_and(new_steps >= self.episode_length, jnp.logical_not(term))
            s = _where(frozen, s, nxt)
            reward_sum = reward_sum + jnp.where(frozen, 0.0, nxt.reward)
            steps = jnp.where(frozen, steps, new_steps)
            terminated = jnp.where(frozen, terminated, term.astype(jnp.float32))
            truncated = jnp.where(frozen, truncated, trunc.astype(jnp.float32))
            frozen = frozen | term | trunc
            return (s, reward_sum, frozen, steps, terminated, truncated), None

        carry = (state, jnp.zeros((), jnp.float32), init_frozen, info["steps"], terminated0, truncated0)
        if self.action_repeat == 1:
            carry, _ = sub_step(carry, None)
        else:
            carry, _ = jax.lax.scan(sub_step, carry, None, length=self.action_repeat)
        s, reward_sum, _, steps, terminated, truncated = carry
        if self._observe is not None:
            s = self._observe(s)
        done = jnp.maximum(terminated, truncated)
        new_info = dict(s.info)
        new_info.update(
            terminated=terminated, truncated=truncated, final_obs=s.obs, steps=steps, reset_key=info["reset_key"],
            last_action=jnp.asarray(action, jnp.float32),
        )
        return s.replace(reward=reward_sum, done=done, info=new_info)

    def _reset_done(self, state: State) -> State:
        """Batched: replaces the done envs by fresh resets from their own keys.

        Keeps reward, done, metrics, terminated, truncated and final_obs of the
        finished step; data, obs and the base env's info come from the reset.
        """
        done = state.done > 0
        fresh = jax.vmap(self.reset_one)(state.info["reset_key"])
        base_keys = [k for k in state.info if k not in WRAPPER_INFO_KEYS]
        info = dict(state.info)
        for k in base_keys:
            info[k] = _where_batched(done, fresh.info[k], state.info[k])
        info["steps"] = jnp.where(done, 0, state.info["steps"])
        info["reset_key"] = _where_batched(done, fresh.info["reset_key"], state.info["reset_key"])
        return state.replace(
            data=_where_batched(done, fresh.data, state.data),
            obs=_where_batched(done, fresh.obs, state.obs),
            info=info,
        )

    def _step_batched(self, state: State, action: jax.Array) -> State:
        state = jax.vmap(self.step_one)(state, action)
        if self.auto_reset:
            state = jax.lax.cond(jnp.any(state.done > 0), self._reset_done, lambda s: s, state)
        return state

    def step(self, state: State, action: jax.Array) -> State:
        """(State [N], action [N, A]) -> State [N]; auto-resets finished envs if enabled."""
        return self._step_jit(state, action)


def make_vector_env(
    name: str,
    num_envs: int,
    impl: str = "jax",
    episode_length: Optional[int] = None,
    action_repeat: int = 1,
    auto_reset: bool = True,
    pixels: bool = False,
    image_size: int = 64,
    bit_depth: int = 5,
    planning: bool = False,
) -> VectorEnv:
    """Builds the batched env used for training and evaluation.

    Args:
      name: an env name (see `mjxmbrl list envs`).
      num_envs: N, the leading axis of every State leaf.
      impl: MJX backend, "jax" or "warp".
      episode_length: time limit in simulator control steps, every repeated
        sub-step counted (None: spec.episode_length).
      action_repeat: k; each vector step applies the action k times, sums the
        rewards, and freezes an env once it is done within the repeat.
      auto_reset: reset finished envs (training); False freezes them (evaluation).
      pixels, image_size, bit_depth: pixel observations (envs/pixels.py; `pixel_options(env_cfg)`
        gives them from an env config).
      planning: the task without unmodelled disturbances, for a planner's simulator (the oracle model).
    """
    if int(num_envs) <= 0:
        raise MjxmbrlError(f"num_envs must be positive, got {num_envs}")
    if int(action_repeat) <= 0:
        raise MjxmbrlError(f"action_repeat must be positive, got {action_repeat}")
    env = make_env(name, impl=impl, episode_length=episode_length, pixels=pixels, image_size=image_size, bit_depth=bit_depth,
                   planning=planning)
    return VectorEnv(env, num_envs, env.spec.episode_length, action_repeat, auto_reset)
