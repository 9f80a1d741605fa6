"""The pandas boundary of tsssm: user data <-> :class:`Panel` arrays.

:func:`to_panel` turns a Series, a wide or long DataFrame, a dict of Series or an array into a
:class:`Panel` (a pytree of NumPy arrays: ``times``, ``values``, ``mask``, ``inputs``) and a
static :class:`PanelMeta`; :meth:`PanelMeta.frame` maps model outputs back to pandas;
:func:`future_times` and :func:`future_inputs` describe the forecast period. The conventions
are documented in ``docs/dev/data_model.md``.
"""

from tsssm.data._convert import to_panel
from tsssm.data._future import future_inputs, future_times
from tsssm.data._panel import Panel, PanelMeta

__all__ = ["Panel", "PanelMeta", "future_inputs", "future_times", "to_panel"]
