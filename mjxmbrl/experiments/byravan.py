"""Planner amortization experiments of Byravan et al. 2022, "Evaluating model-based planning and planner
amortization for continuous control", arXiv:2110.03363.

The four variants of Sec. 5.2, each an MPO agent (alpha = 1) with or without behaviour cloning of the
executed actions (beta) and with or without the SMC planner acting in the loop (p_plan):

    mpo          alpha = 1, beta = 0,   p_plan = 0    (no planner, no model)
    mpc-mpo      alpha = 1, beta = 0,   p_plan = 0.5  (SMC over the learned per-group MLP model)
    mpo-bc       alpha = 1, beta = 0.1, p_plan = 0
    mpc-mpo-bc   alpha = 1, beta = 0.1, p_plan = 0.5

Agents with a planner log `eval/return` (the actor: the planner in the loop) and `eval/policy_return`
(the amortized policy's mean action, no planning), Fig. 2's solid and dotted lines; agents without a
planner log `eval/return` alone, which is their policy. All three experiments report both metrics.

`byravan-dmc`: the four variants on the CPU tasks, DM Control cartpole swingup (action repeat 8) and
walker walk (2), from configs/byravan/<task>_<variant>.yaml; `--budget small` is the CPU budget
(100k env steps, 2 seeds).

`byravan-dmc-fig20`: App. F.5 / Fig. 20, the four variants on DM Control walker and humanoid stand, walk
and run (3 seeds). A separate experiment because a budget cannot restrict the tasks: the humanoid cells
are GPU-sized and would make every budget of `byravan-dmc` too large for a CPU. The cells use the walker
walk variant files with env.name set per task and action repeat 2 (the paper does not state one).

`byravan-dmc-ablations`: MPC+MPO+BC on walker walk and cartpole swingup, one planner or model setting
changed per cell (the baseline cell with no setting is the same config as `byravan-dmc`'s): always plan
(p_plan = 1), 50 or 1000 SMC particles (default 250), horizon 5 or 20 (default 10), bootstrapping the
planner with the mean Q over 10 policy actions (App. F.2), and a PETS ensemble of 3 members instead of
the per-group MLP model (App. F.4). A separate experiment: 16 more cells in the main table would
triple its default run.

`byravan-transfer`: Sec. 5.3-5.4 and App. F.3 (Fig. 3-4), on the bodies we have offline: MPC+MPO+BC trained
on a source task (`-source` cells: the agent with its task-agnostic proposal), then on a target task of the
same body from scratch, with the source run's model fine-tuned or frozen, with its proposal in the planner's
mixture (annealed from 1 to 0 over M learner updates), or with both. Pairs: the corridor ant walking forward
-> backward and forward -> GTTP (the paper's Ant pairs, on our substitute ant: the per-group MLP's networks
read proprioception only, so a walking model fits a GTTP run), and, standing in for the OP3 pairs that are
not built, cartpole swingup -> swingup sparse (same dynamics, a sparse reward) and walker walk -> walker run. The proposal mixture is the planner's proposal and what the actor samples when it does not plan
(`planner.act_from: proposal`). MPO+BC transfer cells are left out: an agent without a planner has no mixture.

`byravan-table1`: Table 1 on our substitute bodies, the corridor ant and the DM Control humanoid for the OP3
(docs/byravan.md): the zero-mean Gaussian proposal alone, and MPC with the true simulator (the MJX oracle), that
proposal and CEM or SMC, H = 30, no value, the task's known reward, on every task; on the ant walking forward
also the rows with pre-trained parts: a successful agent (`cem-expert`, CEM over the simulator) trains first,
its replay fits the per-group MLP model and its actions the task-agnostic proposal, and the other rows load
them frozen (the proposal alone; CEM or SMC over the simulator or the pre-trained model, with the Gaussian or
the pre-trained proposal). The paper's numbers are beside ours (a different ant and episode length: compare
orderings, not scales).

`byravan-planner-sweep`: App. F.1 (Fig. 7-8), the planner's settings one at a time around a base (the true
simulator, the zero-mean Gaussian proposal, H = 30, S = 2000 rollouts per step, sigma 0.5; SMC at F.1's
temperature, 0.1 for walking (Fig. 8) and 0.01 for GTTP (Fig. 7); CEM with I = 2 iterations of S / I samples,
elite fraction 0.15, sigma_init 0.5) on the ant walking forward and going to target poses: S over F.1's
50 ... 2000, H over 5 ... 25, tau over F.1's three, the Gaussian's sigma 1 and 2, CEM's iterations 1 and 4,
elite fraction 0.3, sigma_init 0.1, 0.25, 1. Budgets scale every S by the same factor (the CPU's `small`: 1/16).

The other experiments' results are curves only in the paper, so their cells have no published number.
"""

