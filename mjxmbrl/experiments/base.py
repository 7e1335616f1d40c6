"""Records of a paper experiment and the registry `mjxmbrl reproduce` reads.

An `Experiment` is a paper table: its `Cell`s (method x task x setting, each a
base config file under configs/ plus dotted overrides), its `Budget`s (how
many env steps, how often and how long to evaluate, how many seeds) and, per
cell, the numbers the paper published. Modules in this package build their
experiment and `register` it; `get_experiment(name)` looks one up.

Nothing here builds an env or compiles anything: listing experiments and
rejecting bad input stay fast.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from mjxmbrl.config import SHIPPED_CONFIGS
from mjxmbrl.types import MjxmbrlError

# Experiment cells name configs as configs/...: the copies shipped inside the package (mjxmbrl/configs).
BUDGET_NAMES = ("smoke", "small", "paper")


class ExperimentError(MjxmbrlError):
    """An unknown experiment or budget, or an experiment definition that does not hold together."""


@dataclasses.dataclass(frozen=True)
class Published:
    """A number from the paper: mean (and std where given) of the final return, and where it comes from."""

    mean: float
    std: Optional[float]
    source: str  # e.g. "Table 1, column 'SAC Pixels'"


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much to run: env steps (action repeat counted), eval cadence and episodes, default seed count.

    `overrides` are extra dotted config overrides for this budget (small networks,
    a smaller replay buffer, W&B off); they apply after the cell's base config
    and before the cell's own overrides. `cell_overrides` adds overrides for the
    cells whose id matches a glob pattern, after `overrides`: for a section only
    some cells' configs have (an override of a model key on a cell without a
    model is a config error), e.g. (("mpc-*", ("model.batch_size=256",)),).
    """

    name: str
    total_env_steps: int
    eval_every: int
    eval_episodes: int
    seeds: int
    overrides: Tuple[str, ...] = ()
    # (task, env steps) pairs for tables whose tasks have budgets of their own (Amos et al. Table 2:
    # 50k swimmer steps, 200k for the others); tasks not listed get total_env_steps.
    task_env_steps: Tuple[Tuple[str, int], ...] = ()
    # (cell id glob pattern, overrides) pairs: applied, in order, to the cells whose id matches.
    cell_overrides: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()

    def env_steps_for(self, task: str) -> int:
        return dict(self.task_env_steps).get(task, self.total_env_steps)

    def overrides_for(self, cell_id: str) -> Tuple[str, ...]:
        """The `cell_overrides` of the patterns matching `cell_id`, in order."""
        return tuple(o for pattern, extra in self.cell_overrides if fnmatch.fnmatchcase(cell_id, pattern) for o in extra)

    def config_overrides(self, task: str = "", cell_id: str = "") -> Tuple[str, ...]:
        return (
            f"train.total_env_steps={self.env_steps_for(task)}",
            f"train.eval_every={self.eval_every}",
            f"train.eval_episodes={self.eval_episodes}",
        ) + tuple(self.overrides) + self.overrides_for(cell_id)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One entry of the paper table: a method on a task in a setting.

    `config` is a YAML path relative to the repository root (or absolute);
    `action_repeat` is the paper's value, checked against the built config so a
    config that drifts from the paper is caught before anything runs.
    `published` is the number our result is compared with (None: the paper has
    none for this method); `reference` holds the table's other rows for context.
    """

    method: str
    task: str
    config: str
    action_repeat: int
    overrides: Tuple[str, ...] = ()
    setting: str = ""
    published: Optional[Published] = None
    reference: Tuple[Tuple[str, Published], ...] = ()
    # The id of another cell of the experiment whose run (same seed) this cell's run loads parts from
    # (`transfer.source_run`, set by `mjxmbrl reproduce`); that run trains first. None: no transfer.
    source: Optional[str] = None

    @property
    def id(self) -> str:
        """A file-name-safe name, unique within an experiment: method-task[-setting]."""
        parts = [self.method, self.task] + ([self.setting] if self.setting else [])
        return "-".join(p.replace(" ", "_").replace("/", "_") for p in parts)

    @property
    def config_path(self) -> Path:
        """The shipped copy of `configs/...` (not a file of that name where the command runs), or an absolute path."""
        path = Path(self.config)
        if path.is_absolute():
            return path
        if path.parts[0] != "configs":
            raise ValueError(f"cell {self.id}: config {self.config} must be configs/... or an absolute path")
        return SHIPPED_CONFIGS.joinpath(*path.parts[1:])


# The full reference (authors, title, year, arXiv id) of each short citation an experiment's `paper` uses:
# results.md is read without the README's reference list, so it cites the paper in full.
REFERENCES = {
    "Amos et al. 2021 (arXiv:2008.12775)":
        'Amos, Stanton, Yarats, Wilson 2021, "On the model-based stochastic value gradient for continuous '
        'reinforcement learning", arXiv:2008.12775',
    "Byravan et al. 2022 (arXiv:2110.03363)":
        'Byravan, Hasenclever, Trochim, Mirza, Ialongo, Tassa, Springenberg, Abdolmaleki, Heess, Merel, '
        'Riedmiller 2022, "Evaluating model-based planning and planner amortization for continuous control", '
        'arXiv:2110.03363',
    "Lowrey et al. 2019 (arXiv:1811.01848)":
        'Lowrey, Rajeswaran, Kakade, Todorov, Mordatch 2019, "Plan Online, Learn Offline: Efficient Learning '
        'and Exploration via Model-Based Control", arXiv:1811.01848',
    "S V et al. 2023 (arXiv:2312.17227)":
        'S V, Jalagam, LeCun, Sobal 2023, "Gradient-based Planning with World Models", arXiv:2312.17227',
    "public SAC from states: TD-MPC2 (arXiv:2310.16828) and SimbaV2 (arXiv:2502.15280) result files":
        'the SAC result files of Hansen, Su, Wang 2024, "TD-MPC2: Scalable, Robust World Models for Continuous '
        'Control", arXiv:2310.16828, and of Lee et al. 2025, "Hyperspherical Normalization for Scalable Deep '
        'Reinforcement Learning", arXiv:2502.15280',
}


def full_citation(paper: str) -> str:
    """The full reference of a short citation (`REFERENCES`); an unknown one is returned as it is."""
    return REFERENCES.get(paper, paper)


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    paper: str  # short citation: first author et al., year, arXiv id, e.g. "Amos et al. 2021 (arXiv:2008.12775)";
    # a key of REFERENCES, which holds the full one that results.md prints
    table: str  # which table of the paper, e.g. "Table 1 (DM Control 100k)"
    description: str
    cells: Tuple[Cell, ...]
    budgets: Dict[str, Budget]
    notes: str = ""  # shown in results.md (e.g. how the published numbers differ from our setting)
    # The metrics.jsonl keys reported per cell. The first is the table's "ours" (compared with the paper); each
    # further one gets a column of its own in results.md, its curves in results.json and dotted curves in
    # results.png, e.g. ("eval/return", "eval/policy_return"): the actor (planner in the loop) and its policy alone.
    metrics: Tuple[str, ...] = ("eval/return",)

    @property
    def methods(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(c.method for c in self.cells))

    @property
    def tasks(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(c.task for c in self.cells))

    def budget(self, name: str) -> Budget:
        if name not in self.budgets:
            raise ExperimentError(f"unknown budget '{name}' for experiment '{self.name}' (valid: {', '.join(self.budgets)})")
        return self.budgets[name]

    def cell(self, cell_id: str) -> Cell:
        for c in self.cells:
            if c.id == cell_id:
                return c
        raise ExperimentError(f"experiment '{self.name}' has no cell '{cell_id}' (cells: {', '.join(c.id for c in self.cells)})")

    def check(self) -> None:
        """Raises ExperimentError when the definition is inconsistent (run by `register`)."""
        if not self.cells:
            raise ExperimentError(f"experiment '{self.name}' has no cells")
        ids = [c.id for c in self.cells]
        if len(set(ids)) != len(ids):
            raise ExperimentError(f"experiment '{self.name}' has duplicate cells: {ids}")
        for name, b in self.budgets.items():
            if name != b.name:
                raise ExperimentError(f"experiment '{self.name}': budget key '{name}' holds budget '{b.name}'")
            for key in ("total_env_steps", "eval_every", "eval_episodes", "seeds"):
                if getattr(b, key) < 1:
                    raise ExperimentError(f"experiment '{self.name}', budget '{name}': {key} must be >= 1")
            for pattern, _ in b.cell_overrides:
                if not any(fnmatch.fnmatchcase(i, pattern) for i in ids):
                    raise ExperimentError(f"experiment '{self.name}', budget '{name}': cell_overrides pattern '{pattern}' matches no cell")
        for c in self.cells:
            if c.action_repeat < 1:
                raise ExperimentError(f"experiment '{self.name}', cell '{c.id}': action_repeat must be >= 1")
            if c.source is not None:
                source = next((s for s in self.cells if s.id == c.source), None)
                if source is None or source is c or source.source is not None:
                    raise ExperimentError(
                        f"experiment '{self.name}', cell '{c.id}': source '{c.source}' must be another cell of the "
                        "experiment that has no source itself"
                    )
        if not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise ExperimentError(f"experiment '{self.name}': metrics must be one or more distinct keys, got {self.metrics}")


EXPERIMENTS: Dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Adds `experiment` to the registry (replacing one of the same name); returns it."""
    experiment.check()
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def unregister(name: str) -> None:
    EXPERIMENTS.pop(name, None)


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        valid = ", ".join(sorted(EXPERIMENTS)) or "none registered"
        raise ExperimentError(f"unknown experiment '{name}' (valid: {valid})")
    return EXPERIMENTS[name]


def list_experiments() -> Sequence[Experiment]:
    return [EXPERIMENTS[n] for n in sorted(EXPERIMENTS)]
