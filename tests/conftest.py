"""Test-session set-up: one persistent JAX compilation cache for every process of the suite.

Many tests build the same small programs (the debug config's train chunk and evaluator, the toy task's
rollouts) in separate processes: pytest-xdist workers and the CLI subprocesses they start, which inherit
the environment. With JAX's persistent cache the second build loads the executable the first one wrote
instead of compiling it again. That cuts the suite's time, not what it tests: trace counts, results and
bit-exact resumes do not depend on where an executable came from. Set JAX_COMPILATION_CACHE_DIR to use
another folder (an empty one compiles everything).

Not done here: compiling the whole suite at XLA's LLVM optimisation level 0 (XLA_FLAGS
--xla_backend_optimization_level=0). It cut an empty-cache run from 52 to 40 minutes (2026-12-07, 2-core AMD EPYC)
but changed what is tested: at that level the seeds-vmapped SAC program of tests/test_seeds.py gives NaN
parameters, and the vmapped-seed runs of test_reproduce.py and `bench gpu --quick` fail with it; at the default
level they pass. tests/fast_compile.py applies it per program, only to the MJX rollouts it was checked on.
"""

import getpass
import os
import tempfile

os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"mjxmbrl-tests-jax-cache-{getpass.getuser()}")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# pytest-xdist runs one worker per core: on a GPU they share the device instead of each claiming 75% of it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402  (after the environment, which JAX reads when it is imported)

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