from __future__ import annotations

from mjxmbrl.experiments.base import Budget, Cell, Experiment, Published, register

PAPER = "Byravan et al. 2022 (arXiv:2110.03363)"
METRICS = ("eval/return", "eval/policy_return")
VARIANTS = ("mpo", "mpc-mpo", "mpo-bc", "mpc-mpo-bc")
PLANNED = "mpc-*"  # the cells of the variants that plan (and so have a model and a planner section)

CPU_TASKS = {"cartpole_swingup": 8, "walker_walk": 2}  # DMC-100k action repeats (as in configs/byravan)
# Fig. 20's tasks: task -> env name. The paper states no action repeat for its DM Control runs; we use 2 for all.
FIG20_TASKS = {
    "walker_stand": "WalkerStand",
    "walker_walk": "WalkerWalk",
    "walker_run": "WalkerRun",
    "humanoid_stand": "HumanoidStand",
    "humanoid_walk": "HumanoidWalk",
    "humanoid_run": "HumanoidRun",
}
FIG20_ACTION_REPEAT = 2

# setting -> overrides of MPC+MPO+BC (the baseline: S = 250 particles, H = 10, p_plan = 0.5, no value, per-group MLP).
ABLATIONS = {
    "p_plan1": ("planner.p_plan=1.0",),
    "samples50": ("planner.num_particles=50",),
    "samples1000": ("planner.num_particles=1000",),
    "h5": ("planner.horizon=5",),
    "h20": ("planner.horizon=20",),
    "value-q": ("planner.value=q", "planner.value_samples=10"),
    # PETS: single-step Gaussian NLL (seq_len 1), trajectory sampling with a member fixed per particle.
    "ensemble3": ("model.name=ensemble", "model.num_members=3", "model.seq_len=1"),
}


def config_of(task: str, variant: str) -> str:
    return f"configs/byravan/{task}_{variant.replace('-', '_')}.yaml"


# ---- budgets ----------------------------------------------------------------------------

# Compiling each cell's train chunk and evaluators dominates: a handful of updates of tiny networks, one
# short evaluation at the end of warmup and one at the end.
SMOKE_OVERRIDES = (
    "train.warmup_env_steps=800", "train.log_every=800", "train.checkpoint_every=1600",
    "agent.policy_hidden_sizes=[32,32]", "agent.critic_hidden_sizes=[32,32]", "agent.batch_size=8",
    "replay.capacity=10000", "log.wandb=disabled",
)
SMOKE_PLANNED = ("planner.num_particles=16", "planner.horizon=3", "model.hidden_sizes=[32]", "model.batch_size=8")
PAPER_PLANNED = ("model.batch_size=256",)


def _budgets(all_planned: bool) -> dict:
    """smoke, small and paper; the model and planner overrides go to every cell (all_planned) or the MPC cells only."""

    def split(common: tuple, planned: tuple) -> dict:
        if all_planned:
            return {"overrides": common + planned}
        return {"overrides": common, "cell_overrides": ((PLANNED, planned),)}

    return {
        "smoke": Budget("smoke", total_env_steps=1600, eval_every=800, eval_episodes=1, seeds=1, **split(SMOKE_OVERRIDES, SMOKE_PLANNED)),
        # The CPU budget of the issue: 100k env steps, 2 seeds, eval every 10k over 10 episodes.
        "small": Budget("small", total_env_steps=100_000, eval_every=10_000, eval_episodes=10, seeds=2, overrides=("log.wandb=disabled",)),
        # The paper's batch of B = 256 windows (App. E) for policy, critic and model; 1M env steps, 3 seeds (F.5).
        "paper": Budget(
            "paper", total_env_steps=1_000_000, eval_every=20_000, eval_episodes=10, seeds=3,
            **split(("agent.batch_size=256",), PAPER_PLANNED),
        ),
    }


