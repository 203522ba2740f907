"""Semi-Clipped (docs/method.md): InfoNCE between the student adapter output and the frozen, corrected teacher."""

from __future__ import annotations

from ._base import ContrastiveObjective, register_objective


@register_objective("semiclipped")
class SemiClippedObjective(ContrastiveObjective):
    """One-sided InfoNCE of ``f_S(z_S)`` against the fixed teacher embedding; there is no teacher adapter.

    Parameters
    ----------
    **kwargs
        ``symmetric``, ``learn_temperature``, ``mask_same_key`` (see :class:`ContrastiveObjective`) and the
        common arguments of :class:`~scsemiclip.module.Objective`.
    """
