"""Paper experiments for `mjxmbrl reproduce`: one module per experiment, each registering itself.

Add an experiment by writing a module that builds an `Experiment` and calls
`register`, and importing it below.
"""

from mjxmbrl.experiments.base import (
    BUDGET_NAMES,
    EXPERIMENTS,
    Budget,
    Cell,
    Experiment,
    ExperimentError,
    Published,
    full_citation,
    get_experiment,
    list_experiments,
    register,
    unregister,
)
from mjxmbrl.experiments import byravan  # noqa: F401  (registers byravan-dmc, byravan-dmc-fig20, byravan-dmc-ablations, byravan-transfer)
from mjxmbrl.experiments import dmc100k_sac  # noqa: F401  (registers dmc100k-sac)
from mjxmbrl.experiments import gradmpc  # noqa: F401  (registers gradmpc-dmc100k, gradmpc-sparse, gradmpc-candidates)
from mjxmbrl.experiments import polo  # noqa: F401  (registers polo-exploration, polo-horizon, polo-inhand)
from mjxmbrl.experiments import sac_states  # noqa: F401  (registers sac-states)
from mjxmbrl.experiments import svg  # noqa: F401  (registers svg-table2, svg-horizons-dmc)

__all__ = [
    "BUDGET_NAMES",
    "EXPERIMENTS",
    "Budget",
    "Cell",
    "Experiment",
    "ExperimentError",
    "Published",
    "full_citation",
    "get_experiment",
    "list_experiments",
    "register",
    "unregister",
]