NOTES_COMMON = (
    "Two metrics per cell: ours is `eval/return`, the actor (the SMC planner in the loop for the MPC variants, "
    "the policy's mean action otherwise); 'policy alone' is `eval/policy_return`, the amortized policy's mean action "
    "without planning (Fig. 2's solid and dotted lines). The paper reports these runs as learning curves only, so "
    "there is no published number to compare with. The configs take max(1, action_repeat / 2) updates per agent "
    "step with one actor (cartpole 4, walker 1; the paper: 64 actors, 8 actor steps per update); budgets change only env steps, eval cadence, seeds and "
    "batch sizes (paper: B = 256 for policy, critic and model)."
)

# ---- byravan-dmc ------------------------------------------------------------------------

BYRAVAN_DMC = register(
    Experiment(
        name="byravan-dmc",
        paper=PAPER,
        table="Sec. 5.2's four variants (MPO, MPC+MPO, MPO+BC, MPC+MPO+BC) as in Fig. 2 / Fig. 20 (curves only, no published numbers)",
        description=(
            "MPO, MPC+MPO, MPO+BC and MPC+MPO+BC on DM Control cartpole swingup (action repeat 8) and walker walk (2), "
            "CPU-sized (`--budget small`: 100k env steps, 2 seeds); Fig. 20's walker and humanoid tasks are "
            "`byravan-dmc-fig20`, the planner ablations `byravan-dmc-ablations`"
        ),
        cells=tuple(
            Cell(method=variant, task=task, config=config_of(task, variant), action_repeat=repeat)
            for task, repeat in CPU_TASKS.items()
            for variant in VARIANTS
        ),
        budgets=_budgets(all_planned=False),
        notes=NOTES_COMMON,
        metrics=METRICS,
    )
)

# ---- byravan-dmc-fig20 --------------------------------------------------------------------

BYRAVAN_DMC_FIG20 = register(
    Experiment(
        name="byravan-dmc-fig20",
        paper=PAPER,
        table="App. F.5, Fig. 20 (DM Control walker and humanoid stand, walk, run; curves only, no published numbers)",
        description=(
            "MPO, MPC+MPO, MPO+BC and MPC+MPO+BC on DM Control walker and humanoid stand, walk and run, "
            "action repeat 2 (GPU-sized: 1M env steps, 3 seeds at `--budget paper`)"
        ),
        cells=tuple(
            Cell(
                method=variant,
                task=task,
                config=config_of("walker_walk", variant),
                action_repeat=FIG20_ACTION_REPEAT,
                overrides=(f"env.name={env_name}", f"env.action_repeat={FIG20_ACTION_REPEAT}"),
            )
            for task, env_name in FIG20_TASKS.items()
            for variant in VARIANTS
        ),
        budgets=_budgets(all_planned=False),
        notes=(
            NOTES_COMMON + " Every cell is the walker walk config of its variant with env.name set to the task. The paper "
            "does not state the action repeat of its DM Control runs: we use 2 for walker and humanoid alike."
        ),
        metrics=METRICS,
    )
)

# ---- byravan-dmc-ablations ------------------------------------------------------------------

ABLATION_TASKS = ("walker_walk", "cartpole_swingup")

BYRAVAN_DMC_ABLATIONS = register(
    Experiment(
        name="byravan-dmc-ablations",
        paper=PAPER,
        table="planner ablations of MPC+MPO+BC: p_plan, samples, horizon (Sec. 5), Q bootstrap (App. F.2), PETS ensemble (App. F.4)",
        description=(
            "MPC+MPO+BC on DM Control walker walk (action repeat 2) and cartpole swingup (8) with one setting changed: "
            "p_plan = 1, 50 or 1000 particles, horizon 5 or 20, Q bootstrap, a 3-member PETS ensemble (CPU-sized); "
            "and MPC+MPO with the Q bootstrap, for the amortization comparison"
        ),
        cells=tuple(
            Cell(
                method="mpc-mpo-bc",
                task=task,
                config=config_of(task, "mpc-mpo-bc"),
                action_repeat=CPU_TASKS[task],
                overrides=overrides,
                setting=setting,
            )
            for task in ABLATION_TASKS
            for setting, overrides in (("", ()),) + tuple(ABLATIONS.items())
        ) + tuple(
            # Sec. 5.2's amortization comparison where the planner is at least as good as its policy: MPC+MPO
            # with the same Q bootstrap, beside MPC+MPO+BC's value-q cell
            Cell(method="mpc-mpo", task=task, config=config_of(task, "mpc-mpo"), action_repeat=CPU_TASKS[task],
                 overrides=ABLATIONS["value-q"], setting="value-q")
            for task in ABLATION_TASKS
        ),
        budgets=_budgets(all_planned=True),
        notes=(
            NOTES_COMMON + " The cell without a setting is the baseline (S = 250 particles, H = 10, p_plan = 0.5, no value "
            "bootstrap, the per-group MLP model). value-q bootstraps the planner's returns with the mean Q over 10 policy "
            "actions (App. F.2); ensemble3 replaces the model with a PETS ensemble of 3 members (single-step NLL, "
            "trajectory sampling, App. F.4). mpc-mpo-*-value-q is MPC+MPO (no BC term) with the same Q bootstrap: Sec. 5.2 "
            "finds the policy of MPC+MPO+BC close to its actor and that of MPC+MPO further below, a comparison that "
            "needs a planner at least as good as the policy (without a value, H = 10 is myopic on cartpole). "
            "A cell's own setting wins over the budget's overrides, so at `--budget smoke` "
            "samples50/samples1000/h5/h20 keep their particle count or horizon."
        ),
        metrics=METRICS,
    )
)

