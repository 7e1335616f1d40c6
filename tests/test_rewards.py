"""Known rewards (mjxmbrl/envs/rewards.py) against the simulator's own reward on real rollouts.

Each physics model is rolled out once (jitted scan, batch of 2 * N envs): the
first N envs take uniform random actions, the last N a structured,
policy-like action sequence (PD / energy pumping / Jacobian-transpose
reaching / sinusoidal gaits; for the sparse BallInCup and FingerSpin the
structured envs also start from a rewarding state: ball in the cup, spinner
at -25 rad/s). At every step the env's reward of *each* task on that model
(e.g. all four cartpole tasks on the CartpoleSwingup and the CartpoleBalance
rollouts) is the task env's own `_get_reward` on the stepped `mjx.Data`
(the rolled-out env's `state.reward` is checked to be the same), and is
compared with `reward_fn(obs_t, action_t, final_obs_t)`. Exact tasks must
agree to 1e-3; approximate ones to their REWARD_ERROR_BOUNDS entry.

Which sparse cases are exercised (asserted below): both reward values occur
for CartpoleSwingupSparse / CartpoleBalanceSparse (on the balance rollouts;
the 150-step swing-ups get the pole past horizontal but not into the sparse
band), ReacherEasy, BallInCup and FingerSpin; ReacherHard's 0.025 radius is
reached by the structured reacher too.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Callable, Dict, List, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_compile import compile_fast

from mjxmbrl.envs import rewards as R

EXACT_TOL = 1e-3



# ------------------------------------------------------------- policies ---
# policy(obs [D], t (int32 scalar), env index i) -> action [A] in [-1, 1].


def _sinusoid(obs, t, i, action_size, period=20.0):
    j = jnp.arange(action_size)
    phase = 2 * jnp.pi * t / (period * (1 + 0.25 * j)) + 1.3 * j + 0.7 * i
    return 0.9 * jnp.sin(phase)


def _cartpole_policy(obs, t, i, action_size):
    # Energy pumping (bang-bang on -sign(theta_dot * cos theta), gain 1 - 0.1 i)
    # swings the pole up in ~150 steps; a PD controller near upright.
    cos, sin, theta_dot = obs[1], obs[2], obs[4]
    pump = -(1.0 - 0.1 * i) * jnp.sign(theta_dot * cos + 1e-3)
    balance = jnp.clip(10.0 * sin + 1.0 * theta_dot + 0.5 * obs[0] + 0.5 * obs[3], -1, 1)
    return jnp.where(cos > 0.9, balance, pump)[None]


def _reacher_policy(obs, t, i, action_size):
    # Jacobian transpose on the finger-to-target vector, with velocity damping.
    q1, q2 = obs[0], obs[1]
    l1 = l2 = 0.12
    s1, c1, s12, c12 = jnp.sin(q1), jnp.cos(q1), jnp.sin(q1 + q2), jnp.cos(q1 + q2)
    jac = jnp.array([[-l1 * s1 - l2 * s12, -l2 * s12], [l1 * c1 + l2 * c12, l2 * c12]])
    torque = 60.0 * jac.T @ obs[2:4] - 0.3 * obs[4:6]
    return jnp.clip(torque, -1, 1)


def _point_mass_policy(obs, t, i, action_size):
    return jnp.clip(-40.0 * obs[0:2] - 2.0 * obs[2:4], -1, 1)


def _ball_in_cup_init(model, data, i):
    # Ball resting in the cup: ball z = cup z (0.6) - 0.05 - ball body z (0.2).
    return data.replace(qpos=data.qpos.at[3].set(0.35), qvel=data.qvel * 0)


def _finger_init(model, data, i):
    return data.replace(qvel=data.qvel.at[2].set(-25.0 - 2.0 * i))


class Family(NamedTuple):
    env: str  # the env rolled out
    tasks: List[str]  # tasks whose rewards are checked on its rollouts
    steps: int
    policy: Callable
    init: Callable = None  # (mjx model, data, env index) -> data, for the structured envs
    fast_compile: bool = True


_CARTPOLE = ["CartpoleSwingup", "CartpoleBalance", "CartpoleSwingupSparse", "CartpoleBalanceSparse"]
FAMILIES = {
    "cartpole_swingup": Family("CartpoleSwingup", _CARTPOLE, 150, _cartpole_policy),
    "cartpole_balance": Family("CartpoleBalance", _CARTPOLE, 60, _cartpole_policy),
    "reacher": Family("ReacherEasy", ["ReacherEasy", "ReacherHard"], 60, _reacher_policy),
    "point_mass": Family("PointMass", ["PointMass"], 150, _point_mass_policy),
    "ball_in_cup": Family("BallInCup", ["BallInCup"], 40, _sinusoid, _ball_in_cup_init),
    "finger": Family("FingerSpin", ["FingerSpin"], 40, _sinusoid, _finger_init),
    "cheetah": Family("CheetahRun", ["CheetahRun"], 40, _sinusoid),
    "walker": Family("WalkerWalk", ["WalkerStand", "WalkerWalk", "WalkerRun"], 40, _sinusoid),
    "hopper": Family("HopperHop", ["HopperStand", "HopperHop"], 40, _sinusoid, fast_compile=False),
    "humanoid": Family("HumanoidWalk", ["HumanoidStand", "HumanoidWalk", "HumanoidRun"], 20, _sinusoid),
}


def rollout_family(family: Family, num_envs: int = 4, steps: int = None, seed: int = 0) -> Dict[str, np.ndarray]:
    """Rolls out `family.env` with 2 * num_envs envs (random, then structured actions).

    Returns numpy arrays [T, 2N, ...]: obs, action, next_obs (info["final_obs"]),
    env_reward (state.reward) and, per task, `sim/<task>` (the task env's reward
    of the same step) and `fn/<task>` (the known reward_fn).
    """
    from mujoco import mjx

    from mjxmbrl.envs import make_env, make_vector_env

    steps = family.steps if steps is None else steps
    venv = make_vector_env(family.env, 2 * num_envs, impl="jax", action_repeat=1, auto_reset=False)
    base = venv.env.unwrapped
    task_envs = {name: (base if name == family.env else make_env(name, impl="jax").unwrapped) for name in family.tasks}
    a_size = venv.action_size
    structured = jnp.arange(2 * num_envs) >= num_envs
    idx = jnp.arange(2 * num_envs) % num_envs

    def perturb(state):
        if family.init is None:
            return state

        def one(data, info, obs, i, use):
            new = mjx.forward(base.mjx_model, family.init(base.mjx_model, data, i))
            data = jax.tree_util.tree_map(lambda a, b: jnp.where(use, a, b), new, data)
            return data, jnp.where(use, base._get_obs(data, info), obs)

        data, obs = jax.vmap(one)(state.data, state.info, state.obs, idx, structured)
        return state.replace(data=data, obs=obs)

    def run(key):
        key_reset, key_act = jax.random.split(key)
        state = perturb(venv.reset(key_reset))

        def body(state, inp):
            t, k = inp
            rand = jax.random.uniform(k, (2 * num_envs, a_size), minval=-1.0, maxval=1.0)
            pol = jax.vmap(lambda o, i: family.policy(o, t, i, a_size))(state.obs, idx)
            action = jnp.where(structured[:, None], pol, rand)
            nxt = venv.step(state, action)
            sim = {
                name: jax.vmap(lambda d, a, info: env._get_reward(d, a, info, {}))(nxt.data, action, state.info)
                for name, env in task_envs.items()
            }
            out = {"obs": state.obs, "action": action, "next_obs": nxt.info["final_obs"], "env_reward": nxt.reward}
            out.update({f"sim/{k_}": v.astype(jnp.float32) for k_, v in sim.items()})
            out.update({f"fn/{n}": R.get_reward_fn(n)(out["obs"], action, out["next_obs"]) for n in family.tasks})
            return nxt, out

        _, outs = jax.lax.scan(body, state, (jnp.arange(steps), jax.random.split(key_act, steps)))
        return outs

    key = jax.random.PRNGKey(seed)
    compiled = compile_fast(run, key, fast=family.fast_compile)
    return {k: np.asarray(v) for k, v in compiled(key).items()}


def errors(out: Dict[str, np.ndarray], task: str) -> np.ndarray:
    """|reward_fn - simulator reward| [T, 2N]: random envs first, then structured."""
    return np.abs(out[f"fn/{task}"] - out[f"sim/{task}"])


# ------------------------------------------------------------------ tests ---

N = 4


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_rollout(request):
    fam = FAMILIES[request.param]
    t0 = time.time()
    out = rollout_family(fam, num_envs=N)
    print(f"\n{request.param}: {fam.steps} steps x {2 * N} envs in {time.time() - t0:.1f}s")
    return request.param, fam, out


def test_known_reward_matches_simulator(family_rollout):
    name, fam, out = family_rollout
    assert np.all(np.isfinite(out["next_obs"])), name
    # The rolled-out env's reward is its task's `_get_reward`, the reference used here.
    np.testing.assert_allclose(out["env_reward"], out[f"sim/{fam.env}"], atol=1e-6)
    for task in fam.tasks:
        err = errors(out, task)
        err_random, err_structured = float(err[:, :N].max()), float(err[:, N:].max())
        print(f"  {task}: max abs error random {err_random:.2e} structured {err_structured:.2e} mean {err.mean():.2e}")
        if task in R.EXACT_REWARDS:
            assert err.max() < EXACT_TOL, (task, err_random, err_structured)
        else:
            bound = R.REWARD_ERROR_BOUNDS[task]
            assert err.max() <= bound.max_abs and err.mean() <= bound.mean_abs, (task, err.max(), err.mean(), bound)


def test_rollouts_visit_rewarding_states(family_rollout):
    """The structured rollouts reach states the random ones do not; sparse rewards take both values."""
    name, fam, out = family_rollout
    sim = {task: out[f"sim/{task}"] for task in fam.tasks}
    structured = slice(N, 2 * N)
    if name == "cartpole_swingup":
        # Random actions keep the pole down; pumping swings it past horizontal.
        assert out["next_obs"][:, :N, 1].max() < out["next_obs"][:, structured, 1].max()
        assert out["next_obs"][:, structured, 1].max() > 0.0
    if name == "cartpole_balance":
        for task in ("CartpoleSwingupSparse", "CartpoleBalanceSparse"):
            assert set(np.unique(sim[task])) == {0.0, 1.0}, task
        assert sim["CartpoleBalanceSparse"][:, structured].mean() > sim["CartpoleBalanceSparse"][:, :N].mean()
    if name == "reacher":
        assert set(np.unique(sim["ReacherEasy"])) == {0.0, 1.0}
        assert sim["ReacherHard"][:, structured].max() == 1.0
    if name == "point_mass":
        assert sim["PointMass"][:, structured].mean() > sim["PointMass"][:, :N].mean()
    if name == "ball_in_cup":
        assert set(np.unique(sim["BallInCup"][:, structured])) == {0.0, 1.0}
    if name == "finger":
        assert set(np.unique(sim["FingerSpin"][:, structured])) == {0.0, 1.0}
    for task, r in sim.items():
        if name == "cartpole_swingup" and task.endswith("Sparse"):
            continue  # 150 steps swing the pole up only partly: the sparse rewards are checked on balance rollouts
        assert np.ptp(r) > 0, task  # not a constant reward


def test_tolerance_matches_playground():
    from mujoco_playground._src import reward as pg_reward

    x = jnp.linspace(-4.0, 4.0, 401)
    cases = [
        dict(bounds=(0.0, 0.0), margin=2.0),
        dict(bounds=(-0.25, 0.25)),
        dict(bounds=(1.2, float("inf")), margin=0.6),
        dict(bounds=(float("-inf"), 1.0), margin=0.5, sigmoid="long_tail"),
        dict(bounds=(0.0, 0.0), margin=1.0, sigmoid="quadratic", value_at_margin=0.0),
        dict(bounds=(1.0, float("inf")), margin=0.5, sigmoid="linear", value_at_margin=0.5),
    ]
    cases += [
        dict(bounds=(-0.5, 1.0), margin=1.5, sigmoid=s, value_at_margin=0.2)
        for s in ("gaussian", "hyperbolic", "long_tail", "reciprocal", "cosine", "linear", "quadratic", "tanh_squared")
    ]
    for kw in cases:
        np.testing.assert_allclose(R.tolerance(x, **kw), pg_reward.tolerance(x, **kw), atol=1e-6, err_msg=str(kw))
    # Gradients stay finite at infinite bounds.
    g = jax.grad(lambda v: R.tolerance(v, (1.2, float("inf")), margin=0.6).sum())(x)
    assert np.all(np.isfinite(g))
    with pytest.raises(ValueError):
        R.tolerance(x, bounds=(1.0, 0.0))
    with pytest.raises(ValueError):
        R.tolerance(x, margin=1.0, sigmoid="nope")


def test_planar_model_constants_match_mujoco():
    import mujoco
    from mujoco_playground._src import mjx_env
    from mujoco_playground._src.dm_control_suite import common

    for xml, model in (("cheetah", R._CHEETAH), ("walker", R._WALKER), ("hopper", R._HOPPER)):
        path = mjx_env.ROOT_PATH / "dm_control_suite" / "xmls" / f"{xml}.xml"
        m = mujoco.MjModel.from_xml_string(path.read_text(), common.get_assets())
        assert tuple(m.body(b).name for b in range(1, m.nbody)) == model.names
        for i in range(len(model.names)):
            b = i + 1
            j = m.body_jntadr[b] + m.body_jntnum[b] - 1  # the body's hinge (the root's is rooty)
            assert m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
            assert m.body_parentid[b] - 1 == model.parent[i]
            np.testing.assert_allclose(m.body_quat[b], [1, 0, 0, 0])
            np.testing.assert_allclose(m.body_pos[b][[0, 2]], model.pos[i], atol=1e-12)
            np.testing.assert_allclose(m.jnt_pos[j][[0, 2]], model.jnt_pos[i], atol=1e-12)
            np.testing.assert_allclose(m.jnt_axis[j], [0, model.axis[i], 0])
            np.testing.assert_allclose(m.body_mass[b], model.mass[i], rtol=1e-12)
            np.testing.assert_allclose(m.body_ipos[b][[0, 2]], model.ipos[i], atol=1e-12)
        if xml == "walker":
            capsules = [g for g in range(m.ngeom) if m.geom_bodyid[g] > 0]
            assert len(capsules) == len(R._WALKER_CAPSULES)
            for g, (body, centre, axis, half, radius) in zip(capsules, R._WALKER_CAPSULES):
                assert m.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE and m.geom_bodyid[g] - 1 == body
                mat = np.zeros(9)
                mujoco.mju_quat2Mat(mat, m.geom_quat[g])
                np.testing.assert_allclose(mat.reshape(3, 3)[[0, 2], 2], axis, atol=1e-6)
                np.testing.assert_allclose(m.geom_pos[g][[0, 2]], centre, atol=1e-12)
                np.testing.assert_allclose(m.geom_size[g][:2], [radius, half], atol=1e-12)


def test_registry_and_notes():
    from mjxmbrl.envs import toy

    assert R.get_reward_fn("toy_reach") is toy.reward_fn
    with pytest.raises(KeyError, match="no known reward"):
        R.get_reward_fn("FishSwim")
    tested = {t for fam in FAMILIES.values() for t in fam.tasks} | {"toy_reach"}
    assert tested == set(R.KNOWN_REWARDS)
    assert set(R.REWARD_NOTES) == set(R.REWARD_ERROR_BOUNDS)
    for task, bound in R.REWARD_ERROR_BOUNDS.items():
        assert task not in R.EXACT_REWARDS, task
        assert f"asserted max {bound.max_abs:g}, mean {bound.mean_abs:g}" in R.REWARD_NOTES[task], task
    # Batched inputs of any leading shape.
    from mjxmbrl.envs.registry import ENV_SPECS

    for name, fn in R.KNOWN_REWARDS.items():
        spec = ENV_SPECS[name]
        obs = jnp.zeros((3, 2, spec.obs_size))
        act = jnp.zeros((3, 2, spec.action_size))
        assert fn(obs, act, obs).shape == (3, 2), name


def test_toy_reach_reward():
    from mjxmbrl.envs import make_vector_env

    env = make_vector_env("toy_reach", 4, auto_reset=False)
    state = env.reset(jax.random.PRNGKey(0))
    for k in jax.random.split(jax.random.PRNGKey(1), 5):
        a = jax.random.uniform(k, (4, 2), minval=-1, maxval=1)
        nxt = env.step(state, a)
        np.testing.assert_allclose(R.get_reward_fn("toy_reach")(state.obs, a, nxt.info["final_obs"]), nxt.reward, atol=1e-6)
        state = nxt


def test_module_imports_no_simulator():
    code = "import sys, mjxmbrl.envs.rewards; bad = [m for m in ('mujoco', 'mujoco_playground', 'brax') if m in sys.modules]; print(bad); assert not bad"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
