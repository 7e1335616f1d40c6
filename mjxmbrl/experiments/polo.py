"""Experiments of POLO: Lowrey, Rajeswaran, Kakade, Todorov, Mordatch 2019, "Plan Online, Learn Offline:
Efficient Learning and Exploration via Model-Based Control", arXiv:1811.01848.

`polo-exploration` (Sec. 3.1, Fig. 2a): coverage of the occupancy grid over one life of a point mass in
a world with no reward, in an empty box and in a maze: random actions at every step (the paper's
per-time-step random exploration: the uniform warm-up of the train step over the whole life), greedy
(POLO with a planning horizon of 1) and POLO (H = 32), 10 seeds. The metric is `env/coverage`, the
fraction of the world's reachable cells visited so far (envs/point_mass_worlds.py).

`polo-horizon` (Sec. 3.2-3.3, Fig. 3 and 4a): the getup return of MPC alone (no value) against POLO
at planning horizons 4, 8, 16 and 32 agent steps, and POLO with N-step targets N = 1, 4 and 16 at
H = 8. The CPU budgets run the walker getup (the humanoid is too slow to plan with on a 2-core
CPU: docs/polo.md has its plan time); `paper` is the humanoid getup at the paper's scale (120
rollouts, H = 64 at 0.008 s there: 0.5 s; ours H = 20 at 0.025 s covers the same 0.5 s), 12,000 steps.
Its metric is the mean training reward per step over the last logged chunk (`train/reward`): POLO
reports the return of the lifetime's behaviour, not of separate evaluation episodes.

`polo-inhand` (Sec. 3.2, Fig. 3 middle): the in-hand task's horizon sweep, MPC alone against POLO at
H = 4, 8 and 16 agent steps on `FingerReorient`, the suite's substitute for the Adroit hand (the finger
turns a hinged spinner to a target angle re-drawn every 75 control steps), after a 2500-step life. Its
metric is the return of one 1000-step evaluation episode (`eval/return`; the paper's "average reward
over 1000 steps" times 1000), with the life's last logged mean reward per agent step (`train/reward`:
two control steps' rewards summed) beside it.

The paper gives curves only (no table), so no cell has a published number.
"""

from __future__ import annotations

import dataclasses

from mjxmbrl.experiments.base import Budget, Cell, Experiment, register

PAPER = "Lowrey et al. 2019 (arXiv:1811.01848)"
NO_LEARNING = 10**9  # warm-up env steps that outlast any budget: uniform random actions for the whole life

EXPLORATION_TASKS = {"point_mass_maze": "configs/polo/point_mass_maze.yaml", "point_mass_box": "configs/polo/point_mass_box.yaml"}
EXPLORERS = {
    # random actions at every step; the planner is kept minimal since its action is never executed
    "random": ("planner.value=none", "planner.horizon=1", "planner.num_samples=1",
               f"train.warmup_env_steps={NO_LEARNING}"),
    "greedy": ("planner.horizon=1",),
    "polo": (),
}


def _exploration_budgets() -> dict:
    life = lambda steps: (f"env.episode_length={steps}", "log.wandb=disabled")  # noqa: E731  one life, no resets
    return {
        "smoke": Budget("smoke", total_env_steps=100, eval_every=100, eval_episodes=1, seeds=2,
                        overrides=life(100) + ("train.log_every=20", "train.updates_per_step=2")),
        "small": Budget("small", total_env_steps=1000, eval_every=1000, eval_episodes=1, seeds=10, overrides=life(1000)),
        "paper": Budget("paper", total_env_steps=1000, eval_every=1000, eval_episodes=1, seeds=10,
                        overrides=life(1000) + ("train.updates_per_step=64", "agent.target_samples=32", "agent.target_horizon=8")),
    }


POLO_EXPLORATION = register(
    Experiment(
        name="polo-exploration",
        paper=PAPER,
        table="Fig. 2a: coverage of the occupancy grid in reward-free point-mass worlds (random, greedy H = 1, POLO H = 32)",
        description=(
            "a 2-D point mass in an empty box and in a maze with no reward, one life of 1000 control steps without "
            "resets; per-step random actions, POLO with H = 1 (greedy) and POLO with H = 32; coverage of the reachable "
            "cells of a 16 x 16 grid"
        ),
        cells=tuple(
            Cell(method=method, task=task, config=config, action_repeat=4, overrides=overrides)
            for task, config in EXPLORATION_TASKS.items()
            for method, overrides in EXPLORERS.items()
        ),
        budgets=_exploration_budgets(),
        notes=(
            "Our own MJX worlds stand in for the paper's (its layouts are not published): a 2 m square arena of 16 x 16 "
            "cells, the maze a spanning tree of corridors (envs/point_mass_worlds.py). Ours is the coverage at the end "
            "of the life (`env/coverage`); random is the train step's uniform actions over the whole life. CPU budget "
            "(`small`): G = 16 gradient steps every 16 control steps, targets the best of 8 trajectories of N = 4 agent steps; "
            "`paper`: G = 64 (the paper's humanoid setting), 32 trajectories, N = 8."
        ),
        metrics=("env/coverage",),
    )
)


