"""`mjxmbrl bench scaling | seeds | memory | acting` in quick mode: a markdown table appended, a JSON record written."""

import json

from mjxmbrl.cli import main
from mjxmbrl.cli.bench import bench_acting, bench_memory, bench_scaling, bench_seeds

POINT_MASS = "configs/polo/point_mass_maze.yaml"


def test_quick_benches_write_markdown_and_json(tmp_path):
    out = tmp_path / "bench.md"
    scaling = bench_scaling(quick=True, out=str(out))
    seeds = bench_seeds(quick=True, out=str(out))
    memory = bench_memory(quick=True, out=str(out))
    text = out.read_text()
    for report in (scaling, seeds, memory):
        assert report in text
    records = json.loads(out.with_suffix(".json").read_text())
    assert [r["bench"] for r in records] == ["scaling", "seeds", "memory"]
    rates = [row["env_steps_per_s"] for row in records[0]["rows"]]
    assert [row["num_envs"] for row in records[0]["rows"]] == [1, 8] and min(rates) > 0
    assert records[1]["seeds"] == 2 and records[1]["vmapped_s"] > 0 and records[1]["one_seed_s"] > 0
    assert records[2]["rows"][0]["config"] == "configs/debug.yaml" and records[2]["rows"][0]["peak_bytes"] > 1e5
    assert all("date" in r and "machine" in r for r in records)


def test_quick_acting_bench_times_planner_against_policy(tmp_path):
    """The MPC+MPO+BC agent on the toy task: N = 1, S = 8, H = 2, 2 planning steps per call."""
    out = tmp_path / "bench.md"
    report = bench_acting(quick=True, out=str(out))
    assert report in out.read_text() and "Acting with SMC against the policy alone" in report
    (record,) = json.loads(out.with_suffix(".json").read_text())
    assert record["bench"] == "acting" and record["planner"] == "smc" and record["model"] == "mlp"
    assert record["num_particles"] == 8 and record["horizon"] == 2 and record["untrained"]
    (row,) = record["rows"]
    assert row["num_envs"] == 1 and row["ratio"] > 0
    for mode, steps in (("eval", 2), ("policy", 20)):
        figures = row[mode]
        assert figures["steps"] == steps and figures["actions_finite"]
        assert figures["ms_per_step"] > 0 and figures["agent_steps_per_s"] > 0 and figures["env_steps_per_s"] > 0
    assert row["ratio"] == row["eval"]["ms_per_step"] / row["policy"]["ms_per_step"]


def test_acting_bench_of_an_agent_without_policy_times_the_plan_only(tmp_path):
    """POLO's MPPI on the simulator (Lowrey et al. 2019) has no policy to compare with: one timed mode, overrides applied."""
    out = tmp_path / "bench.md"
    overrides = ("planner.num_samples=4", "planner.horizon=2")
    report = bench_acting(config=POINT_MASS, envs=[1], steps=2, overrides=overrides, calls=1, out=str(out))
    (record,) = json.loads(out.with_suffix(".json").read_text())
    assert record["planner"] == "mppi" and record["num_particles"] == 4 and record["horizon"] == 2
    assert record["overrides"] == list(overrides) and "planner.horizon=2" in record["command"]
    (row,) = record["rows"]
    assert "policy" not in row and row["ratio"] is None
    assert row["eval"]["steps"] == 2 and row["eval"]["ms_per_step"] > 0 and row["eval"]["actions_finite"]
    assert "plan time only" in report and "| 1 | " in report and " | – | " in report


def test_bench_acting_options_are_checked(capsys):
    assert main(["bench", "acting", "--envs", "1,x"]) == 1
    assert main(["bench", "sac", "--envs", "16"]) == 1
    assert main(["bench", "models", "planner.horizon=4"]) == 1
    err = capsys.readouterr().err
    assert "comma-separated env counts" in err and "belong to `mjxmbrl bench acting`" in err
    assert "config overrides (planner.horizon=4) belong to `mjxmbrl bench acting`" in err


def test_bench_overrides_may_follow_options(monkeypatch, capsys):
    """`mjxmbrl bench acting --config C planner.horizon=64` (the README's form): argparse leaves an override
    after an option unparsed; it must still reach the bench, and a bench without overrides must refuse it."""
    from mjxmbrl.cli import bench as benches

    seen = {}
    monkeypatch.setattr(benches, "bench_acting", lambda **kw: seen.update(kw) or "report")
    assert main(["bench", "acting", "--config", str(POINT_MASS), "planner.horizon=64", "--envs", "1", "agent.kappa=2"]) == 0
    assert list(seen["overrides"]) == ["planner.horizon=64", "agent.kappa=2"] and seen["config"] == str(POINT_MASS)
    assert main(["bench", "models", "--quick", "planner.horizon=4"]) == 1
    assert "config overrides (planner.horizon=4) belong to `mjxmbrl bench acting`" in capsys.readouterr().err
