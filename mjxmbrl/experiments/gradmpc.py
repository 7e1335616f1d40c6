"""`gradmpc-dmc100k`, `gradmpc-sparse`, `gradmpc-candidates`: the tables of the gradient-based planning paper.

Source: S V, Jalagam, LeCun, Sobal 2023, "Gradient-based Planning with World Models",
arXiv:2312.17227:
  - Table 1 ("DM-Control 100K Results": mean and std over 10 test episodes across three seeds at
    100k env steps) for PlaNet, Dreamer, Grad-MPC and SAC on five tasks, with Table 4's action
    repeats (cartpole swingup 8, reacher easy 4, finger spin 2, walker walk 2, cheetah run 4);
  - Table 2 (Policy+Grad-MPC against Dreamer's pure policy on two sparse tasks, 10 test episodes
    across 3 seeds, Dreamer trained for 500k env steps): one trained Dreamer per seed, evaluated
    both ways on the same episodes (`eval/return` the planner, `eval/policy_return` the policy);
  - Fig. 4 (test return against the number of Grad-MPC candidates, one seed).

The paper's agents learn from 64 x 64 pixels; ours, by default, from proprioceptive states (the
RSSM with MLP encoder and decoder), so the published column is a reference, not a like-for-like
target. PlaNet and Grad-MPC are the `mpc` agent over the RSSM with CEM or the gradient planner
(configs/gradmpc/planet_*.yaml, gradmpc_*.yaml); Dreamer is agent `dreamer`
(configs/gradmpc/dreamer_*.yaml, CPU-sized update rate: see its header); SAC is configs/sac/*. The paper's planner sizes
(J = 1000 candidates, I = 10 CEM or 40 gradient iterations, H = 12) are the `paper` budget's, for a
GPU; `small` plans with a CPU-sized planner of about the same cost for both methods (CEM: J = 100,
I = 5, top 10; Grad-MPC: J = 16, I = 12) and one seed.
"""

from __future__ import annotations

from mjxmbrl.experiments.base import Budget, Cell, Experiment, Published, register
from mjxmbrl.experiments.dmc100k_sac import TABLE_1 as SAC_TABLE_1
from mjxmbrl.experiments.dmc100k_sac import sac_rate_overrides

PAPER = "S V et al. 2023 (arXiv:2312.17227)"

# task: (env name, Table 4 action repeat, Table 1 row {column: (mean, std)}); the numbers are dmc100k-sac's.
ENV_NAMES = {"cartpole_swingup": "CartpoleSwingup", "reacher_easy": "ReacherEasy", "finger_spin": "FingerSpin",
             "walker_walk": "WalkerWalk", "cheetah_run": "CheetahRun"}
TABLE_1 = {task: (ENV_NAMES[task], repeat, row) for task, (_, repeat, row) in SAC_TABLE_1.items()}

# method: (config of the cartpole cell, Table 1 column it is compared with)
PLANNING_METHODS = {
    "planet": ("configs/gradmpc/planet_cartpole_swingup.yaml", "PlaNet"),
    "gradmpc": ("configs/gradmpc/gradmpc_cartpole_swingup.yaml", "Grad-MPC"),
}
# Table 1's own setting, 64 x 64 frames: the pixel RSSM (CNN encoder and decoder) with each planner, cartpole
# swingup only (a pixel model update costs about 9 s on a 2-core CPU at the paper's batch: docs/gradmpc.md).
PIXEL_METHODS = {
    "planet": "configs/gradmpc/planet_pixels_cartpole_swingup.yaml",
    "gradmpc": "configs/gradmpc/gradmpc_pixels_cartpole_swingup.yaml",
}
COLUMNS = ("PlaNet", "Dreamer", "Grad-MPC", "SAC Pixels", "CURL")
DREAMER_CONFIG = "configs/gradmpc/dreamer_cartpole_swingup.yaml"
# The Dreamer configs' CPU rate: one model and one behaviour update per 160 env steps, on every
# 160 / R-th agent step (the paper's collect interval is one per 10 env steps: see the config header).
DREAMER_ENV_STEPS_PER_UPDATE = 160


def _published(row: dict, column: str) -> Published:
    mean, std = row[column]
    return Published(float(mean), float(std), f"Table 1, column '{column}' (from pixels)")


