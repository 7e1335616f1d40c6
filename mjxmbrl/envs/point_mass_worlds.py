"""2-D point-mass exploration worlds of POLO (Lowrey et al. 2019, arXiv:1811.01848, Sec. 3.1, Fig. 2).

A world is a layout: a tuple of equal-length strings, one per row of cells,
top row first, `#` a wall cell, `.` a free cell, `S` the free cell the mass
starts in. The same layout gives

- the MJCF of the task (`World.xml`): a 2 m x 2 m arena (16 x 16 cells of
  12.5 cm) centred at the origin, bounded by four wall planes; each straight
  run of `#` cells is one capsule of radius half a cell along the run's centre
  line (a lone `#` cell a sphere); a sphere of radius 4 cm on two slide joints
  (x, y) with damping, driven by two motors (ctrl in [-1, 1]);
- the occupancy grid of the coverage metric (Fig. 2a): `cell_index(pos)` maps
  positions to cells (row-major, row 0 at the top, y = +1), `reachable` marks
  the free cells connected to the start (walls are not counted), and
  `coverage_fraction(visited)` is the fraction of reachable cells visited.

The mass cannot put its centre in a wall cell: every point of a wall cell
lies within 0.088 m (half the cell's diagonal) of its capsule's axis, less than
the capsule's radius plus the mass's (0.0625 + 0.04 m), so every position maps
to a free cell; a capsule's rounded ends leave the outer corners of its end
cells open, which only rounds the corners of the corridors. (Capsules rather
than boxes: MJX's sphere-capsule contact is closed-form, and 64 maze envs
step 1.5x faster than with box walls on a CPU.)

Dynamics (per axis): m x'' = GEAR * a - DAMPING * x' with m = MASS, a in
[-1, 1]: terminal speed GEAR / DAMPING = 1 m/s, time constant 0.5 s, so at
full force the mass crosses the 2 m arena in about 2.5 s = 125 control steps
of CTRL_DT = 0.02 s (SIM_DT = 0.01 s, 2 physics sub-steps). There is no reward
(0 every step, the paper's setting) and no termination; episodes last
EPISODE_LENGTH = 1000 control steps (Fig. 2b shows 1000 timesteps).

Observation [4]: position (x, y) then velocity (x, y) (`position(obs)` is
obs[..., :2]). This module is pure Python / jax.numpy: it imports no simulator.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

CELL_SIZE = 0.125  # m; 16 cells span the 2 m arena
SPHERE_RADIUS = 0.04  # m
MASS = 1.0  # kg
DAMPING = 2.0  # N s / m, per slide joint
GEAR = 2.0  # N at |ctrl| = 1
WALL_HEIGHT = 0.1  # m, half height of the border planes (visual only: the motion is planar)
CTRL_DT = 0.02
SIM_DT = 0.01
EPISODE_LENGTH = 1000
SOLVER_ITERATIONS = 4  # Newton rounds (MuJoCo's default 100)
SOLVER_LS_ITERATIONS = 8  # line-search rounds (default 50)
START_JITTER = 0.02  # m; the start position is the start cell's centre + U(-jitter, jitter)^2
OBS_SIZE = 4
ACTION_SIZE = 2

BOX_LAYOUT: Tuple[str, ...] = ("S" + "." * 15,) + ("." * 16,) * 15

# Sixteen 3 x 3 rooms (the last row / column 4 wide) separated by 1-cell walls, opened
# along a spanning tree: a left corridor from the start down to the bottom, with
# 3-cell-wide dead-end corridors branching off to the right, so that reaching every
# corridor takes long, coordinated runs (the mass has to turn into each branch).
MAZE_LAYOUT: Tuple[str, ...] = (
    "S..#............",
    "...#............",
    "...#............",
    "...#...#########",
    "................",
    "................",
    "................",
    "...#############",
    "...#............",
    "...#............",
    "...#............",
    "...#...#########",
    "................",
    "................",
    "................",
    "................",
)


def position(obs: jax.Array) -> jax.Array:
    """The mass's position obs[..., :2] (metres, arena centre at the origin) from observations [..., 4]."""
    return obs[..., :2]


def zero_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """The worlds' reward, 0 every step (no extrinsic reward): obs [..., 4] -> zeros [...]."""
    del obs, action
    return jnp.zeros(next_obs.shape[:-1], next_obs.dtype)


