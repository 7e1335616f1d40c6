"""PlaNet and Grad-MPC as the mpc agent over the RSSM: planner settings, exploration, the experiments."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mjxmbrl.config import load_config
from mjxmbrl.experiments import get_experiment
from mjxmbrl.experiments.gradmpc import TABLE_1, dreamer_update_every, model_rate
from mjxmbrl.planners.base import PlanParams, make_rollout_core
from mjxmbrl.planners.cem import CEMConfig, make_cem
from mjxmbrl.planners.grad import GradConfig, gradient_ascent, make_grad, step_size_schedule
from mjxmbrl.types import ConfigError
from tests.test_planners import integrator_model


def test_step_size_schedule_is_piecewise_over_equal_stages():
    schedule = step_size_schedule(0.05, (0.1, 0.01, 0.005, 0.0001), 40)
    got = [float(schedule(i)) for i in range(40)]
    assert got == pytest.approx([0.1] * 10 + [0.01] * 10 + [0.005] * 10 + [0.0001] * 10)
    assert step_size_schedule(0.05, (), 40) == 0.05
    uneven = step_size_schedule(0.05, (1.0, 2.0), 5)  # stages of 3 and 2 iterations (floor(i * 2 / 5))
    assert [float(uneven(i)) for i in range(5)] == [1.0, 1.0, 1.0, 2.0, 2.0]


def test_sgd_schedule_takes_alg1_plain_steps():
    """a <- clip(a + lr_i grad R(a)) with lr_i from the schedule: checked against the loop by hand."""
    target = jnp.asarray(0.3)

    def objective(a):  # [J, H, A] -> [J]
        return -jnp.sum(jnp.square(a - target), axis=(1, 2))

    start = jnp.full((2, 3, 1), -0.5)
    rates = (0.2, 0.05)
    actions, _ = gradient_ascent(objective, start, optax.sgd(step_size_schedule(0.0, rates, 4)), 4)
    expected = np.asarray(start)
    for i in range(4):
        expected = np.clip(expected + rates[i * 2 // 4] * (-2.0 * (expected - 0.3)), -1, 1)
    np.testing.assert_allclose(actions, expected, rtol=1e-5)


def test_grad_config_checks():
    base = ["agent.name=mpc", "model.name=mlp", "planner.name=grad", "env.name=toy_reach"]
    with pytest.raises(ConfigError, match="planner.learning_rates must all be > 0"):
        load_config(None, base + ["planner.learning_rates=[0.1,0]"])
    with pytest.raises(ConfigError, match="4 stages but planner.iterations is 2"):
        load_config(None, base + ["planner.iterations=2", "planner.learning_rates=[0.1,0.01,0.005,0.0001]"])
    with pytest.raises(ConfigError, match="planner.optimizer: 'rmsprop' is not one of adam, sgd"):
        load_config(None, base + ["planner.optimizer=rmsprop"])
    with pytest.raises(ConfigError, match="agent.exploration_noise must be >= 0"):
        load_config(None, base + ["agent.exploration_noise=-0.1"])


def test_gradmpc_candidates_improve_the_predicted_return_with_the_paper_schedule():
    """Alg. 1 with plain steps and the A.7 schedule raises every candidate's return on a fixed model."""
    core = make_rollout_core(integrator_model(target=0.8), 1.0)
    cfg = dataclasses.replace(GradConfig(), num_candidates=8, horizon=4, iterations=8, optimizer="sgd",
                              learning_rates=(0.1, 0.01), warm_start=False)
    planner = make_grad(cfg, core, None, 1)
    _, _, metrics = jax.jit(planner.plan)(jax.random.PRNGKey(0), planner.init(None), jnp.zeros(1), None,
                                          PlanParams(model={}))
    assert float(metrics["planner/return_gain"]) > 0.05


def test_cem_init_mean_zero_starts_from_zero_not_the_proposal():
    """alpha_mean ~ 0 keeps mu where it started: zeros (PlaNet) or the proposal's rollout (Byravan Alg. 3)."""
    core = make_rollout_core(integrator_model(target=0.8), 1.0)

    def proposal(pp, obs, key, progress=0.0):
        return jnp.full((obs.shape[0], 1), 0.9)

    first_actions = {}
    for init_mean in ("zero", "proposal"):
        cfg = dataclasses.replace(CEMConfig(), num_samples=16, horizon=3, iterations=1, alpha_mean=1e-6,
                                  warm_start=False, init_mean=init_mean)
        planner = make_cem(cfg, core, proposal, 1)
        action, _, _ = planner.plan(jax.random.PRNGKey(0), planner.init(None), jnp.zeros(1), None, PlanParams(model={}))
        first_actions[init_mean] = float(action[0])
    assert first_actions["zero"] == pytest.approx(0.0, abs=1e-4)
    assert first_actions["proposal"] == pytest.approx(0.9, abs=1e-4)


