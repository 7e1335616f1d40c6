"""The host side of a training run, around the jitted train step (`mjxmbrl.train`).

- `loop.py`: the host loop of one run: open or resume its directory, build and
  place the train state, run jitted chunks, evaluate, log, checkpoint, stop on
  Ctrl-C or non-finite values, export the policy and write summary.json.
- `chunks.py`: the host side of a jitted chunk: its sizes, and its stacked
  metrics reduced to one log row.
- `evaluation.py`: evaluation between chunks, every seed's agent in each of
  its evaluation modes, with keys apart from training's.
- `checkpoints.py`: Orbax checkpoints of the whole train state; policy export.
- `logging.py`: metrics.jsonl, W&B, console progress; statistics over seeds.
- `curves.py`: the learning curve of a run (learning_curve.png).
- `devices.py`: seeds (stacked state), device meshes, shardings and
  multi-host processes.
- `disk.py`: file writes that survive a full disk: atomic replacement and one
  clear error naming the path and the free space.

Nothing here imports `mjxmbrl.cli` (the layer above), and the train step
imports nothing from here (docs/architecture.md; tests/test_layers.py).
"""
