"""Deep CCA baseline (docs/method.md): maximise the total canonical correlation of the two adapters' 30-d outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from scsemiclip._core import mlp
from scsemiclip._docs import doc_labels_unused, doc_params, doc_z_adapted

from ._base import Objective, ObjectiveOutput, register_objective


def _inv_sqrt(s: torch.Tensor, *, eps: float) -> torch.Tensor:
    """``s^(-1/2)`` of a symmetric positive (semi-)definite matrix, eigenvalues floored at ``eps``."""
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp(min=eps).rsqrt()) @ v.T


def dcca_loss(a: torch.Tensor, b: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """Minus the total canonical correlation of two views (Andrew et al., ICML 2013, all singular values).

    ``L = -||S11^-1/2 S12 S22^-1/2||_*`` (the sum of the singular values, i.e. of the canonical correlations)
    with the centred covariances ``S11 = Cov(a) + eps I``, ``S22 = Cov(b) + eps I``, ``S12 = Cov(a, b)``
    (``1 / (B - 1)``), computed in float64.

    Parameters
    ----------
    a, b
        ``(B, d1)`` and ``(B, d2)`` the two views (``B >= 2``), row ``i`` of each forming a pair.
    eps
        Ridge added to the covariances (and floor of their eigenvalues).

    Returns
    -------
    The loss (0-d, in the dtype of ``a``); ``-min(d1, d2)`` for perfectly correlated views.
    """
    n = a.shape[0]
    if n < 2:
        raise ValueError(f"DCCA needs at least 2 samples per minibatch, got {n}.")
    a64, b64 = a.double(), b.double()
    ac, bc = a64 - a64.mean(dim=0), b64 - b64.mean(dim=0)
    s11 = ac.T @ ac / (n - 1) + eps * torch.eye(a.shape[1], dtype=torch.float64, device=a.device)
    s22 = bc.T @ bc / (n - 1) + eps * torch.eye(b.shape[1], dtype=torch.float64, device=b.device)
    s12 = ac.T @ bc / (n - 1)
    t = _inv_sqrt(s11, eps=eps) @ s12 @ _inv_sqrt(s22, eps=eps)
    return -torch.linalg.svdvals(t).sum().to(a.dtype)


@register_objective("dcca")
class DCCAObjective(Objective):
    """Deep CCA between ``f_S(z_S)`` and a teacher adapter ``f_T(z_T)``, both 30-dimensional (Andrew et al., 2013).

    As in the paper's baseline (Lan et al., 2020 use DCCA the same way): output dimension 30 on both sides, all
    singular values, eps 1e-6. The student adapter's output (the embedding written by the model) is 30-d.

    Parameters
    ----------
    teacher_hidden_dims
        Hidden layer sizes of the teacher adapter ``d_T -> ... -> 30`` (paper appendix A.2: 1024, 1024).
    teacher_lr_scale
        Learning rate of the teacher adapter relative to the student adapter's (paper appendix A.2: 1e-8 vs
        1e-6).
    eps
        See :func:`dcca_loss`.
    **kwargs
        The common arguments of :class:`~scsemiclip.module.Objective` (``temperature`` is not used).
    """

    output_dim: ClassVar[int | None] = 30

    def __init__(
        self,
        *,
        teacher_hidden_dims: Sequence[int] = (1024, 1024),
        teacher_lr_scale: float = 1e-2,
        eps: float = 1e-6,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.teacher_adapter = mlp(self.d_teacher, teacher_hidden_dims, self.d_student)
        self.lr_scales["teacher_adapter"] = teacher_lr_scale
        self.eps = eps

    @doc_params(doc_labels_unused=doc_labels_unused, doc_z_adapted=doc_z_adapted)
    def forward(self, h: torch.Tensor, z: torch.Tensor, *, labels: torch.Tensor) -> ObjectiveOutput:
        """DCCA loss (:func:`dcca_loss`); logs the mean canonical correlation.

        Parameters
        ----------
        h
            ``(B, d_student)`` student adapter outputs (``d_student`` = 30, ``B >= 2``).
        {doc_z_adapted}
        {doc_labels_unused}

        Returns
        -------
        The loss (minus the total canonical correlation) and the log ``mean_correlation`` (the total divided by
        ``d_student``).
        """
        loss = dcca_loss(h, self.teacher_adapter(z), eps=self.eps)
        return ObjectiveOutput(loss, {"mean_correlation": -loss.detach() / self.d_student})