# ---- byravan-transfer ------------------------------------------------------------------------

# (source task, target task, its env name, action repeat, M: learner updates over which the transferred
# proposal's mixture weight falls from 1 to 0, about a quarter of the target run's updates at the small budget)
TRANSFER_PAIRS = (
    ("cartpole_swingup", "cartpole_swingup_sparse", "CartpoleSwingupSparse", 8, 3000),
    ("walker_walk", "walker_run", "WalkerRun", 2, 12000),
    # The paper's simple body: the corridor ant walking forward -> backward (App. F.3 anneals over M = 5000-40000
    # updates for its ant walking targets; 8 envs, 8 actor steps per update: 12,500 updates at 100k env steps),
    # and forward walking -> GTTP (Fig. 3, centre: the model; the proposal too), whose target runs its own
    # config (16 envs, 16 actor steps per update: 6,250 updates at 100k env steps).
    ("ant_walk_forward", "ant_walk_backward", "AntWalkBackward", 1, 3000),
    ("ant_walk_forward", "ant_gttp", "AntGTTP", 1, 1500),
)
TARGET_CONFIGS = {"ant_gttp": config_of("ant_gttp", "mpc-mpo-bc")}  # targets with a config of their own
PROPOSAL_MIXTURE = (
    "agent.agnostic_proposal=true", "planner.proposal=mixture", "planner.mixture_components=[agnostic,policy]",
    "planner.mixture_start=1.0", "planner.mixture_end=0.0", "planner.act_from=proposal",
)
# setting -> the transfer overrides of a target cell (the proposal settings add the mixture and M).
TRANSFER_SETTINGS = {
    "scratch": (),
    "model-finetune": ("transfer.model=finetune",),
    "model-frozen": ("transfer.model=frozen",),
    "proposal": ("transfer.proposal=frozen",),
    "both-finetune": ("transfer.model=finetune", "transfer.proposal=frozen"),
}


def _transfer_cells():
    cells, sources = [], {}
    for source_task, target_task, env_name, repeat, steps in TRANSFER_PAIRS:
        if source_task not in sources:
            sources[source_task] = Cell(
                method="mpc-mpo-bc", task=source_task, config=config_of(source_task, "mpc-mpo-bc"), action_repeat=repeat,
                overrides=("agent.agnostic_proposal=true",), setting="source",
            )
            cells.append(sources[source_task])
        source = sources[source_task]
        config = TARGET_CONFIGS.get(target_task, config_of(source_task, "mpc-mpo-bc"))
        for setting, transfer in TRANSFER_SETTINGS.items():
            proposal = ("transfer.proposal=frozen" in transfer)
            overrides = (f"env.name={env_name}",) + (
                PROPOSAL_MIXTURE + (f"planner.mixture_learner_steps={steps}",) if proposal else ()
            ) + transfer
            cells.append(Cell(
                method="mpc-mpo-bc", task=target_task, config=config, action_repeat=repeat, overrides=overrides,
                setting=setting, source=source.id if transfer else None,
            ))
    return tuple(cells)


