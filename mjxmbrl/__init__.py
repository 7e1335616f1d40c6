"""mjxmbrl: model-based RL with planning on MuJoCo MJX, end to end in JAX."""
__version__ = "0.1.0"