# ---- polo-horizon ------------------------------------------------------------------------------

HORIZONS = (4, 8, 16, 32)
NSTEP = (1, 4, 16)


def _mpc_polo_pairs(task: str, config: str, action_repeat: int, horizons: tuple) -> tuple:
    """Fig. 3's pairs: per horizon H (agent steps), MPC alone (no terminal value) and POLO, cells `*-hH`."""
    return tuple(
        Cell(method, task, config, action_repeat, overrides=value + (f"planner.horizon={h}",), setting=f"h{h}")
        for h in horizons
        for method, value in (("mpc", ("planner.value=none",)), ("polo", ()))
    )


def _horizon_cells(task: str, config: str) -> tuple:
    nstep = tuple(
        Cell("polo", task, config, 1, overrides=("planner.horizon=8", f"agent.target_horizon={n}"), setting=f"h8-n{n}")
        for n in NSTEP
    )
    return _mpc_polo_pairs(task, config, 1, HORIZONS) + nstep


POLO_HORIZON = register(
    Experiment(
        name="polo-horizon",
        paper=PAPER,
        table="Fig. 3 (MPC alone against POLO across planning horizons, getup) and Fig. 4a (N-step targets)",
        description=(
            "getup from lying on the back: MPC alone (no value) and POLO at H = 4, 8, 16, 32 agent steps, and POLO "
            "at H = 8 with N-step targets N = 1, 4, 16; walker getup on the CPU, the humanoid at the paper budget"
        ),
        cells=_horizon_cells("walker_getup", "configs/polo/walker_getup.yaml"),
        budgets={
            "smoke": Budget("smoke", total_env_steps=60, eval_every=60, eval_episodes=1, seeds=1,
                            overrides=("train.log_every=30", "train.updates_per_step=2", "planner.num_samples=16",
                                       "agent.target_samples=4", "log.wandb=disabled")),
            "small": Budget("small", total_env_steps=3000, eval_every=3000, eval_episodes=1, seeds=3,
                            overrides=("log.wandb=disabled",)),
            "paper": Budget("paper", total_env_steps=12000, eval_every=12000, eval_episodes=1, seeds=3,
                            overrides=("env.name=HumanoidGetup", "planner.num_samples=120", "train.updates_per_step=64",
                                       "agent.batch_size=32", "agent.target_samples=32", "log.wandb=disabled")),
        },
        notes=(
            "The walker getup stands in for the humanoid on the CPU (App. A.1's reward with the walker's standing "
            "height); `--budget paper` sets env.name=HumanoidGetup. Ours is the mean reward per control step over the "
            "last logged chunk of the life (`train/reward`), with episodes of 600 control steps (resets, 20 per "
            "12,000-step life as in the paper)."
        ),
        metrics=("train/reward",),
    )
)


# ---- polo-inhand ---------------------------------------------------------------------------------

INHAND_HORIZONS = (4, 8, 16)  # agent steps of 2 control steps (0.16, 0.32, 0.64 s); the config plans 16
INHAND_LIFE = Budget("small", total_env_steps=2500, eval_every=2500, eval_episodes=1, seeds=1, overrides=("log.wandb=disabled",))


POLO_INHAND = register(
    Experiment(
        name="polo-inhand",
        paper=PAPER,
        table="Fig. 3, middle (in-hand manipulation: MPC alone against POLO across planning horizons, after 2500 steps)",
        description=(
            "the in-hand reorientation substitute (FingerReorient: the finger turns a hinged spinner to a target angle "
            "re-drawn every 75 control steps, unseen by the planner): MPC alone (no value) and POLO at H = 4, 8, 16 "
            "agent steps, one 2500-step life, then one 1000-step evaluation episode"
        ),
        cells=_mpc_polo_pairs("finger_reorient", "configs/polo/finger_reorient.yaml", 2, INHAND_HORIZONS),
        budgets={
            "smoke": Budget("smoke", total_env_steps=100, eval_every=100, eval_episodes=1, seeds=1,
                            overrides=("train.log_every=50", "planner.num_samples=8", "agent.target_samples=2",
                                       "env.episode_length=100", "log.wandb=disabled")),
            # App. B's settings are the config's (80 trajectories, K = 6 of 2 x 64, Z = 25, G = 16, n = 16);
            # `paper` is `small` with 3 seeds
            "small": INHAND_LIFE,
            "paper": dataclasses.replace(INHAND_LIFE, name="paper", seeds=3),
        },
        notes=(
            "The suite has no hand: DM Control's finger and its hinged spinner stand in for the Adroit hand and its "
            "die, with App. B's orientation term as the reward (-angle(tip, target) / pi per control step, in [-1, 0]; "
            "a spinner left where it starts expects -0.5). Action repeat 2 and noise 0.5 are ours: with App. B's "
            "white noise no candidate reaches the spinner (docs/polo.md). The paper gives curves only. Ours is the "
            "eval return of one 1000-step episode after the life, and the life's last logged mean reward per agent step "
            "(`train/reward`: two control steps' rewards summed)."
        ),
        metrics=("eval/return", "train/reward"),
    )
)
