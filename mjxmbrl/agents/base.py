"""The Agent interface the one jitted train step drives without knowing the method.

An agent is assembled from parts (a learner's losses and optimisers, a world
model and its trainer, a planner with its proposal and value) and exposes:

    state              = agent.init(root_key)
    carry              = agent.init_carry(key, num_envs)      # per-env acting state, leaves [N, ...]
    action, carry, extras, metrics
                       = agent.act(key, state, carry, env_state, env_steps, mode)
    state              = agent.observe(state, transition)     # the newest transition [N], before learning
    state, metrics     = agent.learn(key, state, replay_state, env_steps)

`act` sees the batched env State [N] (observations, and the simulator state a
planner over the true dynamics needs) and returns actions [N, A] in [-1, 1],
the new carry (filtered latent, planner warm starts), `extras` ({name: [N, ...]},
stored with the transition in the replay: see `extras_spec`) and scalar
`planner/...` or `train/...` metrics. `mode` is static: "explore" (training),
"eval" (the actor: deterministic, with its planner if it has one) or "policy"
(the amortized policy's mean alone, no planning; Byravan et al. 2022 Fig. 2's
dotted lines). A new episode is recognised from `env_state.info["steps"] == 0`,
so carries need no reset call.

Before `train.warmup_env_steps` the train step executes uniformly random
actions instead of `act`'s (the SAC convention, with its own key so that the
agent's stream is untouched); an agent knows the warm-up from its config and
describes those steps in its extras and metrics accordingly (nothing planned).

`learn` draws the batches it needs from the replay (steps, sequences, ...),
decides itself whether it is ready (warm-up, enough data) and returns
`learner/...` and `model/...` metrics together with the 0/1 flags
`train/learning` and `train/model_learning` over which the host averages them,
and `train/updates` (int32), the gradient updates it took (TrainState.updates).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from mjxmbrl.types import PRNGKey

EXPLORE, EVAL, POLICY = "explore", "eval", "policy"
ACT_MODES = (EXPLORE, EVAL, POLICY)

# What the host logs for each evaluation mode an agent offers: eval/return for the actor,
# eval/policy_return for the amortized policy of an agent that also plans.
EVAL_METRIC_PREFIX = {EVAL: "eval/", POLICY: "eval/policy_"}


class Agent(NamedTuple):
    """Pure functions of one agent, bound to its configs when built (signatures in the module docstring).

    policy_params(state) -> the amortized policy's parameters, exported as the run's
        policy (None for an agent with no learned policy, e.g. MPC alone);
    policy(params, obs, key, deterministic) -> action [..., A]: that policy on network
        inputs (observations normalised with `obs_stats(state)` where the run normalises);
    obs_stats(state) -> RunningStats exported with the policy (None: none kept).
    extras_spec: {name: jax.ShapeDtypeStruct of one env's value} the replay stores.
    eval_modes: the modes evaluated during training; the first is `eval/return`.
    """

    init: Callable[[PRNGKey], Any]
    init_carry: Callable[[PRNGKey, int], Any]
    act: Callable[..., Tuple[jax.Array, Any, Dict[str, jax.Array], Dict[str, jax.Array]]]
    observe: Callable[[Any, Any], Any]
    learn: Callable[..., Tuple[Any, Dict[str, jax.Array]]]
    policy_params: Callable[[Any], Any]
    policy: Optional[Callable[..., jax.Array]] = None
    obs_stats: Optional[Callable[[Any], Any]] = None
    extras_spec: Dict[str, jax.ShapeDtypeStruct] = {}
    eval_modes: Tuple[str, ...] = (EVAL,)


def root_streams(root_key: PRNGKey) -> Tuple[PRNGKey, PRNGKey]:
    """(learner key, model key) of a run's root key.

    The train step splits the root key three ways (carry key, env key, learner
    key) and folds 1 into it for the world model, so that adding a model leaves
    the learner's initialisation unchanged; agents take their two streams here.
    """
    return jax.random.split(root_key, 3)[2], jax.random.fold_in(root_key, 1)


def make_update_due(cfg) -> Callable[[jax.Array], Optional[jax.Array]]:
    """due(env_steps) -> [] bool: learning is due on every `train.update_every`-th vectorised step.

    The rate limit of Byravan et al. 2022 App. E (and POLO's every Z steps): a vectorised step spans
    num_envs * action_repeat env steps. With update_every 1 it returns None: always due, nothing to gate.
    """
    update_every, steps_per_call = cfg.train.update_every, cfg.env.num_envs * cfg.env.action_repeat

    def due(env_steps):
        return (env_steps // steps_per_call) % update_every == 0 if update_every > 1 else None

    return due


def learner_updates_at(cfg, env_steps: jax.Array) -> jax.Array:
    """[] int32: learner updates the train step has taken once `env_steps` env steps are done.

    `learn` runs after every vectorised step of S = num_envs * action_repeat env steps, at the step's new
    count k S (k = 1, 2, ...), and updates (train.updates_per_step times) where k S >= warmup_env_steps and
    k is a multiple of train.update_every (`make_update_due`). Counts the k <= env_steps / S that qualify;
    it assumes the warm-up holds a batch (the agents also wait for one). Schedules over learner steps (the
    annealed proposal mixture, Byravan et al. 2022 App. F.3) read it where only env steps are at hand.
    """
    t = cfg.train
    per_call, every = cfg.env.num_envs * cfg.env.action_repeat, t.update_every
    first = -(-t.warmup_env_steps // per_call)  # the first k whose step count reaches the warm-up
    first = max(first, 1)
    last = env_steps // per_call
    calls = jnp.maximum(last // every - (first - 1) // every, 0)
    return (calls * t.updates_per_step).astype(jnp.int32)


def training_progress(cfg, env_steps: jax.Array) -> jax.Array:
    """[] float32 in [0, 1]: how far the planner's annealed proposal mixture has moved (planners/proposals.py).

    The fraction of the run's env steps done, or with planner.mixture_learner_steps = M > 0 the fraction of
    M learner updates done (`learner_updates_at`), clipped to 1.
    """
    steps = getattr(cfg.planner, "mixture_learner_steps", 0)
    if steps > 0:
        return jnp.clip(learner_updates_at(cfg, env_steps).astype(jnp.float32) / steps, 0.0, 1.0)
    return env_steps.astype(jnp.float32) / cfg.train.total_env_steps


def new_episode(env_state) -> jax.Array:
    """[N] bool: the env's episode has just begun (reset or auto-reset), so per-episode carry restarts."""
    return env_state.info["steps"] == 0


def select(cond: jax.Array, x: Any, y: Any) -> Any:
    """Leafwise `where(cond, x, y)` over batched pytrees; cond [N] broadcasts over trailing axes."""

    def pick(a, b):
        return jnp.where(jnp.reshape(cond, cond.shape + (1,) * (jnp.ndim(a) - cond.ndim)), a, b)

    return jax.tree.map(pick, x, y)


SEED_AXIS = "seed"  # the axis name of the vmap over seeds (train.num_seeds > 1, mjxmbrl/train.py)


def _seed_axis_bound() -> bool:
    try:
        jax.lax.axis_index(SEED_AXIS)
    except NameError:
        return False
    return True


def run_if(ready: jax.Array, update: Callable, *args) -> Tuple[Any, Dict[str, jax.Array]]:
    """`update(*args) -> (state, metrics)` where `ready`, else (args[1], zero metrics) — one lax.cond.

    args[1] is the state the update replaces (args[0] is its key). The zeros
    have the metrics' shapes, so the two branches agree and a skipped step
    logs zeros that the host's flag-weighted average ignores.

    Under the vmap over seeds `ready` is batched, and vmap turns a cond with a batched predicate into a
    select that runs the update at every step. So there the cond's predicate is "any seed ready" (a
    pmax over SEED_AXIS, unbatched), and inside it each seed keeps its update only where it is ready:
    the same result, with the update skipped where no seed is due (every seed's schedule is the same).
    """
    shapes = jax.eval_shape(update, *args)[1]

    def skip(*a):
        return a[1], jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)

    if not _seed_axis_bound():
        return jax.lax.cond(ready, update, skip, *args)

    def update_ready_seeds(*a):
        return jax.tree.map(lambda new, old: jnp.where(ready, new, old), update(*a), skip(*a))

    any_ready = jax.lax.pmax(jnp.asarray(ready, jnp.int32), SEED_AXIS) > 0
    return jax.lax.cond(any_ready, update_ready_seeds, skip, *args)


def scan_updates(update: Callable, key: PRNGKey, state: Any, num: int) -> Tuple[Any, Dict[str, jax.Array]]:
    """`num` updates `update(state, key) -> (state, metrics)` in one lax.scan, metrics averaged over them."""
    state, metrics = jax.lax.scan(update, state, jax.random.split(key, num))
    return state, jax.tree.map(jnp.mean, metrics)
