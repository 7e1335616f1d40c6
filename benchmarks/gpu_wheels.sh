#!/usr/bin/env bash
# Collects, into the git-ignored .whl/, Python 3.12 manylinux x86_64 wheels of what a lent GPU machine's
# image lacks, so that a device session installs offline in seconds instead of spending its minutes on it.
#
#   benchmarks/gpu_wheels.sh            # download here (needs the package index), then carry .whl to the device
#   benchmarks/gpu_wheels.sh --dry-run  # print the pins and commands; downloads nothing
#
# The image has Python 3.12, jax 0.11 with CUDA, flax, optax, orbax-checkpoint (so numpy, scipy, absl-py,
# etils, pyyaml, msgpack, rich, ... as their dependencies) and no network. It lacks MuJoCo, MJX, Playground,
# brax and what they and mjxmbrl import at run time, listed below; versions are pinned to what this
# environment's Python (${PYTHON:-python3}, e.g. the project venv) has installed. --no-deps everywhere: each
# needed dependency is named here. Left out on purpose: warp-lang (149 MB, over the 64 MiB a call may
# carry: on the device MJX runs its JAX backend, env.impl=jax, the default), wandb (optional; off on the
# device), jax/jaxlib (the image's CUDA build must stay). Fails when the wheels pass 60 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEST=.whl
LIMIT_MIB=60
PACKAGES=(
  mujoco mujoco-core mujoco-mjx          # mujoco 4.x: the library is mujoco-core; mujoco-studio/glfw/pyopengl (viewer) not needed
  playground brax jaxopt ml-collections  # mujoco_playground imports brax, which imports jaxopt and ml_collections
  trimesh lxml pillow mediapy tqdm pyyaml # MJX (trimesh), Playground (lxml, mediapy, tqdm), brax.io.image (PIL)
  matplotlib contourpy cycler fonttools kiwisolver pyparsing python-dateutil tzdata packaging  # learning_curve.png of `mjxmbrl train`
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

DRY_RUN=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
# A package missing here fails a real download (the device would lack it); a dry run names it unpinned and warns.
mapfile -t PINS < <("$PYTHON" - "$DRY_RUN" "${PACKAGES[@]}" <<'EOF'
import importlib.metadata as m, sys
dry_run = sys.argv[1] == "1"
for name in sys.argv[2:]:
    try:
        print(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        message = f"gpu_wheels.sh: {name} is not installed in {sys.executable}: activate the project's venv (or set PYTHON)"
        if not dry_run:
            sys.exit(message)
        print(f"{message}; named unpinned", file=sys.stderr)
        print(name)
EOF
)
(( ${#PINS[@]} == ${#PACKAGES[@]} )) || exit 1
DOWNLOAD=("$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp)
for p in "${PLATFORMS[@]}"; do DOWNLOAD+=(--platform "$p"); done
DOWNLOAD+=(-d "$DEST")
OWN=("$PYTHON" -m pip wheel . -q --no-deps --no-build-isolation -w "$DEST")
INSTALL='python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site'

if (( DRY_RUN )); then
  printf 'would fetch %s\n' "${PINS[@]}"
  echo "download: ${DOWNLOAD[*]} ${PINS[*]}"
  echo "own wheel: ${OWN[*]}"
  echo "install on the device: $INSTALL"
  exit 0
fi

rm -rf "$DEST"
mkdir -p "$DEST"
"${DOWNLOAD[@]}" "${PINS[@]}" || {
  echo "gpu_wheels.sh: download failed; a package without a wheel for these platforms may need another --platform manylinux_2_N_x86_64 (N up to 39)" >&2
  exit 1
}
"${OWN[@]}"

echo "wheels in $DEST:"
ls -l "$DEST"/*.whl | awk '{printf "  %8.2f MiB  %s\n", $5 / 1048576, $NF}'
total=$(cat "$DEST"/*.whl | wc -c)
awk -v t="$total" -v n="$(ls "$DEST"/*.whl | wc -l)" -v l="$LIMIT_MIB" \
  'BEGIN { printf "total: %.1f MiB in %d wheels (limit %d MiB; 64 MiB may travel with one device call)\n", t / 1048576, n, l }'
if (( total > LIMIT_MIB * 1048576 )); then
  echo "gpu_wheels.sh: FAILED: the wheels pass $LIMIT_MIB MiB; drop some from PACKAGES" >&2
  exit 1
fi
echo "install on the device: $INSTALL"
echo "device command (run tool, carry [\".whl\"]): $INSTALL && python3 -m mjxmbrl bench gpu --out \$OUT"