def _compared_with(row: dict, column: str) -> dict:
    """A Table 1 cell's `published` (its column of `row`) and `reference` (the row's other columns)."""
    return {"published": _published(row, column),
            "reference": tuple((c, _published(row, c)) for c in COLUMNS if c != column)}


def model_rate(action_repeat: int) -> tuple:
    """PlaNet's collect interval, 100 model updates per 1000-step episode, as (updates, every) agent steps.

    updates / every = 100 R / 1000 with `every` = 5 agent steps: R / 2 updates on every 5th step.
    """
    if (action_repeat * 100 * 5) % 1000:
        raise ValueError(f"action repeat {action_repeat}: 100 updates per episode is not a whole number per 5 steps")
    return action_repeat * 100 * 5 // 1000, 5


def _task_overrides(env_name: str, repeat: int) -> tuple:
    updates, every = model_rate(repeat)
    return (f"env.name={env_name}", f"env.action_repeat={repeat}", f"model.updates_per_step={updates}",
            f"train.update_every={every}")


def _planning_cells():
    for method, (config, column) in PLANNING_METHODS.items():
        for task, (env_name, repeat, row) in TABLE_1.items():
            yield Cell(
                method=method, task=task, config=config, action_repeat=repeat,
                overrides=_task_overrides(env_name, repeat),
                **_compared_with(row, column),
            )


def _pixel_cells():
    env_name, repeat, row = TABLE_1["cartpole_swingup"]
    for method, config in PIXEL_METHODS.items():
        column = PLANNING_METHODS[method][1]
        yield Cell(
            method=method, task="cartpole_swingup", config=config, action_repeat=repeat, setting="pixels",
            **_compared_with(row, column),
        )


def dreamer_update_every(action_repeat: int) -> int:
    """train.update_every of a Dreamer cell: one update per DREAMER_ENV_STEPS_PER_UPDATE env steps."""
    return max(1, round(DREAMER_ENV_STEPS_PER_UPDATE / action_repeat))


def dreamer_paper_rate(action_repeat: int) -> tuple:
    """Dreamer's collect interval (100 model and behaviour updates per 1000-step episode) and batch of 50 windows."""
    updates, every = model_rate(action_repeat)
    return (f"model.updates_per_step={updates}", f"train.updates_per_step={updates}", f"train.update_every={every}",
            "agent.batch_size=50")


def _dreamer_cells():
    for task, (env_name, repeat, row) in TABLE_1.items():
        yield Cell(
            method="dreamer", task=task, config=DREAMER_CONFIG, action_repeat=repeat,
            overrides=(f"env.name={env_name}", f"env.action_repeat={repeat}"),
            **_compared_with(row, "Dreamer"),
        )


def _sac_cells():
    for task, (_, repeat, row) in TABLE_1.items():
        yield Cell(
            method="sac", task=task, config=f"configs/sac/{task}.yaml", action_repeat=repeat,
            overrides=sac_rate_overrides(repeat),  # Table 4's repeat, whatever our SAC default (docs/sac.md)
            **_compared_with(row, "SAC Pixels"),
        )


TINY_DREAMER = ("agent.actor_hidden_sizes=[16]", "agent.value_hidden_sizes=[16]", "agent.batch_size=4",
                "agent.seq_len=8", "agent.imagine_horizon=4", "train.update_every=4")
TINY_RSSM = ("model.belief_size=16", "model.state_size=4", "model.hidden_size=16", "model.embedding_size=16",
             "model.batch_size=8", "model.seq_len=8")
# About the same model evaluations per action for both planners on a 2-core CPU: CEM 100 x 5 x 12 = 6k
# RSSM steps; Grad-MPC 16 x 12 x 12 forward and backward (about 3 forward each) = 7k.
CPU_PLANNERS = (
    ("planet-*", ("planner.num_samples=100", "planner.iterations=5")),
    ("gradmpc-*", ("planner.num_candidates=16", "planner.iterations=12")),
)

