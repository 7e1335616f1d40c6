"""`mjxmbrl bench scaling | seeds | memory` in quick mode: a markdown table appended, a JSON record written."""

import json

from mjxmbrl.cli.bench import bench_memory, bench_scaling, bench_seeds


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
