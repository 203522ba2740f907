"""CLIP baseline (docs/method.md): both sides get an adapter, same InfoNCE as Semi-Clipped."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from scsemiclip._core import mlp
from scsemiclip._docs import doc_params, doc_z

from ._base import ContrastiveObjective, register_objective


@register_objective("clip")
class CLIPObjective(ContrastiveObjective):
    """InfoNCE between the student adapter output and a trainable teacher adapter ``d_T -> 1024 -> 1024 -> d``.

    Parameters
    ----------
    teacher_hidden_dims
        Hidden layer sizes of the teacher adapter (paper appendix A.2: 1024, 1024).
    **kwargs
        ``symmetric``, ``learn_temperature``, ``mask_same_key``, ``gather_negatives`` (see
        :class:`ContrastiveObjective`) and the common arguments of :class:`~scsemiclip.module.Objective`.
    """

    def __init__(self, *, teacher_hidden_dims: Sequence[int] = (1024, 1024), **kwargs) -> None:
        super().__init__(**kwargs)
        self.teacher_adapter = mlp(self.d_teacher, teacher_hidden_dims, self.d_student)

    @doc_params(doc_z=doc_z)
    def teacher_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """The teacher adapter applied to the frozen teacher embedding.

        Parameters
        ----------
        {doc_z}

        Returns
        -------
        ``(B, d_student)`` the teacher adapter's output.
        """
        return self.teacher_adapter(z)