# The pixel cells on a CPU: windows of 16 x 32 frames instead of 50 x 50 (1.4 s per update alone on the 2-core
# CPU, against 8.8 s) and one update per 8 agent steps (64 env steps) instead of 4 per 5: about 1500 updates in
# 100k env steps, 1/31 of the paper's frames seen by the model (docs/gradmpc.md, "From pixels").
PIXEL_CPU_RATE = ("model.batch_size=16", "model.seq_len=32", "model.updates_per_step=1", "train.update_every=8")

BUDGETS = {
    # Every cell compiles and runs a few hundred steps with tiny networks and planners: minutes on a CPU.
    "smoke": Budget(
        "smoke", total_env_steps=1600, eval_every=1600, eval_episodes=1, seeds=1,
        overrides=("train.warmup_env_steps=800", "train.log_every=800", "train.checkpoint_every=1600",
                   "replay.capacity=10000", "log.wandb=disabled"),
        cell_overrides=(
            ("planet-*", TINY_RSSM + ("planner.num_samples=16", "planner.iterations=2", "planner.horizon=4")),
            ("gradmpc-*", TINY_RSSM + ("planner.num_candidates=4", "planner.iterations=4", "planner.horizon=4")),
            ("dreamer-*", TINY_RSSM + TINY_DREAMER),
            ("sac-*", ("agent.hidden_sizes=[32,32]", "agent.batch_size=32")),
            ("*-pixels", ("replay.capacity=1000",)),  # 200 agent steps of 64 x 64 frames
        ),
    ),
    # The protocol's 100k env steps with the paper's RSSM and training, CPU-sized planners, one seed.
    "small": Budget(
        "small", total_env_steps=100000, eval_every=20000, eval_episodes=5, seeds=1,
        overrides=("train.checkpoint_every=20000", "log.wandb=disabled"),
        cell_overrides=CPU_PLANNERS + (("*-pixels", PIXEL_CPU_RATE),) + tuple(
            (f"dreamer-{task}", (f"train.update_every={dreamer_update_every(repeat)}",))
            for task, (_, repeat, _) in TABLE_1.items()
        ),
    ),
    # Table 1's protocol: the paper's planners (J = 1000) and Dreamer's update rate, 10 test episodes, three
    # seeds: a GPU budget.
    "paper": Budget(
        "paper", total_env_steps=100000, eval_every=10000, eval_episodes=10, seeds=3,
        cell_overrides=tuple((f"dreamer-{task}", dreamer_paper_rate(repeat)) for task, (_, repeat, _) in TABLE_1.items()),
    ),
}

NOTES = (
    "Published numbers are the paper's Table 1, learned from 64 x 64 pixels; ours learn from proprioceptive states "
    "unless the cell says pixels, so they are a reference, not a like-for-like target. The paper's std is over 10 "
    "test episodes across three seeds; ours is over seeds of each seed's final mean eval return. Budget `small` plans "
    "with CPU-sized planners (CEM J = 100, I = 5; Grad-MPC J = 16, I = 12), the paper's are J = 1000 with I = 10 "
    "(CEM) or 40 (Grad-MPC)."
)

GRADMPC_DMC100K = register(
    Experiment(
        name="gradmpc-dmc100k",
        paper=PAPER,
        table="Table 1 (DM-Control 100K results); action repeats from Table 4",
        description="PlaNet, Grad-MPC, Dreamer and SAC on the DM Control 100k tasks",
        cells=tuple(_planning_cells()) + tuple(_pixel_cells()) + tuple(_dreamer_cells()) + tuple(_sac_cells()),
        budgets=BUDGETS,
        notes=NOTES,
    )
)

# Table 2: task -> (config, Table 4 action repeat, Policy+Grad-MPC (mean, std), pure policy (mean, std)).
TABLE_2 = {
    "cartpole_swingup_sparse": ("configs/gradmpc/policy_gradmpc_cartpole_swingup_sparse.yaml", 8, (701.2, 40.3), (639.5, 64.2)),
    "ball_in_cup_catch": ("configs/gradmpc/policy_gradmpc_ball_in_cup_catch.yaml", 6, (725.6, 237.3), (608.5, 336.7)),
}

