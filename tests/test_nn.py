"""nn: the value ensemble's shapes, independent members, and each member as a plain Value network."""

import jax
import jax.numpy as jnp
import numpy as np

from mjxmbrl.nn import Value, ValueEnsemble


def test_value_ensemble_shapes_and_members():
    net = ValueEnsemble(num_values=4, hidden_sizes=(16, 16))
    obs = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    params = net.init(jax.random.PRNGKey(1), obs)
    assert all(leaf.shape[0] == 4 for leaf in jax.tree.leaves(params))
    values = jax.jit(net.apply)(params, obs)
    assert values.shape == (4, 5)
    assert net.apply(params, obs[0]).shape == (4,)
    # members start from different weights, so they disagree (POLO's ensemble needs the spread)
    assert float(jnp.min(jnp.std(values, axis=0))) > 1e-4
    # member k is a plain Value network with the k-th slice of the stacked parameters
    single = Value(hidden_sizes=(16, 16))
    for k in range(4):
        member = jax.tree.map(lambda x: x[k], params["params"]["members"])
        np.testing.assert_allclose(single.apply({"params": member}, obs), values[k], rtol=1e-6, atol=1e-6)
