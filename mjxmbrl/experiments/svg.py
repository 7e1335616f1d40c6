"""SAC-SVG(H) experiments of Amos, Stanton, Yarats, Wilson 2021, "On the model-based stochastic
value gradient for continuous reinforcement learning", arXiv:2008.12775.

`svg-table2`: the Table 2 analog. SAC and SAC-SVG(H) for H in {1, 2, 3, 4, 5, 10} on Brax's MJX
ant, hopper, swimmer, halfcheetah and walker2d (the gym locomotion tasks of POPLIN), at the paper's
step budgets (200k env steps, swimmer 50k), each cell from configs/svg/<task>.yaml with Table 4's
target-entropy schedule. The paper's numbers (mean +- std over ten trials) sit next to ours; Brax's
tasks stand in for gym's, so their rewards are a reference, not a target. "SAC (our run)" of
Table 2 used SVG's state normalisation and entropy schedule: our SAC cell is the same config with
agent.horizon=0 and no model (SVG(0) is SAC's update exactly).

`svg-horizons-dmc`: the horizon sweep H in {0, 1, 2, 3, 5} on DM Control cartpole swingup and
reacher easy at the DMC-100k protocol (100k env steps, action repeat 8 and 4), with the CPU-sized
configs/svg/{cartpole_swingup,reacher_easy}.yaml. The paper has no DM Control numbers.
"""

from __future__ import annotations

from mjxmbrl.experiments.base import Budget, Cell, Experiment, Published, register

PAPER = "Amos et al. 2021 (arXiv:2008.12775)"

# Table 2: task -> {method: (mean, std)}; "sac" is the row "SAC (our run)".
TABLE_2 = {
    "ant": {"svg-h1": (3691.00, 1096.77), "svg-h2": (4473.36, 893.44), "svg-h3": (3833.12, 1418.15), "svg-h4": (2896.77, 1444.40),
            "svg-h5": (3221.66, 1576.25), "svg-h10": (1389.30, 981.59), "sac": (510.56, 76.38)},
    "hopper": {"svg-h1": (1594.43, 1689.01), "svg-h2": (2851.90, 361.07), "svg-h3": (2024.43, 1981.51), "svg-h4": (2062.16, 1245.33),
               "svg-h5": (608.58, 2105.60), "svg-h10": (-2511.05, 881.26), "sac": (2180.33, 977.30)},
    "swimmer": {"svg-h1": (348.40, 8.32), "svg-h2": (350.22, 3.63), "svg-h3": (340.75, 13.46), "svg-h4": (348.03, 6.35),
                "svg-h5": (340.99, 4.58), "svg-h10": (303.16, 10.57), "sac": (351.24, 5.27)},
    "halfcheetah": {"svg-h1": (6890.20, 1860.49), "svg-h2": (8751.76, 1785.66), "svg-h3": (9220.39, 1431.77), "svg-h4": (8175.29, 3226.04),
                    "svg-h5": (6129.02, 3519.98), "svg-h10": (2477.25, 2596.43), "sac": (6514.83, 1100.61)},
    "walker2d": {"svg-h1": (-291.54, 659.52), "svg-h2": (447.68, 1139.51), "svg-h3": (877.77, 1533.08), "svg-h4": (1852.18, 967.61),
                 "svg-h5": (1309.20, 1281.76), "svg-h10": (-2328.08, 735.48), "sac": (1265.13, 1317.00)},
}
# Table 2's other rows, shown for context in results.md.
TABLE_2_REFERENCE = {
    "ant": {"POPLIN-P": (2330.1, 320.9), "PETS": (1165.5, 226.9)},
    "hopper": {"POPLIN-P": (2055.2, 613.8), "PETS": (114.9, 621.0)},
    "swimmer": {"POPLIN-P": (334.4, 34.2), "PETS": (326.2, 12.6)},
    "halfcheetah": {"POPLIN-P": (4235.0, 1133.0), "PETS": (2288.4, 1019.0)},
    "walker2d": {"POPLIN-P": (597.0, 478.8), "PETS": (282.5, 501.6)},
}
TABLE_2_STEPS = {"ant": 200_000, "hopper": 200_000, "swimmer": 50_000, "halfcheetah": 200_000, "walker2d": 200_000}
HORIZONS = (1, 2, 3, 4, 5, 10)


def _method_overrides(method: str) -> tuple:
    if method == "sac":
        return ("agent.horizon=0", "model.name=none")
    return (f"agent.horizon={method.removeprefix('svg-h')}",)


