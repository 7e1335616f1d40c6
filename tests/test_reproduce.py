"""`mjxmbrl reproduce`: the experiment registry, bad input, the results table math, and one tiny end-to-end run."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from mjxmbrl.cli.reproduce import (
    CellResult,
    PlannedRun,
    collect_results,
    merge_earlier,
    order_runs,
    plan_runs,
    reference_rows,
    reproduce,
    results_markdown,
    run_status,
)
from mjxmbrl.config import config_to_dict, load_config, read_yaml, save_config
from mjxmbrl.experiments import (
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
from mjxmbrl.run.logging import MetricsWriter

ROOT = Path(__file__).resolve().parents[1]
T_975_DOF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # Student-t 0.975 quantile, 2 dof: (2p - 1) / sqrt(2p(1 - p)) = 4.3027


def cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "mjxmbrl.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_dmc100k_sac_registry(tmp_path):
    e = get_experiment("dmc100k-sac")
    assert e.paper == "S V et al. 2023 (arXiv:2312.17227)" and "Table 1" in e.table and "Table 4" in e.table
    # Table 4 action repeats; Table 1 "SAC Pixels" column (mean, std)
    expected = {
        "cartpole_swingup": (8, 419, 40),
        "reacher_easy": (4, 145, 130),
        "finger_spin": (2, 166, 128),
        "walker_walk": (2, 42, 12),
        "cheetah_run": (4, 103, 38),
    }
    assert [c.task for c in e.cells] == list(expected) and e.methods == ("sac",)
    for cell in e.cells:
        repeat, mean, std = expected[cell.task]
        assert cell.action_repeat == repeat
        assert (cell.published.mean, cell.published.std) == (mean, std) and "SAC Pixels" in cell.published.source
        assert [name for name, _ in cell.reference] == ["CURL", "PlaNet", "Dreamer", "Grad-MPC"]
        # the cell sets the paper's action repeat, whatever our SAC default (finger spin's is 1, cheetah run's 2),
        # and the update rate tied to it: one update per two control steps, at least one per agent step
        assert f"env.action_repeat={repeat}" in cell.overrides, cell.id
        assert "train.updates_per_step=auto" in cell.overrides, cell.id
    # ... which the config resolves: cheetah run's config has action repeat 2 (1 update), the cell 4 (2 updates)
    planned = {r.cfg.env.name: r.cfg for r in plan_runs(e, e.budgets["smoke"], 1, tmp_path)}
    assert len(planned) == len(expected)
    assert all(c.train.updates_per_step == max(1, c.env.action_repeat // 2) for c in planned.values())
    assert planned["CheetahRun"].train.updates_per_step == 2 and planned["FingerSpin"].train.updates_per_step == 1
    grad_mpc = dict(e.cell("sac-reacher_easy").reference)["Grad-MPC"]
    assert (grad_mpc.mean, grad_mpc.std) == (663, 25)
    assert list(e.budgets) == ["smoke", "small", "paper"]
    paper = e.budgets["paper"]
    assert (paper.total_env_steps, paper.eval_episodes, paper.seeds) == (100000, 10, 3)
    assert e.budgets["smoke"].seeds == 1 and e.budgets["smoke"].total_env_steps < e.budgets["small"].total_env_steps < 100000


def test_sac_states_registry_targets_the_better_public_figure(tmp_path):
    e = get_experiment("sac-states")
    # task: (action repeat, TD-MPC2's SAC, SimbaV2's SAC) at 100k env steps
    expected = {
        "cartpole_swingup": (8, 835, 861), "reacher_easy": (4, 540, 931), "finger_spin": (1, 762, 475),
        "walker_walk": (2, 708, 449), "cheetah_run": (2, 310, 178), "ball_in_cup_catch": (4, 958, 972),
    }
    assert [c.task for c in e.cells] == list(expected) and e.methods == ("sac",)
    for cell in e.cells:
        repeat, tdmpc2, simba = expected[cell.task]
        assert cell.action_repeat == repeat and read_yaml(cell.config_path)["env"]["action_repeat"] == repeat
        assert cell.published.mean == max(tdmpc2, simba)
        assert [(name, p.mean) for name, p in cell.reference] == [("TD-MPC2 SAC", tdmpc2), ("SimbaV2 SAC", simba)]
    planned = plan_runs(e, e.budgets["paper"], 3, tmp_path)
    assert len(planned) == 18
    # One set of agent settings for every task: the configs differ in the env section (and the warm-up) only.
    agents = {json.dumps(dataclasses.asdict(r.cfg.agent), sort_keys=True) for r in planned}
    assert len(agents) == 1 and planned[0].cfg.agent.critic_layer_norm and planned[0].cfg.agent.n_step == 1
    # The update rate follows the action repeat: max(1, repeat / 2) updates per agent step (docs/sac.md).
    assert all(r.cfg.train.updates_per_step == max(1, r.cfg.env.action_repeat // 2) for r in planned)


def test_plan_runs_builds_every_config_and_checks_action_repeats(tmp_path):
    e = get_experiment("dmc100k-sac")
    planned = plan_runs(e, e.budgets["smoke"], 2, tmp_path)
    assert len(planned) == 10 and not any(tmp_path.iterdir())
    first = planned[0]
    assert first.run_dir == tmp_path / "runs" / "sac-cartpole_swingup-s0" and planned[1].cfg.train.seed == 1
    assert first.cfg.train.total_env_steps == 2000 and first.cfg.agent.hidden_sizes == (64, 64)
    assert [p.cfg.env.action_repeat for p in planned[::2]] == [8, 4, 2, 2, 4]
    together = plan_runs(e, e.budgets["smoke"], 3, tmp_path, vmap_seeds=True)
    assert len(together) == 5 and together[0].run_dir.name == "sac-cartpole_swingup-s0-2"
    assert together[0].cfg.train.num_seeds == 3 and together[0].cfg.train.seed == 0 and together[0].label == "seeds 0-2"
    drifted = Experiment(
        "drift", "p", "t", "d",
        (Cell("sac", "cartpole_swingup", "configs/sac/cartpole_swingup.yaml", 8, overrides=("env.action_repeat=4",)),),
        {"smoke": e.budgets["smoke"]},
    )
    with pytest.raises(ExperimentError, match="env.action_repeat=4, but the paper uses 8"):
        plan_runs(drifted, drifted.budgets["smoke"], 1, tmp_path)


def test_user_overrides_reach_every_run_after_the_budget_and_cell(tmp_path):
    e = get_experiment("dmc100k-sac")
    user = ("agent.hidden_sizes=[32,32]", "train.eval_episodes=3")
    planned = plan_runs(e, e.budgets["smoke"], 2, tmp_path, overrides=user)
    assert len(planned) == 10 and not any(tmp_path.iterdir())
    # the smoke budget sets hidden_sizes [64, 64]: the user's comes after and wins
    assert all(r.cfg.agent.hidden_sizes == (32, 32) and r.cfg.train.eval_episodes == 3 for r in planned)
    # the budget's other settings, the seeds and the run layout stay reproduce's
    assert all(r.cfg.train.total_env_steps == 2000 and r.cfg.agent.batch_size == 64 for r in planned)
    assert planned[1].cfg.train.seed == 1 and planned[1].run_dir == tmp_path / "runs" / "sac-cartpole_swingup-s1"
    with pytest.raises(ExperimentError, match="env.action_repeat=2, but the paper uses 8"):
        plan_runs(e, e.budgets["smoke"], 1, tmp_path, overrides=("env.action_repeat=2",))


@pytest.mark.parametrize(
    "args, message",
    [
        (["reproduce", "dmc100k"], "unknown experiment 'dmc100k' (valid: byravan-dmc, byravan-dmc-ablations, byravan-dmc-fig20, byravan-planner-sweep, byravan-table1, byravan-transfer, dmc100k-sac,"),
        (["reproduce", "dmc100k-sac", "--budget", "huge"], "unknown budget 'huge' (valid: smoke, small, paper)"),
        (["reproduce", "dmc100k-sac", "--seeds", "0"], "--seeds must be a whole number >= 1, got 0"),
        (["reproduce", "dmc100k-sac", "--jobs", "0"], "--jobs must be a whole number >= 1, got 0"),
        (["reproduce", "dmc100k-sac", "--cells", "sac-*,svg-*"], "--cells 'svg-*' matches no cell of experiment 'dmc100k-sac' (cells: sac-cartpole_swingup,"),
        (["reproduce", "dmc100k-sac", "--order", "random"], "unknown --order 'random' (valid: cell, seed, task)"),
        (["reproduce", "dmc100k-sac", "train.seed=3"], "override 'train.seed=3': reproduce sets train.seed for each run itself (use --seeds)"),
        (["reproduce", "dmc100k-sac", "--budget", "small", "log.run_name=x"], "override 'log.run_name=x': reproduce sets log.run_name for each run itself (use --out)"),
        (["reproduce", "dmc100k-sac", "agent.no_such_key=1"], "unknown config key 'agent.no_such_key'"),
    ],
)
def test_bad_reproduce_input_is_one_clear_error(tmp_path, args, message):
    out = tmp_path / "out"
    proc = cli(*args, "--out", out)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists(), "nothing may run or be written"


def test_list_experiments():
    proc = cli("list", "experiments")
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("dmc100k-sac"))
    assert "S V et al. 2023 (arXiv:2312.17227)" in line and " 5 " in line
    assert "smoke 2000x1" in line and "paper 100000x3" in line


def _write_run(run_dir: Path, seed: int, evals, seed_field=False, extra_seeds=()):
    run_dir.mkdir(parents=True)
    save_config(load_config(ROOT / "configs" / "debug.yaml", [f"train.seed={seed}"]), run_dir / "config.yaml")
    with MetricsWriter(run_dir / "metrics.jsonl") as w:
        for s, points in [(seed, evals)] + list(extra_seeds):
            for steps, value in points:
                w.write({"env_steps": steps, "train/loss": 0.1, **({"seed": s} if seed_field else {})})
                w.write({"env_steps": steps, "eval/return": value, **({"seed": s} if seed_field else {})})
    return run_dir


TABLE_EXPERIMENT = Experiment(
    "table-test", "paper.txt", "Table 9", "hand-made runs",
    (
        Cell("sac", "toy_reach", "configs/debug.yaml", 1, published=Published(150.0, 20.0, "Table 9, column 'SAC'"),
             reference=(("Other", Published(90.0, None, "Table 9, column 'Other'")),)),
        Cell("sac", "toy_reach", "configs/debug.yaml", 1, setting="one seed"),
    ),
    {"smoke": Budget("smoke", 300, 100, 1, 3)},
)


def test_results_table_math(tmp_path):
    # separate runs: finals 100, 200, 300 (the last eval row, not the best) -> mean 200, sample std 100,
    # delta 200 - 150 = +50, 95% CI half-width t(2) * 100 / sqrt(3)
    separate = [
        _write_run(tmp_path / f"sep-s{s}", s, [(100, 999.0), (200, 5.0), (300, final)])
        for s, final in zip((0, 1, 2), (100.0, 200.0, 300.0))
    ]
    # the same three seeds as one run whose rows carry `seed` (train.num_seeds = 3)
    stacked = _write_run(
        tmp_path / "stacked", 0, [(100, 999.0), (300, 100.0)], seed_field=True,
        extra_seeds=[(1, [(100, 1.0), (300, 200.0)]), (2, [(300, 300.0)])],
    )
    single = [_write_run(tmp_path / "one", 7, [(100, 10.0), (300, 42.5)])]
    for runs in (separate, [stacked]):
        results = collect_results(TABLE_EXPERIMENT, {"sac-toy_reach": runs, "sac-toy_reach-one_seed": single})
        r, one = results
        assert r.per_seed == {0: 100.0, 1: 200.0, 2: 300.0} and r.final_env_steps == {0: 300, 1: 300, 2: 300}
        assert (r.n, r.mean, r.std, r.delta) == (3, 200.0, 100.0, 50.0)
        assert r.ci95 == pytest.approx(T_975_DOF2 * 100.0 / math.sqrt(3), rel=1e-9)
        assert (one.n, one.mean, one.std, one.delta, one.ci95) == (1, 42.5, None, None, None)
        assert r.curves[1] == (([100.0, 200.0, 300.0], [999.0, 5.0, 200.0]) if runs is separate else ([100.0, 300.0], [1.0, 200.0]))
    text = results_markdown(
        TABLE_EXPERIMENT, TABLE_EXPERIMENT.budgets["smoke"], results, seeds=3,
        command="mjxmbrl reproduce table-test", date="2025-01-01", machine="test machine",
    )
    assert "| toy_reach | sac | – | 200.0 ± 100.0 | 3 | 300 | 150 ± 20 | +50.0 |" in text
    assert "| toy_reach | sac | one seed | 42.5 | 1 | 300 | – | – |" in text
    assert "| task | Other |" in text and text.count("| toy_reach | 90 |") == 1 and "| toy_reach | – |" not in text
    for needle in ("budget `smoke`", "300 env steps", "2025-01-01", "test machine", "`mjxmbrl reproduce table-test`"):
        assert needle in text
    assert "the final `eval/return` of each seed (mean over its eval episodes at the last evaluation)" in text
    # a metric logged in training is not described as an evaluation's
    life = dataclasses.replace(TABLE_EXPERIMENT, metrics=("train/reward",))
    text = results_markdown(life, life.budgets["smoke"], [], seeds=1, command="c", date="d", machine="m")
    assert "the final `train/reward` of each seed (its value in the last metrics row that has it)" in text
    assert "eval episodes" not in text


def test_every_experiment_cites_its_paper_in_full(tmp_path):
    # results.md travels without the README's reference list: authors, title (quoted), year and arXiv id
    for e in list_experiments():
        full = full_citation(e.paper)
        assert full != e.paper and full.count('"') >= 2 and "arXiv:" in full, e.name
    e = get_experiment("gradmpc-dmc100k")
    text = results_markdown(e, e.budgets["smoke"], [], seeds=1, command="c", date="d", machine="m")
    assert 'Paper: S V, Jalagam, LeCun, Sobal 2023, "Gradient-based Planning with World Models", arXiv:2312.17227; Table 1' in text


def test_reference_table_has_one_row_per_task():
    # two methods on one task, each leaving its own column out of its references: one row with all three columns;
    # a third cell on that task printing another number for a column keeps separate rows rather than pick one
    a, b, c = (Published(float(v), None, f"Table 9, column '{n}'") for v, n in ((1, "A"), (2, "B"), (3, "C")))
    cell = lambda method, task, *ref: Cell(method, task, "configs/debug.yaml", 1, reference=ref)
    result = lambda c: types.SimpleNamespace(cell=c)
    same_task = [result(cell("a", "t", ("B", b), ("C", c))), result(cell("b", "t", ("A", a), ("C", c))),
                 result(cell("a", "u", ("B", b)))]
    assert reference_rows(same_task) == [("t", {"A": a, "B": b, "C": c}), ("u", {"B": b})]
    other_c = Published(4.0, None, "Table 9, column 'C'")
    clash = same_task[:2] + [result(cell("c", "t", ("C", other_c)))]
    assert reference_rows(clash) == [("t", {"B": b, "C": c}), ("t", {"A": a, "C": c}), ("t", {"C": other_c})]


def test_results_table_keeps_three_significant_digits_of_fractions(tmp_path):
    # coverages of 0.2, 0.25, 0.3 -> mean 0.25, std 0.05: one decimal would print "0.2 ± 0.1" (or 0.1 ± 0.0 for
    # a random walk's 0.07), so values below 1 keep 3 significant digits and the std the mean's decimals
    runs = [_write_run(tmp_path / f"s{s}", s, [(300, v)]) for s, v in zip((0, 1, 2), (0.2, 0.25, 0.3))]
    small = [_write_run(tmp_path / "small", 0, [(300, 0.0741)])]
    results = collect_results(TABLE_EXPERIMENT, {"sac-toy_reach": runs, "sac-toy_reach-one_seed": small})
    text = results_markdown(
        TABLE_EXPERIMENT, TABLE_EXPERIMENT.budgets["smoke"], results, seeds=3,
        command="mjxmbrl reproduce table-test", date="2025-01-01", machine="test machine",
    )
    assert "| toy_reach | sac | – | 0.250 ± 0.050 | 3 | 300 | 150 ± 20 | -149.8 |" in text
    assert "| toy_reach | sac | one seed | 0.0741 | 1 |" in text
    assert "seed 1: 0.250 @ 300" in text and "seed 0: 0.0741 @ 300" in text


def test_run_status(tmp_path):
    cfg = load_config(ROOT / "configs" / "debug.yaml", ["train.total_env_steps=300"])
    run = PlannedRun(TABLE_EXPERIMENT.cells[0], 0, tmp_path / "r", cfg)
    assert run_status(run) == "missing"
    run.run_dir.mkdir()
    assert run_status(run) == "stale"
    save_config(cfg, run.run_dir / "config.yaml")
    (run.run_dir / "checkpoints" / "100").mkdir(parents=True)
    assert run_status(run) == "resumable"
    (run.run_dir / "summary.json").write_text(json.dumps({"finished": True}))
    assert run_status(run) == "finished"
    other = config_to_dict(cfg)
    other["train"]["total_env_steps"] = 600
    (run.run_dir / "config.yaml").write_text(json.dumps(other))  # JSON is YAML
    with pytest.raises(ExperimentError, match="another config .*train.total_env_steps"):
        run_status(run)


@pytest.fixture
def toy_experiment():
    budget = Budget(
        "smoke", total_env_steps=400, eval_every=400, eval_episodes=2, seeds=1,
        overrides=(
            "train.warmup_env_steps=200", "train.log_every=400", "train.checkpoint_every=400", "train.updates_per_step=1",
            "agent.hidden_sizes=[16,16]", "agent.batch_size=16", "replay.capacity=2000", "log.wandb=disabled", "log.progress=false",
        ),
    )
    e = register(Experiment(
        "toy-e2e", "none.txt", "Table 0", "SAC on the toy task",
        (Cell("sac", "toy_reach", "configs/debug.yaml", 1, published=Published(-5.0, 1.0, "Table 0, column 'SAC'")),),
        {"smoke": budget},
    ))
    yield e
    unregister(e.name)


def test_reproduce_end_to_end_and_continue(tmp_path, toy_experiment):
    out = tmp_path / "out"
    stale = out / "runs" / "sac-toy_reach-s0"
    stale.mkdir(parents=True)  # a run that died before its first checkpoint: moved aside, trained afresh
    logs = []
    assert reproduce("toy-e2e", "smoke", out=out, log=logs.append) == out
    assert (out / "runs" / "sac-toy_reach-s0.incomplete-1").is_dir()
    summary = json.loads((stale / "summary.json").read_text())
    assert summary["finished"] and summary["env_steps"] == 400
    text = (out / "results.md").read_text()
    row = next(l for l in text.splitlines() if l.startswith("| toy_reach | sac |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    ours, delta = float(cells[3]), float(cells[7])
    assert cells[4] == "1" and cells[5] == "400" and cells[6] == "-5 ± 1"
    assert delta == pytest.approx(ours + 5.0, abs=0.051)
    png = (out / "results.png").read_bytes()
    assert len(png) > 1000 and png[:8] == b"\x89PNG\r\n\x1a\n"
    head = json.loads((out / "results.json").read_text())
    assert head["command"] == f"mjxmbrl reproduce toy-e2e --budget smoke --seeds 1 --out {out}"
    assert head["date"][:2] == "20" and "cpu" in head["machine"] and head["wall_s"] > 0
    # report only, asking for two seeds: nothing trains, seed 1 is listed as not finished
    # (a user's log-only override: the finished run's config still matches; the override is in the command)
    reproduce("toy-e2e", "smoke", seeds=2, out=out, log=logs.append, report_only=True, overrides=("log.progress=true",))
    assert not (out / "runs" / "sac-toy_reach-s1").exists()
    assert "not finished when this report was written" in (out / "results.md").read_text()
    assert json.loads((out / "results.json").read_text())["command"].endswith("--seeds 2 --out " + str(out) + " log.progress=true")
    assert json.loads((out / "results.json").read_text())["cells"][0]["seeds"] == 1
    # continuing with a second seed: the finished seed 0 is skipped, seed 1 trains in a worker process
    logs.clear()
    reproduce("toy-e2e", "smoke", seeds=2, out=out, log=logs.append, jobs=2)
    assert any("seed 0: finished run found" in l and "skipped" in l for l in logs), logs
    assert [r["status"] for r in json.loads((out / "runs.json").read_text())] == ["finished", "missing"]
    result = json.loads((out / "results.json").read_text())["cells"][0]
    assert result["seeds"] == 2 and set(result["per_seed"]) == {"0", "1"}
    assert result["per_seed"]["0"] == pytest.approx(ours, abs=0.051) and result["std"] is not None
    assert "| 2 | 400 |" in (out / "results.md").read_text()
    # the same two seeds trained together in one vmapped program: one run directory, the same per-seed results
    vmapped = tmp_path / "vmapped"
    logs.clear()
    reproduce("toy-e2e", "smoke", seeds=2, out=vmapped, log=logs.append, vmap_seeds=True)
    assert sorted(p.name for p in (vmapped / "runs").iterdir()) == ["sac-toy_reach-s0-1"]
    assert any("seeds 0-1: training" in l for l in logs), logs
    together = json.loads((vmapped / "results.json").read_text())["cells"][0]
    assert together["seeds"] == 2
    for seed in ("0", "1"):
        assert together["per_seed"][seed] == pytest.approx(result["per_seed"][seed], abs=0.05)


def test_run_orders():
    e = get_experiment("svg-horizons-dmc")
    planned = plan_runs(e, e.budgets["smoke"], 2, Path("/nonexistent"))
    label = lambda runs: [(r.cell.id.split("-")[1] + "-" + r.cell.task.split("_")[0], r.seed) for r in runs]
    assert label(order_runs(planned, "cell"))[:3] == [("h0-cartpole", 0), ("h0-cartpole", 1), ("h1-cartpole", 0)]
    by_seed = label(order_runs(planned, "seed"))
    assert by_seed[:10] == [(f"h{h}-{t}", 0) for t in ("cartpole", "reacher") for h in (0, 1, 2, 3, 5)]
    by_task = label(order_runs(planned, "task"))
    assert by_task[:10] == [(f"h{h}-cartpole", s) for s in (0, 1) for h in (0, 1, 2, 3, 5)]
    assert by_task[10:] == [(f"h{h}-reacher", s) for s in (0, 1) for h in (0, 1, 2, 3, 5)]
    assert sorted(by_seed) == sorted(by_task) == sorted(label(planned))


@pytest.fixture
def two_cell_experiment():
    e = register(Experiment(
        "two-cells", "none.txt", "Table 0", "hand-made runs",
        (Cell("sac", "toy_reach", "configs/debug.yaml", 1), Cell("sac", "toy_reach", "configs/debug.yaml", 1, setting="small")),
        {"smoke": Budget("smoke", 300, 100, 2, 2)},
    ))
    yield e
    unregister(e.name)


def test_cells_selection_and_order_through_reproduce(tmp_path, two_cell_experiment):
    out = tmp_path / "out"
    for run in plan_runs(two_cell_experiment, two_cell_experiment.budgets["smoke"], 2, out):
        _write_run(run.run_dir, run.seed, [(300, 10.0 * run.seed + (5.0 if run.cell.setting else 0.0))])
        save_config(run.cfg, run.run_dir / "config.yaml")  # the planned config, so the run counts as this cell's
        (run.run_dir / "summary.json").write_text(json.dumps({"finished": True}))
    logs = []
    reproduce("two-cells", "smoke", out=out, log=logs.append, order="seed")  # every run finished: nothing trains
    skipped = [l.split(":")[0] for l in logs if "skipped" in l]
    assert skipped == ["[1/4] sac-toy_reach seed 0", "[2/4] sac-toy_reach-small seed 0", "[3/4] sac-toy_reach seed 1", "[4/4] sac-toy_reach-small seed 1"]
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert [(c["cell"], c["per_seed"]) for c in cells] == [
        ("sac-toy_reach", {"0": 0.0, "1": 10.0}), ("sac-toy_reach-small", {"0": 5.0, "1": 15.0})
    ]
    logs.clear()
    reproduce("two-cells", "smoke", out=out, log=logs.append, cells=["*-small"])
    assert [l.split(":")[0] for l in logs if "skipped" in l] == ["[1/2] sac-toy_reach-small seed 0", "[2/2] sac-toy_reach-small seed 1"]
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert [c["cell"] for c in cells] == ["sac-toy_reach-small"]
    assert cells[0]["curves"] == {"0": {"env_steps": [300], "value": [5.0]}, "1": {"env_steps": [300], "value": [15.0]}}
    assert "sac-toy_reach:" not in (out / "results.md").read_text() and "--cells *-small" in (out / "results.md").read_text()


def _finished_runs(experiment, out, value, seeds=None):
    for run in plan_runs(experiment, experiment.budgets["smoke"], 2, out):
        if seeds is None or (run.cell.id, run.seed) in seeds:
            _write_run(run.run_dir, run.seed, [(300, value(run))])
            save_config(run.cfg, run.run_dir / "config.yaml")
            (run.run_dir / "summary.json").write_text(json.dumps({"finished": True}))


def test_merge_takes_the_seeds_an_earlier_results_json_has_and_the_out_dir_lacks(tmp_path, two_cell_experiment):
    earlier_out, out = tmp_path / "earlier", tmp_path / "out"
    _finished_runs(two_cell_experiment, earlier_out, lambda r: 10.0 * r.seed + (5.0 if r.cell.setting else 0.0))
    reproduce("two-cells", "smoke", out=earlier_out, log=lambda m: None, report_only=True)
    earlier = tmp_path / "kept.json"
    earlier.write_text((earlier_out / "results.json").read_text())
    # a later machine: only seed 1 of the first cell, with another value; the earlier file's seed 1 must not win
    _finished_runs(two_cell_experiment, out, lambda r: 99.0, seeds={("sac-toy_reach", 1)})
    logs = []
    reproduce("two-cells", "smoke", out=out, log=logs.append, merge=earlier)  # trains only what neither holds: nothing
    assert sorted(l for l in logs if "not trained" in l) == [
        f"sac-toy_reach seed 0: in {earlier}, not trained", f"sac-toy_reach-small seed 0: in {earlier}, not trained",
        f"sac-toy_reach-small seed 1: in {earlier}, not trained",
    ]
    assert not (out / "runs" / "sac-toy_reach-s0").exists() and any("seed 1: finished run found" in l for l in logs), logs
    data = json.loads((out / "results.json").read_text())
    assert [(c["cell"], c["per_seed"]) for c in data["cells"]] == [
        ("sac-toy_reach", {"0": 0.0, "1": 99.0}), ("sac-toy_reach-small", {"0": 5.0, "1": 15.0})
    ]
    assert data["cells"][1]["curves"]["1"] == {"env_steps": [300], "value": [15.0]} and data["cells"][0]["std"] is not None
    assert data["merged_from"] == {"path": str(earlier), "seeds": {"sac-toy_reach": [0], "sac-toy_reach-small": [0, 1]}}
    text = (out / "results.md").read_text()
    assert f"from an earlier `{earlier}`: sac-toy_reach s0; sac-toy_reach-small s0, s1" in text
    assert "not finished" not in text  # the missing runs are covered by the earlier file
    reproduce("two-cells", "smoke", out=out, log=lambda m: None, report_only=True, merge=earlier)
    assert json.loads((out / "results.json").read_text())["cells"] == data["cells"]  # the same report without training
    assert (out / "results.png").stat().st_size > 1000
    # without --merge the same folder reports one seed and lists the three missing runs
    reproduce("two-cells", "smoke", out=out, log=lambda m: None, report_only=True)
    assert json.loads((out / "results.json").read_text())["cells"][0]["per_seed"] == {"1": 99.0}
    line, = [x for x in (out / "results.md").read_text().splitlines() if "not finished when this report was written" in x]
    assert line.endswith(f"3 run(s) in {out / 'runs'}: sac-toy_reach-s0, sac-toy_reach-small-s0, sac-toy_reach-small-s1"), line
    # another experiment's file, or none: one error before anything is written
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"experiment": "dmc100k-sac", "budget": "smoke", "cells": []}))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**json.loads(earlier.read_text()), "cells": [{"cell": "sac-toy_reach", "curves": {"0": {"value": [1.0]}}}]}))
    for bad, message in ((other, "holds experiment 'dmc100k-sac' at budget 'smoke', not 'two-cells' at 'smoke'"),
                         (tmp_path / "none.json", "no such file"),
                         (broken, "cell 'sac-toy_reach', seed '0': not a curve")):
        with pytest.raises(ExperimentError, match=message):
            reproduce("two-cells", "smoke", out=tmp_path / "fresh", log=lambda m: None, merge=bad)
        assert not (tmp_path / "fresh").exists()


def test_merge_earlier_keeps_each_metric_and_its_fallbacks():
    cell = Cell("mpc-mpo", "walker_walk", "configs/debug.yaml", 1)
    own = CellResult(cell, {1: 5.0}, {1: 300}, {1: ([300.0], [5.0])},
                     others={"eval/policy_return": CellResult(cell, {1: 6.0}, {1: 300}, {1: ([300.0], [6.0])})})
    entry = {"curves": {"0": {"env_steps": [100, 300], "value": [1.0, 2.0]}, "1": {"env_steps": [300], "value": [7.0]},
                        "2": {"env_steps": [300], "value": [3.0]}},
             "metrics": {"eval/policy_return": {"curves": {"0": {"env_steps": [300], "value": [4.0]}}, "fallback_seeds": []}}}
    (r,), merged = merge_earlier([own], {cell.id: entry})
    assert merged == {cell.id: [0, 2]}
    assert r.per_seed == {0: 2.0, 1: 5.0, 2: 3.0} and r.final_env_steps == {0: 300, 1: 300, 2: 300}
    policy = r.others["eval/policy_return"]
    # seed 0 has its own policy curve; seed 2 has none in the earlier file: the first metric's, marked as a fallback
    assert policy.per_seed == {0: 4.0, 1: 6.0, 2: 3.0} and policy.fallback_seeds == (2,)
    # nothing to take: the same object back
    assert merge_earlier([own], {}) == ([own], {})


def _children(pid: int):
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc")
def test_sigterm_stops_the_worker_processes_of_a_parallel_reproduce(tmp_path):
    """`kill` of a reproduce --jobs 2 must not leave its training workers running on as orphans."""
    import signal
    import time

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "mjxmbrl.cli", "reproduce", "dmc100k-sac", "--budget", "smoke",
                             "--jobs", "2", "--out", str(tmp_path / "out")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        workers = []
        while time.time() < deadline and proc.poll() is None:
            workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")]
            if len(workers) >= 2 and list((tmp_path / "out" / "runs").glob("*/config.yaml")):
                break  # both workers exist and a run has started training
            time.sleep(0.5)
        assert len(workers) >= 2, "the parallel reproduce did not start its workers"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "stopped by signal 15" in stderr
        time.sleep(5)
        assert not [p for p in workers if _alive(p)], "workers outlived the reproduce"
    finally:
        if proc.poll() is None:
            proc.kill()
