"""`GeneratedModelEnv`: the `MjxEnv` properties of a task whose MJCF is written in code (no XML file).

A subclass sets `self._mj_model`, `self._mjx_model` and the class attribute `MODEL_NAME` (shown as
`xml_path`); POLO's point-mass worlds and Byravan et al.'s corridor ant use it.
"""

from __future__ import annotations

import mujoco
from mujoco import mjx
from mujoco_playground._src import mjx_env


class GeneratedModelEnv(mjx_env.MjxEnv):
    MODEL_NAME = "model"

    @property
    def xml_path(self) -> str:
        return f"<generated: {self.MODEL_NAME}>"

    @property
    def action_size(self) -> int:
        return self.mjx_model.nu

    @property
    def mj_model(self) -> mujoco.MjModel:
        return self._mj_model

    @property
    def mjx_model(self) -> mjx.Model:
        return self._mjx_model
