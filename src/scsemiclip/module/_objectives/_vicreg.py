"""VICReg baseline (docs/method.md): variance-invariance-covariance regularisation between the two adapters."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from scsemiclip._core import mlp
from scsemiclip._docs import doc_labels_unused, doc_params, doc_z_adapted

from ._base import Objective, ObjectiveOutput, register_objective


def _variance(x: torch.Tensor, *, eps: float) -> torch.Tensor:
    """VICReg's variance hinge ``mean_j max(0, 1 - sqrt(Var(x_j) + eps))`` (unbiased variance)."""
    return F.relu(1.0 - torch.sqrt(x.var(dim=0) + eps)).mean()


def _covariance(x: torch.Tensor) -> torch.Tensor:
    """VICReg's covariance term: the squared off-diagonal entries of ``Cov(x)`` (unbiased) summed, over ``d``."""
    n, d = x.shape
    xc = x - x.mean(dim=0)
    cov = xc.T @ xc / (n - 1)
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d


def vicreg_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = 1e-4,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The VICReg loss of two branches (Bardes et al., ICLR 2022, eq. 6).

    ``L = sim_weight * MSE(a, b) + var_weight * (v(a) + v(b)) + cov_weight * (c(a) + c(b))`` with the variance
    hinge ``v(x) = mean_j max(0, 1 - sqrt(Var(x_j) + eps))`` (target standard deviation 1) and the covariance term
    ``c(x) = sum_{i != j} Cov(x)_ij^2 / d``. The MSE is the mean over samples and dimensions (as the authors' code;
    the paper's ``s`` sums over dimensions). The authors' code halves the two variance terms; the paper does not.

    Parameters
    ----------
    a, b
        ``(B, d)`` the two branches (``B >= 2``), row ``i`` of each forming a positive pair.
    sim_weight, var_weight, cov_weight
        Weights ``lambda``, ``mu``, ``nu`` (the paper's defaults 25, 25, 1).
    eps
        Added to the variance under the square root.

    Returns
    -------
    The loss (0-d) and its three terms, detached (``invariance``, ``variance``, ``covariance``).
    """
    if a.shape[0] < 2:
        raise ValueError(f"VICReg needs at least 2 samples per minibatch, got {a.shape[0]}.")
    invariance = F.mse_loss(a, b)
    variance = _variance(a, eps=eps) + _variance(b, eps=eps)
    covariance = _covariance(a) + _covariance(b)
    loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance
    terms = {"invariance": invariance.detach(), "variance": variance.detach(), "covariance": covariance.detach()}
    return loss, terms


@register_objective("vicreg")
class VICRegObjective(Objective):
    """VICReg between ``f_S(z_S)`` and a teacher adapter ``f_T(z_T)`` (Bardes et al., 2022), on both branches.

    Parameters
    ----------
    teacher_hidden_dims
        Hidden layer sizes of the teacher adapter ``d_T -> ... -> d_T`` (paper appendix A.2: 1024, 1024).
    teacher_lr_scale
        Learning rate of the teacher adapter relative to the student adapter's (paper appendix A.2: 1e-8 vs 0.1).
    sim_weight, var_weight, cov_weight, eps
        Loss weights and variance epsilon, see :func:`vicreg_loss`.
    **kwargs
        The common arguments of :class:`~scsemiclip.module.Objective` (``temperature`` is not used).
    """

    def __init__(
        self,
        *,
        teacher_hidden_dims: Sequence[int] = (1024, 1024),
        teacher_lr_scale: float = 1e-7,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        eps: float = 1e-4,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.teacher_adapter = mlp(self.d_teacher, teacher_hidden_dims, self.d_student)
        self.lr_scales["teacher_adapter"] = teacher_lr_scale
        self.loss_kwargs = {"sim_weight": sim_weight, "var_weight": var_weight, "cov_weight": cov_weight, "eps": eps}

    @doc_params(doc_labels_unused=doc_labels_unused, doc_z_adapted=doc_z_adapted)
    def forward(self, h: torch.Tensor, z: torch.Tensor, *, labels: torch.Tensor) -> ObjectiveOutput:
        """VICReg loss (:func:`vicreg_loss`) of the student adapter output and the teacher adapter's; logs its terms.

        Parameters
        ----------
        h
            ``(B, d_student)`` student adapter outputs (``B >= 2``).
        {doc_z_adapted}
        {doc_labels_unused}

        Returns
        -------
        The loss and the logs ``invariance``, ``variance`` and ``covariance`` (unweighted; the last two summed
        over both branches).
        """
        loss, terms = vicreg_loss(h, self.teacher_adapter(z), **self.loss_kwargs)
        return ObjectiveOutput(loss, terms)