BYRAVAN_TRANSFER = register(
    Experiment(
        name="byravan-transfer",
        paper=PAPER,
        table="Sec. 5.3-5.4, Fig. 3-4 and App. F.3: model and proposal transfer (curves only, no published numbers)",
        description=(
            "MPC+MPO+BC on a target task from scratch against the source run's model (fine-tuned or frozen), its "
            "task-agnostic proposal (annealed mixture) or both: cartpole swingup -> swingup sparse, walker walk -> run, "
            "the corridor ant walking forward -> backward"
        ),
        cells=_transfer_cells(),
        budgets=_budgets(all_planned=True),
        notes=(
            NOTES_COMMON + " The `source` cells train the source task (their runs are what the other cells load, same "
            "seed). A target cell's setting: scratch; model-finetune / model-frozen (the source's per-group MLP model, "
            "updated or not); proposal (the source's task-agnostic proposal, frozen, in the planner's mixture with "
            "the policy, weight 1 -> 0 over M learner updates, which the actor also samples when it does not plan); both-finetune (model fine-tuned and proposal). "
            "The ant's pair is the paper's walking pair on our substitute ant (docs/byravan.md); the cartpole and walker "
            "pairs stand in for its GTTP and OP3 pairs: same body, another reward."
        ),
        metrics=METRICS,
    )
)

# ---- byravan-table1 ----------------------------------------------------------------------------

TABLE1_TASKS = {"ant_walk_forward": "AntWalkForward", "ant_walk_backward": "AntWalkBackward", "ant_gttp": "AntGTTP",
                "humanoid_walk_forward": "HumanoidWalkForward", "humanoid_walk_backward": "HumanoidWalkBackward",
                "humanoid_gttp": "HumanoidGTTP"}
# task -> (Table 1's body, its column); the DM Control humanoid stands in for the OP3 (envs/byravan_humanoid.py).
TABLE1_COLUMNS = {"ant_walk_forward": ("Ant", "forward"), "ant_walk_backward": ("Ant", "backward"), "ant_gttp": ("Ant", "GTTP"),
                  "humanoid_walk_forward": ("OP3", "forward"), "humanoid_walk_backward": ("OP3", "backward"),
                  "humanoid_gttp": ("OP3", "GTTP")}
TABLE1_CONFIGS = {"Ant": "configs/plan/ant_walk_forward_{}.yaml", "OP3": "configs/plan/humanoid_walk_forward_{}.yaml"}
# method -> (planner, overrides, Table 1's row, the mean and +- as printed over 100 episodes for the Ant's forward,
# backward, GTTP, then the OP3's forward, backward, GTTP columns)
TABLE1_ROWS = {
    # the proposal alone: one sample of N(0, 0.5^2) per step, executed (SMC with one particle and H = 1)
    "gaussian": ("smc", ("planner.num_particles=1", "planner.horizon=1"), "'-, -, Gaussian'",
                 ((0.0, 1.0), (0.0, 1.0), (197.0, 2.0), (5.0, 1.0), (-14.0, 1.0), (9.0, 1.0))),
    "mpc-cem": ("cem", (), "'ground truth, CEM, Gaussian'",
                ((780.0, 4.0), (771.0, 4.0), (400.0, 2.0), (13.0, 1.0), (11.0, 1.0), (10.0, 1.0))),
    "mpc-smc": ("smc", (), "'ground truth, SMC, Gaussian'",
                ((717.0, 4.0), (715.0, 4.0), (378.0, 7.0), (12.0, 1.0), (10.0, 1.0), (11.0, 1.0))),
}
# Rollouts per control step: SMC particles; CEM samples per iteration (3 iterations of about a third of
# SMC's rollouts; at least 10, for one elite at the 0.1 elite fraction).
TABLE1_SIZES = {"smoke": (8, 10), "small": (64, 21), "paper": (2000, 667)}


