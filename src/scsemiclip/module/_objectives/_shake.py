"""SHAKE baseline (docs/method.md): knowledge distillation through a trainable shadow head of the teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scsemiclip._docs import doc_h, doc_labels_ce, doc_params

from ._base import ObjectiveOutput, register_objective
from ._kd import KDObjective, distillation_kl


@register_objective("shake")
class SHAKEObjective(KDObjective):
    """Shadow knowledge distillation (Li & Jin, NeurIPS 2022) from a teacher classifier of the pairing keys.

    A shadow head ``u`` (linear, on the frozen teacher embedding, trained from a random initialisation as in the
    authors' code) stands between the frozen teacher classifier ``t`` (trained in :meth:`prepare`, as for
    ``"kd"``) and the student head ``s = g(h)``. With the distillation term
    ``KD_T(a <- b) = T^2 KL(softmax(b / T) || softmax(a / T))`` (target ``b`` detached)::

        L = CE(s, y) + alpha KD_T(s <- u)        (the student learns from the shadow head)
              + beta KD_T(u <- s)                (the shadow head is pulled towards the student)
              + KD_T(u <- t)                     (and anchored on the teacher)

    Parameters
    ----------
    beta
        Weight of the student-to-shadow term (paper appendix A.2: 0.001).
    shadow_lr_scale
        Learning rate of the shadow head relative to the student adapter's (paper: 1e-7 vs 0.1, which leaves it
        practically at its random initialisation).
    **kwargs
        ``alpha`` (10), ``kd_temperature`` (9), ``classifier_lr_scale``, ``pretrain_steps``, ``pretrain_lr``,
        ``student_pretrain_steps``, ``student_pretrain_lr`` (see :class:`~._kd.KDObjective`: the teacher
        classifier, and the student adapter with its classifier, are pre-trained on the pairing keys) and the
        common arguments of :class:`~scsemiclip.module.Objective`.
    """

    def __init__(self, *, beta: float = 1e-3, shadow_lr_scale: float = 1e-6, **kwargs) -> None:
        super().__init__(**kwargs)
        self.beta = beta
        self.shadow_head = nn.Linear(self.d_teacher, self.n_classes)
        self.lr_scales["shadow_head"] = shadow_lr_scale

    @doc_params(doc_h=doc_h, doc_labels_ce=doc_labels_ce)
    def forward(self, h: torch.Tensor, z: torch.Tensor, *, labels: torch.Tensor) -> ObjectiveOutput:
        """The SHAKE loss; logs its four terms.

        Parameters
        ----------
        {doc_h}
        z
            ``(B, d_T)`` the frozen teacher partner of every sample, scored by the shadow head and the teacher
            classifier.
        {doc_labels_ce}

        Returns
        -------
        The loss and the logs (unweighted) ``cross_entropy``, ``distillation`` (``KD_T(s <- u)``),
        ``reverse_distillation`` (``KD_T(u <- s)``) and ``shadow_anchor`` (``KD_T(u <- t)``).
        """
        t = self.kd_temperature
        logits = self.student_classifier(h)
        shadow = self.shadow_head(z)
        ce = F.cross_entropy(logits, labels)
        kd = distillation_kl(logits, shadow, temperature=t)
        reverse = distillation_kl(shadow, logits, temperature=t)
        anchor = distillation_kl(shadow, self.teacher_classifier(z), temperature=t)
        loss = ce + self.alpha * kd + self.beta * reverse + anchor
        logs = {"cross_entropy": ce, "distillation": kd, "reverse_distillation": reverse, "shadow_anchor": anchor}
        return ObjectiveOutput(loss, {k: v.detach() for k, v in logs.items()})
