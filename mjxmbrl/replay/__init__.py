"""Device ring replay buffer with uniform and sequence sampling (see buffer.py)."""

from mjxmbrl.replay.buffer import (
    ObsCodec,
    Replay,
    ReplayState,
    gather_sequences,
    init_replay,
    insert,
    make_replay,
    sample,
    sample_sequences,
    sequence_mask,
    sequence_starts,
)

__all__ = [
    "ObsCodec",
    "Replay",
    "ReplayState",
    "gather_sequences",
    "init_replay",
    "insert",
    "make_replay",
    "sample",
    "sample_sequences",
    "sequence_mask",
    "sequence_starts",
]