# Table 1's rows with pre-trained parts, on the ant walking forward: the model and the task-agnostic proposal of
# one "successful agent" (the `cem-expert` source cell: CEM over the simulator, its data fitting the per-group MLP
# and cloned by the proposal), loaded frozen into an agent that only plans (no update before its evaluation).
# method -> (planner, pre-trained model, pre-trained proposal, Table 1's row, the Ant forward column's mean and +-)
TABLE1_EXPERT = ("cem-expert", "configs/byravan/ant_walk_forward_cem_expert.yaml", 1580.0)  # "Near-Optimal: ~1580"
TABLE1_PRETRAINED = {
    "pre-proposal": ("smc", False, True, "'-, -, pre-trained'", (615.0, 7.0)),
    "mpc-cem-pre-proposal": ("cem", False, True, "'ground truth, CEM, pre-trained'", (1291.0, 33.0)),
    "mpc-smc-pre-proposal": ("smc", False, True, "'ground truth, SMC, pre-trained'", (1064.0, 27.0)),
    "pre-model-cem": ("cem", True, False, "'pre-trained, CEM, Gaussian'", (280.0, 8.0)),
    "pre-model-smc": ("smc", True, False, "'pre-trained, SMC, Gaussian'", (231.0, 7.0)),
    "pre-model-cem-pre-proposal": ("cem", True, True, "'pre-trained, CEM, pre-trained'", (1222.0, 41.0)),
    "pre-model-smc-pre-proposal": ("smc", True, True, "'pre-trained, SMC, pre-trained'", (1177.0, 40.0)),
}
# The expert's training per budget (the one-evaluation budget's settings undone for it); the paper budget's is a
# plan for a GPU: 100k env steps of 1000-step episodes with S = 2000 (3 x 667).
TABLE1_EXPERT_RUN = {
    "smoke": ("train.total_env_steps=40", "train.warmup_env_steps=20", "train.log_every=40", "train.checkpoint_every=40",
              "planner.num_samples=10", "planner.horizon=4", "model.updates_per_step=1"),
    "small": ("train.total_env_steps=6000", "train.warmup_env_steps=400", "train.log_every=400", "train.eval_every=6000",
              "train.eval_episodes=2", "train.checkpoint_every=2000"),
    "paper": ("train.total_env_steps=100000", "train.warmup_env_steps=4000", "train.log_every=4000",
              "train.eval_every=100000", "train.eval_episodes=10", "train.checkpoint_every=20000", "planner.num_samples=667"),
}


def _table1_cells():
    cells = []
    for method, (planner, overrides, row, published) in TABLE1_ROWS.items():
        for (task, env_name), (mean, spread) in zip(TABLE1_TASKS.items(), published):
            body, column = TABLE1_COLUMNS[task]
            cells.append(Cell(
                method=method, task=task, config=TABLE1_CONFIGS[body].format(planner), action_repeat=1,
                overrides=(f"env.name={env_name}",) + overrides, setting="ground-truth",
                published=Published(mean, spread, f"Table 1, {body} {column}, row {row}"),
            ))
    method, config, near_optimal = TABLE1_EXPERT
    expert = Cell(method=method, task="ant_walk_forward", config=config, action_repeat=1, setting="source",
                  published=Published(near_optimal, None, "Table 1, Ant forward, row 'Near-Optimal performance' (approximate)"))
    cells.append(expert)
    for method, (planner, model, proposal, row, (mean, spread)) in TABLE1_PRETRAINED.items():
        overrides = ("agent.name=mpo",)
        if proposal:
            overrides += ("agent.agnostic_proposal=true", "transfer.proposal=frozen", "planner.proposal=agnostic")
        if model:
            overrides += ("model.name=mlp", "transfer.model=frozen")
        if method == "pre-proposal":  # the proposal alone: one sample per step, executed
            overrides += ("planner.num_particles=1", "planner.horizon=1")
        cells.append(Cell(
            method=method, task="ant_walk_forward", config=TABLE1_CONFIGS["Ant"].format(planner), action_repeat=1,
            overrides=overrides, setting="pre-trained", source=expert.id,
            published=Published(mean, spread, f"Table 1, Ant forward, row {row}"),
        ))
    return tuple(cells)


def _one_evaluation_budget(name: str, episode_length: int, episodes: int, cell_overrides: tuple) -> Budget:
    """One evaluation of `episodes` episodes of `episode_length` steps; the run before it acts at random (no planning)."""
    return Budget(
        name, total_env_steps=episode_length, eval_every=episode_length, eval_episodes=episodes, seeds=1,
        overrides=(f"env.episode_length={episode_length}", "train.warmup_env_steps=1000000000",
                   f"train.log_every={episode_length}", "log.wandb=disabled"),
        cell_overrides=cell_overrides,
    )


def _table1_budget(name: str, episode_length: int, episodes: int) -> Budget:
    smc, cem = TABLE1_SIZES[name]
    return _one_evaluation_budget(name, episode_length, episodes, (
        ("mpc-smc-*", (f"planner.num_particles={smc}",)), ("mpc-cem-*", (f"planner.num_samples={cem}",)),
        ("pre-model-smc-*", (f"planner.num_particles={smc}",)), ("pre-model-cem-*", (f"planner.num_samples={cem}",)),
        (f"{TABLE1_EXPERT[0]}-*", TABLE1_EXPERT_RUN[name])))


