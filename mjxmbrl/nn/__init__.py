"""Networks and distributions shared by models and learners (the bottom layer: imports neither)."""

from mjxmbrl.nn.distributions import (
    diag_gaussian_kl,
    diag_gaussian_log_prob,
    gaussian_log_prob,
    sample_tanh_gaussian,
    tanh_gaussian_from_noise,
    tanh_gaussian_log_prob,
    tanh_gaussian_mode,
    tanh_log_det_jacobian,
)
from mjxmbrl.nn.heads import (
    ScalarHead,
    head_losses,
    make_heads,
    reward_loss,
    termination_loss,
)
from mjxmbrl.nn.networks import (
    MLP,
    Critic,
    CriticEnsemble,
    DistributionalCritic,
    GaussianActor,
    LayerNormMLP,
    TanhMeanGaussianPolicy,
    Value,
    ValueEnsemble,
    squash_log_std,
)

__all__ = [
    "MLP",
    "Critic",
    "CriticEnsemble",
    "DistributionalCritic",
    "GaussianActor",
    "LayerNormMLP",
    "TanhMeanGaussianPolicy",
    "ScalarHead",
    "Value",
    "ValueEnsemble",
    "diag_gaussian_kl",
    "diag_gaussian_log_prob",
    "gaussian_log_prob",
    "head_losses",
    "make_heads",
    "reward_loss",
    "sample_tanh_gaussian",
    "squash_log_std",
    "tanh_gaussian_from_noise",
    "tanh_gaussian_log_prob",
    "tanh_gaussian_mode",
    "tanh_log_det_jacobian",
    "termination_loss",
]
