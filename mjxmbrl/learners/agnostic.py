"""The task-agnostic proposal of Byravan et al. 2022 (App. E.2, Fig. 6c): a Gaussian policy on
proprioceptive inputs only, trained alongside the agent by behaviour cloning (Eq. 1) of the
executed actions in the replay (good and bad data alike), Adam 1e-4.

It sees only the observation dimensions outside the task's task-specific groups (targets,
directions: `EnvSpec.task_groups`), so it captures the body's average behaviour and transfers
across tasks of one body. On a task without task groups (DM Control walker, cartpole) it sees the
whole observation and is the BC-only policy of the replay's behaviour.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import optax

from mjxmbrl.nn.distributions import diag_gaussian_log_prob
from mjxmbrl.nn.networks import TanhMeanGaussianPolicy
from mjxmbrl.ops import gradient_step
from mjxmbrl.types import Params, PRNGKey


@flax.struct.dataclass
class AgnosticState:
    params: Params
    opt_state: object


class AgnosticProposal(NamedTuple):
    """init(key) -> AgnosticState;
    update(state, obs [M, D], action [M, A], weights [M]) -> (state, metrics): one BC step (Eq. 1);
    sample(params, obs [..., D], key) -> action [..., A] in [-1, 1] (obs: the agent's network inputs);
    mean(params, obs) -> [..., A]: the deterministic action."""

    init: Callable[..., AgnosticState]
    update: Callable[..., Tuple[AgnosticState, dict]]
    sample: Callable[..., jax.Array]
    mean: Callable[..., jax.Array]


def proprio_index(obs_size: int, task_groups: Sequence) -> Tuple[int, ...]:
    """The observation dimensions outside every task-specific group (all of them without groups)."""
    task = {d for g in task_groups for d in range(g.start, g.stop)}
    return tuple(d for d in range(obs_size) if d not in task)


def make_agnostic_proposal(obs_size: int, action_size: int, task_groups: Sequence,
                           hidden_sizes: Sequence[int] = (256, 256, 256), lr: float = 1e-4,
                           min_std: float = 1e-4) -> AgnosticProposal:
    index = jnp.asarray(proprio_index(obs_size, task_groups), jnp.int32)
    net = TanhMeanGaussianPolicy(action_size, tuple(hidden_sizes), min_std)
    opt = optax.adam(lr)

    def proprio(obs):
        return jnp.take(obs, index, axis=-1)

    def init(key: PRNGKey) -> AgnosticState:
        params = net.init(key, jnp.zeros((1, index.shape[0])))
        return AgnosticState(params=params, opt_state=opt.init(params))

    def update(state: AgnosticState, obs, action, weights):
        def loss_fn(params):
            mean, std = net.apply(params, proprio(obs))
            log_prob = diag_gaussian_log_prob(mean, std, action)
            return -jnp.sum(log_prob * weights) / jnp.maximum(jnp.sum(weights), 1.0)

        step = gradient_step(loss_fn, opt, state.params, state.opt_state)
        return AgnosticState(params=step.params, opt_state=step.opt_state), {"learner/agnostic_bc_loss": step.loss}

    def sample(params, obs, key):
        mean, std = net.apply(params, proprio(obs))
        return jnp.clip(mean + std * jax.random.normal(key, mean.shape), -1.0, 1.0)

    def mean(params, obs):
        return net.apply(params, proprio(obs))[0]

    return AgnosticProposal(init, update, sample, mean)