BYRAVAN_TABLE1 = register(
    Experiment(
        name="byravan-table1",
        paper=PAPER,
        table="Table 1: MPC with the true simulator or a pre-trained model, a Gaussian or a pre-trained proposal, CEM or SMC, "
              "H = 30 (Ant and OP3 columns; pre-trained rows on the Ant forward)",
        description=(
            "the ant and the high-DoF body (the DM Control humanoid for the OP3) walking forward and backward and going "
            "to target poses (GTTP): the Gaussian proposal alone, and MPC over the MJX oracle with CEM or SMC, H = 30, "
            "no value, the task's own reward; on the ant walking forward also a CEM expert and the rows that plan with "
            "its pre-trained model and/or proposal"
        ),
        cells=_table1_cells(),
        budgets={
            "smoke": _table1_budget("smoke", 10, 1),
            # The CPU budget: 64 rollouts per step, 4 episodes of 200 steps (docs/results/byravan-table1-ground-truth-small).
            "small": _table1_budget("small", 200, 4),
            # The paper's 2000 samples, 100 episodes of 1000 steps: a GPU (512+ parallel ant simulations hang on our CPU).
            "paper": _table1_budget("paper", 1000, 100),
        },
        notes=(
            "Our ant is the Gym/Brax body in a corridor (DM Control's locomotion ant, the paper's, is not installed), "
            "with 1000-step episodes (the paper does not state its episode length) and gear-150 motors that let a "
            "planner with the true simulator find leaping gaits: the paper's numbers are a reference for the ordering of "
            "the rows, not for their scale. The paper's +- is over 100 episodes. Ours is `eval/return` of an agent that only plans "
            "(`mjxmbrl train` evaluates it as `mjxmbrl plan` would); the training steps before it act at random. CEM "
            "runs 3 iterations of a third of SMC's rollouts. GTTP's targets are poses of our CEM-MPC walkers, not of "
            "policies trained on DM Control's go-to-target task (docs/byravan.md). The OP3 columns run on the DM "
            "Control humanoid (21 DoF, control step 0.025 s, episodes end on a fall as the OP3's), its target poses from our "
            "CEM-MPC humanoid walkers, not from CMU motion capture. The pre-trained rows (Ant forward only) load the "
            "frozen per-group MLP model and task-agnostic proposal of the `cem-expert` cell's run of the same seed: our "
            "successful agent is CEM-MPC over the simulator (3 x 21 samples at the CPU budget), whose replay fits the "
            "model and whose actions the proposal clones, for 6000 env steps at the CPU budget (the paper's agent and "
            "data size are not stated); its eval return stands beside the paper's near-optimal performance."
        ),
        metrics=("eval/return",),
    )
)


# ---- byravan-planner-sweep: App. F.1, Fig. 7-8 ------------------------------------------------------------------
SWEEP_TASKS = {"ant_walk_forward": ("AntWalkForward", 0.1), "ant_gttp": ("AntGTTP", 0.01)}  # task -> (env, SMC tau)
SWEEP_SAMPLES = (50, 100, 200, 500, 1000, 2000)  # F.1's S; the base is the largest (Table 1's)
SWEEP_HORIZONS = (5, 10, 15, 20, 25)  # F.1's H, besides the base's 30
SWEEP_TEMPERATURES = (0.001, 0.01, 0.1)
SWEEP_SIGMAS = (1.0, 2.0)  # the Gaussian proposal's std, besides the base's 0.5
CEM_ITERATIONS = (1, 4)  # besides the base's 2
CEM_ELITES = (0.3,)  # besides the base's 0.15
CEM_SIGMAS = (0.1, 0.25, 1.0)  # sigma_init, besides the base's 0.5
SWEEP_SCALES = {"smoke": 1 / 250, "small": 1 / 16, "paper": 1.0}  # the budget's S / the paper's S