@dataclasses.dataclass(frozen=True)
class World:
    """One layout and everything derived from it (see the module docstring).

    Attributes: name, layout (rows of `#`, `.`, `S`), cell_size (m).
    Derived: rows, cols, num_cells, half_extent (x, y) of the arena, start_cell
    (row, col), start_position [2], free [num_cells] and reachable [num_cells]
    (numpy bool, row-major), walls (straight runs of wall cells: (row0, col0, row1, col1) inclusive,
    row0 == row1 or col0 == col1).
    """

    name: str
    layout: Tuple[str, ...]
    cell_size: float = CELL_SIZE

    def __post_init__(self):
        widths = {len(row) for row in self.layout}
        if len(widths) != 1 or set("".join(self.layout)) - set("#.S") or "".join(self.layout).count("S") != 1:
            raise ValueError(f"world '{self.name}': rows of equal length over '#', '.', one 'S' expected")

    @property
    def rows(self) -> int:
        return len(self.layout)

    @property
    def cols(self) -> int:
        return len(self.layout[0])

    @property
    def num_cells(self) -> int:
        return self.rows * self.cols

    @property
    def half_extent(self) -> Tuple[float, float]:
        return 0.5 * self.cols * self.cell_size, 0.5 * self.rows * self.cell_size

    @property
    def free(self) -> np.ndarray:
        return np.array([ch != "#" for row in self.layout for ch in row], bool)

    @property
    def start_cell(self) -> Tuple[int, int]:
        flat = "".join(self.layout).index("S")
        return divmod(flat, self.cols)

    def cell_center(self, row: int, col: int) -> Tuple[float, float]:
        """(x, y) of the centre of cell (row, col); row 0 is the top (largest y)."""
        hx, hy = self.half_extent
        return -hx + (col + 0.5) * self.cell_size, hy - (row + 0.5) * self.cell_size

    @property
    def start_position(self) -> np.ndarray:
        return np.array(self.cell_center(*self.start_cell), np.float32)

    @property
    def reachable(self) -> np.ndarray:
        """Free cells 4-connected to the start cell (flood fill), [num_cells] bool."""
        free = self.free.reshape(self.rows, self.cols)
        seen = np.zeros_like(free)
        stack = [self.start_cell]
        while stack:
            r, c = stack.pop()
            if 0 <= r < self.rows and 0 <= c < self.cols and free[r, c] and not seen[r, c]:
                seen[r, c] = True
                stack += [(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)]
        return seen.reshape(-1)

    @property
    def walls(self) -> List[Tuple[int, int, int, int]]:
        """Wall cells as straight runs (row0, col0, row1, col1), inclusive: first the maximal
        horizontal runs of two or more cells, then the remaining cells as maximal vertical runs."""
        wall = np.array([[ch == "#" for ch in row] for row in self.layout])
        done = np.zeros_like(wall)
        runs = []
        for r in range(self.rows):
            c = 0
            while c < self.cols:
                c1 = c
                while wall[r, c] and c1 + 1 < self.cols and wall[r, c1 + 1]:
                    c1 += 1
                if c1 > c:
                    runs.append((r, c, r, c1))
                    done[r, c : c1 + 1] = True
                c = c1 + 1
        for c in range(self.cols):
            r = 0
            while r < self.rows:
                if not wall[r, c] or done[r, c]:
                    r += 1
                    continue
                r1 = r
                while r1 + 1 < self.rows and wall[r1 + 1, c] and not done[r1 + 1, c]:
                    r1 += 1
                runs.append((r, c, r1, c))
                done[r : r1 + 1, c] = True
                r = r1 + 1
        return runs

    # ---- coverage (pure JAX; the layout is static) -------------------------

    def cell_index(self, pos: jax.Array) -> jax.Array:
        """Positions [..., 2] (x, y) -> flat cell index [...] int32 in [0, num_cells), row-major,
        row 0 at the top; positions outside the arena are clipped to the border cells."""
        hx, hy = self.half_extent
        col = jnp.clip(jnp.floor((pos[..., 0] + hx) / self.cell_size), 0, self.cols - 1)
        row = jnp.clip(jnp.floor((hy - pos[..., 1]) / self.cell_size), 0, self.rows - 1)
        return (row * self.cols + col).astype(jnp.int32)

    def visit(self, visited: jax.Array, pos: jax.Array) -> jax.Array:
        """visited [..., num_cells] bool, pos [..., 2] (same leading axes) -> visited with the cells of pos set
        (one step of a per-env visited mask [N, num_cells] from positions [N, 2])."""
        hit = jax.nn.one_hot(self.cell_index(pos), self.num_cells, dtype=jnp.bool_)
        return jnp.logical_or(visited, hit)

    def visited_cells(self, path: jax.Array) -> jax.Array:
        """path [..., T, 2] positions -> [..., num_cells] bool, the cells the path visits."""
        return jnp.any(jax.nn.one_hot(self.cell_index(path), self.num_cells, dtype=jnp.bool_), axis=-2)

    def coverage_fraction(self, visited: jax.Array) -> jax.Array:
        """visited [..., num_cells] (bool or 0/1) -> fraction [...] of the reachable cells visited
        (wall cells never count; 1.0 when every reachable cell was visited)."""
        reachable = jnp.asarray(self.reachable)
        hits = jnp.sum(jnp.logical_and(visited.astype(bool), reachable), axis=-1)
        return hits.astype(jnp.float32) / float(self.reachable.sum())

    # ---- MJCF --------------------------------------------------------------

    def xml(self) -> str:
        """The task's MJCF string (compile with `mujoco.MjModel.from_xml_string`)."""
        hx, hy = self.half_extent
        s = self.cell_size
        walls = []
        for i, (r0, c0, r1, c1) in enumerate(self.walls):
            (x0, y0), (x1, y1) = self.cell_center(r0, c0), self.cell_center(r1, c1)
            if (r0, c0) == (r1, c1):
                shape = f'type="sphere" pos="{x0:.6g} {y0:.6g} 0"'
            else:
                shape = f'type="capsule" fromto="{x0:.6g} {y0:.6g} 0 {x1:.6g} {y1:.6g} 0"'
            walls.append(f'    <geom name="wall{i}" {shape} size="{0.5 * s:.6g}" material="wall"/>')
        # Border planes face into the arena (a plane's normal is its z axis).
        border = [
            ("border_left", (-hx, 0), "0 1 0 0 0 1"),  # xyaxes: z = (1, 0, 0)
            ("border_right", (hx, 0), "0 -1 0 0 0 1"),  # z = (-1, 0, 0)
            ("border_bottom", (0, -hy), "-1 0 0 0 0 1"),  # z = (0, 1, 0)
            ("border_top", (0, hy), "1 0 0 0 0 1"),  # z = (0, -1, 0)
        ]
        planes = [
            f'    <geom name="{n}" type="plane" pos="{p[0]:.6g} {p[1]:.6g} 0" xyaxes="{ax}" size="{max(hx, hy)} {WALL_HEIGHT} 0.01" '
            'material="wall"/>'
            for n, p, ax in border
        ]
        sx, sy = self.start_position
        return "\n".join(
            [
                f'<mujoco model="polo_{self.name}">',
                # Few solver rounds, as Playground's own suite models set them: one wall contact
                # converges in a couple, and under vmap the default 100 / 50 rounds run for
                # every env while any is in contact (4.6x slower, same trajectories: docs/polo.md).
                f'  <option timestep="{SIM_DT}" gravity="0 0 0" iterations="{SOLVER_ITERATIONS}" '
                f'ls_iterations="{SOLVER_LS_ITERATIONS}"/>',
                '  <visual><headlight diffuse=".6 .6 .6" ambient=".3 .3 .3"/></visual>',
                "  <asset>",
                '    <texture name="grid" type="2d" builtin="checker" rgb1=".2 .3 .4" rgb2=".25 .35 .45" width="16" height="16"/>',
                f'    <material name="floor" texture="grid" texrepeat="{self.cols // 2} {self.rows // 2}"/>',
                '    <material name="wall" rgba=".6 .55 .5 1"/>',
                "  </asset>",
                # Frictionless contacts (condim 1: one constraint row each); only the mass collides.
                '  <default><geom contype="0" conaffinity="1" condim="1"/></default>',
                "  <worldbody>",
                f'    <camera name="top" pos="0 0 {2.6 * max(hx, hy):.3g}" xyaxes="1 0 0 0 1 0"/>',
                f'    <geom name="floor" type="plane" pos="0 0 {-WALL_HEIGHT}" size="{hx} {hy} 0.01" material="floor" '
                'conaffinity="0"/>',
                *planes,
                *walls,
                '    <body name="pointmass" pos="0 0 0">',
                f'      <joint name="root_x" type="slide" axis="1 0 0" damping="{DAMPING}" ref="0"/>',
                f'      <joint name="root_y" type="slide" axis="0 1 0" damping="{DAMPING}" ref="0"/>',
                f'      <geom name="pointmass" type="sphere" size="{SPHERE_RADIUS}" mass="{MASS}" contype="1" '
                'conaffinity="0" rgba=".9 .3 .2 1"/>',
                "    </body>",
                "  </worldbody>",
                "  <actuator>",
                f'    <motor name="x" joint="root_x" gear="{GEAR}" ctrllimited="true" ctrlrange="-1 1"/>',
                f'    <motor name="y" joint="root_y" gear="{GEAR}" ctrllimited="true" ctrlrange="-1 1"/>',
                "  </actuator>",
                f"  <!-- start: cell {self.start_cell}, position ({sx:.4g}, {sy:.4g}) -->",
                "</mujoco>",
            ]
        )


WORLDS: Dict[str, World] = {
    "PointMassBox": World("point_mass_box", BOX_LAYOUT),
    "PointMassMaze": World("point_mass_maze", MAZE_LAYOUT),
}


def get_world(env_name: str) -> World:
    """The World of a registered point-mass task ("PointMassBox", "PointMassMaze")."""
    return WORLDS[env_name]
