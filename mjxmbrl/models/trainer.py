"""`model_update`: one gradient step of any learned model, usable inside any jitted train step.

    trainer = make_model_trainer(model, cfg)
    ms = trainer.init(key)                                   # ModelState
    ms, metrics = trainer.update(key, ms, batch, mask)       # batch: Transition [B, T, ...]

Each update first merges the batch into the normalisation statistics kept in
params["stats"], then takes one optimiser step on params["net"] (Adam with the
config's learning rate, gradients clipped by global norm). Metrics are the
model's own `model/...` losses plus `model/grad_norm`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.struct
import optax

from mjxmbrl.models.base import Model, update_model_stats
from mjxmbrl.ops import gradient_step
from mjxmbrl.types import Params


@flax.struct.dataclass
class ModelState:
    params: Params  # {"net": ..., "stats": ModelStats}
    opt_state: Any


class ModelTrainer(NamedTuple):
    init: Callable[..., ModelState]
    update: Callable[..., Any]


def make_optimizer(cfg) -> optax.GradientTransformation:
    """Adam (eps from cfg.adam_eps when the config has one) after global-norm clipping."""
    adam = optax.adam(cfg.learning_rate, eps=getattr(cfg, "adam_eps", 1e-8))
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adam)


def make_model_trainer(model: Model, cfg) -> ModelTrainer:
    """Binds `model` (which must have a loss) to its optimiser from `cfg`."""
    if model.loss is None:
        raise ValueError(f"model '{model.name}' has nothing to train")
    optimizer = make_optimizer(cfg)

    def init(key) -> ModelState:
        params = model.init(key)
        return ModelState(params=params, opt_state=optimizer.init(params["net"]))

    def update(key, state: ModelState, batch, mask):
        stats = update_model_stats(state.params["stats"], batch)

        def loss_fn(net):
            return model.loss({"net": net, "stats": stats}, batch, mask, key)

        step = gradient_step(loss_fn, optimizer, state.params["net"], state.opt_state, has_aux=True, pass_params=True)
        metrics = {**step.aux, "model/grad_norm": optax.tree.norm(step.grads)}
        return ModelState(params={"net": step.params, "stats": stats}, opt_state=step.opt_state), metrics

    return ModelTrainer(init=init, update=update)
