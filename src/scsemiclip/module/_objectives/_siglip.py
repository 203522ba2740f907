"""SigLIP baseline (docs/method.md): pairwise sigmoid loss between the student and a trainable teacher adapter."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scsemiclip._docs import doc_h, doc_params, doc_z_adapted

from ._base import ObjectiveOutput, distributed_world, gather_batch, global_targets, register_objective
from ._clip import CLIPObjective


def sigmoid_loss(
    h: torch.Tensor,
    p: torch.Tensor,
    *,
    scale: torch.Tensor,
    bias: torch.Tensor,
    labels: torch.Tensor | None = None,
    gather: bool = False,
) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al., ICCV 2023) on L2-normalised vectors.

    ``L = mean_ij softplus(-y_ij (scale <h_i, p_j> - bias))`` with ``y_ij = +1`` for ``i == j`` and ``-1``
    otherwise (``softplus(-x) = -log sigmoid(x)``; SigLIP writes ``+ b`` with ``b = -bias``).

    Parameters
    ----------
    h, p
        ``(B, d)`` the two sides, row ``i`` of each forming the positive pair.
    scale
        Inverse temperature ``t`` (0-d tensor).
    bias
        Bias ``b`` (0-d tensor).
    labels
        ``(B,)`` pairing-key codes; if given, the pairs ``i != j`` with ``labels[i] == labels[j]`` (false
        negatives) are left out of the mean.
    gather
        In a distributed run, pair this rank's ``h`` with the ``p`` of all ranks (all-gathered with gradients, see
        :func:`~._base.info_nce`); the rank losses average to the loss of one process on the concatenated batch.

    Returns
    -------
    The loss (0-d).
    """
    target, same = global_targets(h.shape[0], labels, gather=gather, device=h.device)
    pn = F.normalize(p, dim=1)
    logits = scale * (F.normalize(h, dim=1) @ (gather_batch(pn) if gather else pn).T) - bias
    positive = torch.zeros(logits.shape, dtype=torch.bool, device=h.device)
    positive[torch.arange(h.shape[0], device=h.device), target] = True
    pair_loss = F.softplus(torch.where(positive, -logits, logits))
    if same is None:
        return pair_loss.mean()
    kept = pair_loss[~same]
    if not gather:
        return kept.mean()
    # the mean over the kept pairs of all ranks: the ranks' losses average to it
    n_kept = gather_batch(torch.tensor([kept.numel()], device=h.device)).sum()
    return kept.sum() * distributed_world()[1] / n_kept


@register_objective("siglip")
class SigLIPObjective(CLIPObjective):
    """Sigmoid loss between ``f_S(z_S)`` and a teacher adapter ``f_T(z_T)`` (Zhai et al., 2023).

    The inverse temperature ``t = 1 / temperature`` (10 at the default 0.1, SigLIP's initial value) is fixed, or
    learned as ``log t`` with ``learn_temperature=True``; the bias ``b`` is learned from 0 (docs/method.md; SigLIP
    starts from -10 in its sign convention). Pairs sharing a pairing key off the diagonal can be left out of the loss
    (``mask_same_key=True``).

    Parameters
    ----------
    teacher_lr_scale
        Learning rate of the teacher adapter relative to the student adapter's (paper appendix A.2: 1e-8 vs 0.1,
        i.e. practically frozen at its random initialisation).
    **kwargs
        ``teacher_hidden_dims`` (see :class:`~._clip.CLIPObjective`), ``learn_temperature``, ``mask_same_key``,
        ``gather_negatives`` and the common arguments of :class:`~scsemiclip.module.Objective`; ``symmetric`` does
        not apply (the loss is symmetric).
    """

    def __init__(self, *, teacher_lr_scale: float = 1e-7, **kwargs) -> None:
        if kwargs.pop("symmetric", False):
            raise ValueError("`symmetric` does not apply to 'siglip': the sigmoid loss is symmetric already.")
        super().__init__(**kwargs)
        self.bias = nn.Parameter(torch.zeros(()))
        self.lr_scales["teacher_adapter"] = teacher_lr_scale

    @doc_params(doc_h=doc_h, doc_z_adapted=doc_z_adapted)
    def forward(self, h: torch.Tensor, z: torch.Tensor, *, labels: torch.Tensor) -> ObjectiveOutput:
        """Sigmoid loss (:func:`sigmoid_loss`); logs the bias (and the temperature when learned).

        Parameters
        ----------
        {doc_h}
        {doc_z_adapted}
        labels
            ``(B,)`` pairing-key codes; used only with ``mask_same_key`` (the pairs ``i != j`` of the same key are
            left out of the loss).

        Returns
        -------
        The loss and the logs ``bias`` (and ``temperature``, ``1 / scale``, when learned).
        """
        scale = self.scale()
        loss = sigmoid_loss(
            h,
            self.teacher_embedding(z),
            scale=scale,
            bias=self.bias,
            labels=labels if self.mask_same_key else None,
            gather=self.gather_negatives,
        )
        logs = {"bias": self.bias.detach()}
        if self.learn_temperature:
            logs["temperature"] = 1.0 / scale.detach()
        return ObjectiveOutput(loss, logs)
