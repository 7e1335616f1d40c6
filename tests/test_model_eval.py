"""model-eval pieces: the least-squares baseline, held-out windows, the error measure."""

import jax
import jax.numpy as jnp
import numpy as np

from mjxmbrl.cli.model_eval import (
    _baseline_predictions,
    error_by_horizon,
    eval_windows,
    fit_linear,
    make_window_sampler,
)
from mjxmbrl.types import Transition


def linear_episodes(e=4, t=30, d=3, a=2, seed=0):
    rng = np.random.default_rng(seed)
    A = 0.1 * rng.normal(size=(d, d))
    B = rng.normal(size=(a, d))
    obs = np.zeros((e, t, d), np.float32)
    nxt = np.zeros_like(obs)
    act = rng.uniform(-1, 1, size=(e, t, a)).astype(np.float32)
    s = rng.normal(size=(e, d))
    for i in range(t):
        obs[:, i] = s
        s = s + s @ A + act[:, i] @ B + 0.5
        nxt[:, i] = s
    zeros = np.zeros((e, t), np.float32)
    return Transition(obs, act, zeros, nxt, zeros, zeros), np.ones((e, t), np.float32), (A, B)


def test_least_squares_baseline_recovers_a_linear_system():
    data, valid, (A, B) = linear_episodes()
    w = fit_linear(data, valid)
    np.testing.assert_allclose(w[:3], A, atol=1e-4)
    np.testing.assert_allclose(w[3:5], B, atol=1e-4)
    np.testing.assert_allclose(w[5], 0.5, atol=1e-4)
    obs0, actions, targets = eval_windows(data, valid, 5, 5)
    preds = _baseline_predictions(w, obs0, actions)
    assert error_by_horizon(preds["linear (least squares)"], targets, np.ones(3)).max() < 1e-6
    assert error_by_horizon(preds["no change"], targets, np.ones(3))[0] > 0.1


def test_eval_windows_stay_inside_one_episode():
    data, valid, _ = linear_episodes(e=2, t=12)
    terminated = np.zeros((2, 12), np.float32)
    terminated[0, 6] = 1.0  # episode 0 ends at step 6; later steps are frozen junk
    valid[0, 7:] = 0.0
    data = data._replace(terminated=terminated)
    obs0, _, _ = eval_windows(data, valid, 4, 2)
    # episode 0: starts 0, 2 (window 2..5 ends before the terminal; 4..7 crosses it); episode 1: 0, 2, 4, 6, 8
    assert obs0.shape[0] == 2 + 5
    np.testing.assert_array_equal(obs0[:2], data.obs[0, [0, 2]])


def test_window_sampler_masks_after_episode_end_and_invalid_steps():
    data, valid, _ = linear_episodes(e=1, t=10)
    data = data._replace(terminated=np.zeros((1, 10), np.float32))
    data.terminated[0, 3] = 1.0
    valid[0, 4:] = 0.0
    sample = make_window_sampler(jax.tree.map(jnp.asarray, data), jnp.asarray(valid), 4, 64)
    batch, mask = sample(jax.random.PRNGKey(0))
    for b in range(64):
        start = int(np.argwhere(np.all(np.asarray(data.obs[0]) == np.asarray(batch.obs[b, 0]), axis=1))[0, 0])
        expected = [1.0 if start + i <= 3 else 0.0 for i in range(4)]
        np.testing.assert_array_equal(np.asarray(mask[b]), expected)