def _sweep_cells():
    """(cells, {cell id: (the paper's rollouts per step S, CEM iterations I or 0 for SMC)}): a budget sets S x scale."""
    smc_config, cem_config = "configs/plan/ant_gttp_smc.yaml", "configs/plan/ant_gttp_cem.yaml"
    cells, rollouts = [], {}

    def add(method, task, config, overrides, samples, iterations):
        env_name, _ = SWEEP_TASKS[task]
        cell = Cell(method=method, task=task, config=config, action_repeat=1,
                    overrides=(f"env.name={env_name}", "planner.horizon=30", "planner.proposal_sigma=0.5"
                               if config == smc_config else "planner.sigma_init=0.5", *overrides),
                    setting="ground-truth")
        rollouts[cell.id] = (samples, iterations)
        cells.append(cell)

    for task, (_, tau) in SWEEP_TASKS.items():
        smc = (f"planner.temperature={tau}",)
        for samples in SWEEP_SAMPLES:
            add(f"smc-S{samples}", task, smc_config, smc, samples, 0)
        for horizon in SWEEP_HORIZONS:
            add(f"smc-H{horizon}", task, smc_config, smc + (f"planner.horizon={horizon}",), 2000, 0)
        for temperature in SWEEP_TEMPERATURES:
            if temperature != tau:
                add(f"smc-tau{temperature:g}", task, smc_config, (f"planner.temperature={temperature}",), 2000, 0)
        for sigma in SWEEP_SIGMAS:
            add(f"smc-sigma{sigma:g}", task, smc_config, smc + (f"planner.proposal_sigma={sigma}",), 2000, 0)
        cem = ("planner.elite_fraction=0.15",)
        add("cem-I2", task, cem_config, cem + ("planner.iterations=2",), 2000, 2)
        for iterations in CEM_ITERATIONS:
            add(f"cem-I{iterations}", task, cem_config, cem + (f"planner.iterations={iterations}",), 2000, iterations)
        for elite in CEM_ELITES:
            add(f"cem-E{elite:g}", task, cem_config, ("planner.iterations=2", f"planner.elite_fraction={elite}"), 2000, 2)
        for sigma in CEM_SIGMAS:
            add(f"cem-sigma{sigma:g}", task, cem_config, cem + ("planner.iterations=2", f"planner.sigma_init={sigma}"),
                2000, 2)
    return tuple(cells), rollouts


def _sweep_budget(name: str, episode_length: int, episodes: int) -> Budget:
    """Table 1's protocol (one evaluation after random steps) with every cell's S scaled by SWEEP_SCALES[name].

    SMC runs max(1, round(S x scale)) particles; CEM I iterations of round(S x scale / I) samples, at least
    enough for 2 elites at elite fraction 0.15 (14).
    """
    scale = SWEEP_SCALES[name]
    per_cell = []
    for cell_id, (samples, iterations) in SWEEP_ROLLOUTS.items():
        scaled = samples * scale
        if iterations:
            per_cell.append((cell_id, (f"planner.num_samples={max(14, round(scaled / iterations))}",)))
        else:
            per_cell.append((cell_id, (f"planner.num_particles={max(1, round(scaled))}",)))
    return _one_evaluation_budget(name, episode_length, episodes, tuple(per_cell))


_SWEEP_CELLS, SWEEP_ROLLOUTS = _sweep_cells()
BYRAVAN_PLANNER_SWEEP = register(
    Experiment(
        name="byravan-planner-sweep",
        paper=PAPER,
        table="App. F.1, Fig. 7-8: SMC and CEM with the true simulator and a Gaussian proposal, one setting at a time",
        description=(
            "the ant walking forward and going to target poses: SMC over S, H, tau and the Gaussian's sigma, CEM over "
            "iterations, elite fraction and sigma_init, around H = 30, S = 2000 (scaled per budget)"
        ),
        cells=_SWEEP_CELLS,
        budgets={
            "smoke": _sweep_budget("smoke", 10, 1),
            # The CPU budget: S / 16 (at most 125 rollouts per step), 2 episodes of 200 steps: at most 250 parallel
            # ant simulations (512 or more hang on our CPU, docs/byravan.md).
            "small": _sweep_budget("small", 200, 2),
            "paper": _sweep_budget("paper", 1000, 100),
        },
        notes=(
            "Fig. 7-8 plot return against S for SMC (tau 0.01 on GTTP, 0.1 on walking) with a Gaussian or a pre-trained "
            "proposal; the pre-trained proposal's curves need a trained ant agent and are not cells. F.1 swept the other "
            "settings for Table 1 without plotting them. Method names carry the paper's S; a budget scales it (`small`: "
            "1/16, `smoke`: 1/250). CEM spends S rollouts per step over its iterations (I x S / I), as in byravan-table1. "
            "Our ant and reference poses are substitutes (docs/byravan.md): compare trends, not scales."
        ),
        metrics=("eval/return",),
    )
)