def test_exploration_noise_perturbs_only_explore_actions():
    from mjxmbrl.agents import EVAL, EXPLORE
    from mjxmbrl.train import build, init_state

    def acts(noise):
        cfg = load_config(None, ["agent.name=mpc", "model.name=mlp", "planner.name=cem", "env.name=toy_reach",
                                 "env.num_envs=64", "planner.num_samples=8", "planner.horizon=3",
                                 f"agent.exploration_noise={noise}"])
        components = build(cfg)
        ts = init_state(components)
        act = jax.jit(components.agent.act, static_argnames="mode")
        return [np.asarray(act(ts.key, ts.agent, ts.carry, ts.env_state, ts.env_steps, mode=m)[0]) for m in (EXPLORE, EVAL)]

    quiet_explore, quiet_eval = acts(0.0)
    noisy_explore, noisy_eval = acts(0.3)
    np.testing.assert_array_equal(quiet_explore, quiet_eval)
    np.testing.assert_array_equal(noisy_eval, quiet_eval)  # the plan itself is unchanged
    assert np.all(np.abs(noisy_explore) <= 1.0) and not np.allclose(noisy_explore, quiet_explore)
    assert 0.1 < np.std(noisy_explore - quiet_explore) < 0.6


def test_model_rate_is_planets_collect_interval():
    assert [model_rate(r) for r in (2, 4, 6, 8)] == [(1, 5), (2, 5), (3, 5), (4, 5)]
    with pytest.raises(ValueError):
        model_rate(3)


@pytest.mark.parametrize("name", ["gradmpc-dmc100k", "gradmpc-sparse", "gradmpc-candidates"])
def test_every_gradmpc_cell_builds_at_every_budget(tmp_path, name):
    from mjxmbrl.cli.reproduce import plan_runs

    e = get_experiment(name)
    for budget in e.budgets.values():
        planned = plan_runs(e, budget, 1, tmp_path)
        assert len(planned) == len(e.cells)
        for run in planned:
            cfg = run.cfg
            if cfg.agent.name == "mpc":
                pixels = run.cell.setting == "pixels"
                assert cfg.env.pixels == cfg.model.pixels == pixels
                updates, every = model_rate(cfg.env.action_repeat)
                if pixels and budget.name == "small":  # the CPU pixel rate: 16 x 32 frames per 64 env steps
                    updates, every = 1, 8
                    assert (cfg.model.batch_size, cfg.model.seq_len) == (16, 32)
                elif pixels and budget.name == "paper":  # A.7's batch
                    assert (cfg.model.batch_size, cfg.model.seq_len, cfg.model.free_nats) == (50, 50, 3.0)
                assert (cfg.model.updates_per_step, cfg.train.update_every) == (updates, every)
                assert cfg.model.name == "rssm" and cfg.planner.reward == "model"
                assert cfg.agent.exploration_noise == 0.3
                if budget.name == "paper":
                    assert cfg.planner.horizon == 12
                    assert getattr(cfg.planner, "num_samples", None) in (None, 1000)
            if cfg.agent.name == "dreamer":
                repeat = cfg.env.action_repeat
                if budget.name == "paper":  # Dreamer's collect interval and batch
                    updates, every = model_rate(repeat)
                    assert (cfg.train.updates_per_step, cfg.model.updates_per_step, cfg.train.update_every) == (updates, updates, every)
                    assert cfg.agent.batch_size == 50
                elif budget.name == "small":  # the configs' CPU rate, one update per 160 env steps on every task
                    assert cfg.train.update_every == dreamer_update_every(repeat)
                    assert abs(cfg.train.update_every * repeat - 160) <= repeat / 2
    assert not any(tmp_path.iterdir())
    if name == "gradmpc-dmc100k":
        assert {c.task for c in e.cells} == set(TABLE_1)
        paper = {c.id: c for c in e.cells}
        assert (paper["gradmpc-reacher_easy"].published.mean, paper["planet-walker_walk"].published.mean) == (663, 221)
        assert paper["dreamer-cheetah_run"].published.mean == 235
        # Table 1's own (pixel) setting, beside the proprioceptive cells, compared with the same published column
        assert (paper["planet-cartpole_swingup-pixels"].published.mean, paper["gradmpc-cartpole_swingup-pixels"].published.mean) == (563, 470)
    if name == "gradmpc-sparse":
        assert e.metrics == ("eval/return", "eval/policy_return")
        assert e.cell("policy_gradmpc-ball_in_cup_catch").published.mean == 725.6