GRADMPC_SPARSE = register(
    Experiment(
        name="gradmpc-sparse",
        paper=PAPER,
        table="Table 2 (Policy+Grad-MPC against Dreamer's pure policy, sparse tasks)",
        description="one Dreamer per seed on cartpole swingup sparse and ball-in-cup catch, evaluated as "
                    "Policy+Grad-MPC (eval/return) and as its pure policy (eval/policy_return)",
        cells=tuple(
            Cell(
                method="policy_gradmpc", task=task, config=config, action_repeat=repeat,
                published=Published(planned[0], planned[1], "Table 2, column 'Policy+Grad-MPC'"),
                reference=(("Pure Policy", Published(pure[0], pure[1], "Table 2, column 'Pure Policy'")),),
            )
            for task, (config, repeat, planned, pure) in TABLE_2.items()
        ),
        budgets={
            "smoke": Budget(
                "smoke", total_env_steps=1600, eval_every=1600, eval_episodes=1, seeds=1,
                overrides=("train.warmup_env_steps=800", "train.log_every=800", "train.checkpoint_every=1600",
                           "replay.capacity=10000", "log.wandb=disabled") + TINY_RSSM + TINY_DREAMER,
            ),
            # A fifth of the paper's training on the CPU, one seed: both columns from the same agent.
            "small": Budget(
                "small", total_env_steps=100000, eval_every=25000, eval_episodes=10, seeds=1,
                overrides=("train.checkpoint_every=25000", "log.wandb=disabled"),
            ),
            # Table 2: Dreamer trained for 500k env steps at its update rate, 10 test episodes, 3 seeds.
            "paper": Budget(
                "paper", total_env_steps=500000, eval_every=25000, eval_episodes=10, seeds=3,
                cell_overrides=tuple((f"policy_gradmpc-{task}", dreamer_paper_rate(repeat))
                                     for task, (_, repeat, _, _) in TABLE_2.items()),
            ),
        },
        notes=(
            "Both columns come from one trained Dreamer per seed, evaluated on the same episodes: eval/return with "
            "the Policy+Grad-MPC planner (H = 1, one candidate from the actor's mode, gradient ascent on r + gamma "
            "v(s')), eval/policy_return with the actor's mode alone. The paper's agents learn from pixels and its "
            "Dreamer trains at 0.1 updates per env step; ours from proprioceptive states at the configs' CPU rate."
        ),
        metrics=("eval/return", "eval/policy_return"),
    )
)

# Fig. 4: Grad-MPC's test return against the number of candidates (one seed, 150 episodes).
CANDIDATES = (1, 4, 16, 64)
FIG4_TASKS = ("cartpole_swingup", "reacher_easy", "finger_spin")

GRADMPC_CANDIDATES = register(
    Experiment(
        name="gradmpc-candidates",
        paper=PAPER,
        table="Fig. 4 (return against the number of Grad-MPC candidates)",
        description="Grad-MPC with 1 to 64 candidates on cartpole swingup, reacher easy and finger spin",
        cells=tuple(
            Cell(
                method="gradmpc", task=task, config=PLANNING_METHODS["gradmpc"][0], action_repeat=TABLE_1[task][1],
                overrides=_task_overrides(TABLE_1[task][0], TABLE_1[task][1]) + (f"planner.num_candidates={j}",),
                setting=f"J{j}",
            )
            for task in FIG4_TASKS for j in CANDIDATES
        ),
        budgets={
            "smoke": Budget(
                "smoke", total_env_steps=1600, eval_every=1600, eval_episodes=1, seeds=1,
                overrides=("train.warmup_env_steps=800", "train.log_every=800", "train.checkpoint_every=1600",
                           "replay.capacity=10000", "log.wandb=disabled") + TINY_RSSM
                          + ("planner.iterations=4", "planner.horizon=4"),
            ),
            "small": Budget(
                "small", total_env_steps=50000, eval_every=10000, eval_episodes=5, seeds=1,
                overrides=("planner.iterations=12", "train.checkpoint_every=25000", "log.wandb=disabled"),
            ),
            # Fig. 4: 150k env steps, one seed, the paper's planner otherwise.
            "paper": Budget("paper", total_env_steps=150000, eval_every=10000, eval_episodes=10, seeds=1),
        },
        notes="Fig. 4 has no numbers to compare with (a plot, one seed); the table lists ours per candidate count.",
    )
)