def _table2_cells():
    cells = []
    for task, row in TABLE_2.items():
        for method in ("sac",) + tuple(f"svg-h{h}" for h in HORIZONS):
            mean, std = row[method]
            label = "SAC (our run)" if method == "sac" else f"SAC-SVG({method.removeprefix('svg-h')})"
            cells.append(
                Cell(
                    method=method,
                    task=task,
                    config=f"configs/svg/{task}.yaml",
                    action_repeat=1,
                    overrides=_method_overrides(method),
                    published=Published(mean, std, f"Table 2, row '{label}'"),
                    reference=tuple(
                        (name, Published(m, s, f"Table 2, row '{name}'")) for name, (m, s) in TABLE_2_REFERENCE[task].items()
                    ),
                )
            )
    return tuple(cells)


SVG_TABLE2 = register(
    Experiment(
        name="svg-table2",
        paper=PAPER,
        table="Table 2 (POPLIN locomotion tasks); H and target entropy from Table 4 (left)",
        description="SAC and SAC-SVG(H), H in 1,2,3,4,5,10, on Brax ant, hopper, swimmer, halfcheetah, walker2d (GPU-sized)",
        cells=_table2_cells(),
        budgets={
            # One env per task compiled and a few hundred updates of small networks: minutes on a CPU.
            "smoke": Budget(
                "smoke", total_env_steps=1500, eval_every=1500, eval_episodes=1, seeds=1,
                overrides=(
                    "train.warmup_env_steps=1000", "train.log_every=500", "train.checkpoint_every=1500",
                    "env.episode_length=100", "agent.hidden_sizes=[32,32]", "agent.batch_size=64", "replay.capacity=10000",
                    "log.wandb=disabled",
                ),
            ),
            "small": Budget("small", total_env_steps=50_000, eval_every=10_000, eval_episodes=5, seeds=2),
            # The paper: Table 2's training timesteps, ten trials (we default to 5 seeds).
            "paper": Budget(
                "paper", total_env_steps=200_000, eval_every=10_000, eval_episodes=10, seeds=5,
                task_env_steps=tuple(TABLE_2_STEPS.items()),
            ),
        },
        notes=(
            "Brax's MJX tasks stand in for the gym tasks of POPLIN (observations and reward terms differ), so the "
            "published returns are a reference, not a target. The paper's std is over ten trials; ours over seeds. "
            "Our SAC cell is SVG with horizon 0 and no model, i.e. SAC with SVG's normalisation and entropy schedule, "
            "as the paper's 'SAC (our run)'."
        ),
    )
)

DMC_TASKS = {"cartpole_swingup": 8, "reacher_easy": 4}
DMC_HORIZONS = (0, 1, 2, 3, 5)


def _dmc_overrides(horizon: int) -> tuple:
    # SVG(0) never reads the model: skip its updates (model.seq_len pinned so the config stays valid).
    return (f"agent.horizon={horizon}",) + (("model.updates_per_step=0", "model.seq_len=1") if horizon == 0 else ())


SVG_HORIZONS_DMC = register(
    Experiment(
        name="svg-horizons-dmc",
        paper=PAPER,
        table="the H sweep of Table 2 / Fig. 5, on DM Control at the DMC-100k protocol (no published numbers)",
        description="SAC-SVG(H), H in 0,1,2,3,5, on DM Control cartpole swingup and reacher easy (CPU-sized)",
        cells=tuple(
            Cell(
                method=f"svg-h{h}",
                task=task,
                config=f"configs/svg/{task}.yaml",
                action_repeat=repeat,
                overrides=_dmc_overrides(h),
            )
            for task, repeat in DMC_TASKS.items()
            for h in DMC_HORIZONS
        ),
        budgets={
            "smoke": Budget(
                "smoke", total_env_steps=2000, eval_every=1000, eval_episodes=2, seeds=1,
                overrides=(
                    "train.warmup_env_steps=1000", "train.log_every=1000", "train.checkpoint_every=2000",
                    "agent.hidden_sizes=[32,32]", "agent.batch_size=64", "agent.head_sizes=[32]", "model.encoder_sizes=[32]",
                    "model.gru_size=32", "model.decoder_sizes=[32]", "model.batch_size=32", "replay.capacity=10000",
                    "log.wandb=disabled",
                ),
            ),
            "small": Budget("small", total_env_steps=30_000, eval_every=10_000, eval_episodes=5, seeds=1),
            "paper": Budget("paper", total_env_steps=100_000, eval_every=10_000, eval_episodes=10, seeds=3),
        },
        notes="The paper has no DM Control runs; H = 0 is SAC's actor update through the same code.",
    )
)
