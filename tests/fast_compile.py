"""One compile helper for the MJX tests: XLA CPU compilation dominates them, and unoptimised code is fine
for a few dozen steps (not for every task: tests/test_rewards.py keeps the hopper optimised)."""

import jax

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def compile_fast(fn, *args, fast: bool = True):
    """jit-compiles fn for args with cheap XLA options (plain jit if they are rejected, or with fast=False)."""
    lowered = jax.jit(fn).lower(*args)
    if fast:
        try:
            return lowered.compile(compiler_options=FAST_COMPILE)
        except Exception:  # option names are XLA-internal; fall back rather than fail
            pass
    return lowered.compile()
