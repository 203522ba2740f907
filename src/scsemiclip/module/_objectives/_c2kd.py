"""C2KD baseline (docs/method.md): bidirectional distillation through proxy heads with on-the-fly sample selection."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scsemiclip._core import mlp
from scsemiclip._docs import doc_h, doc_labels_classes, doc_params, doc_prepare

from ._base import Objective, ObjectiveOutput, register_objective
from ._kd import check_n_classes, distillation_kl, fit_classifier, set_student_pretraining

#: Largest number of sign comparisons :func:`kendall_tau` holds in memory at once.
_KENDALL_CHUNK = 1 << 24


def kendall_tau(a: torch.Tensor, b: torch.Tensor, *, max_pairs: int | None = None) -> torch.Tensor:
    """Kendall's rank correlation (tau-a) between the rows of ``a`` and of ``b``, row by row.

    ``tau_i = mean_{k < l} sign(a_ik - a_il) sign(b_ik - b_il)`` over the ``C (C - 1) / 2`` column pairs, or over
    ``max_pairs`` of them evenly spaced in their row-major order when there are more (a deterministic estimate
    whose standard error is at most about ``1 / sqrt(max_pairs)``); computed without gradients in chunks of rows.

    Parameters
    ----------
    a, b
        ``(B, C)`` scores (``C >= 2``).
    max_pairs
        Largest number of column pairs compared; ``None``: all.

    Returns
    -------
    ``(B,)`` correlations in ``[-1, 1]``.
    """
    n_cols = a.shape[1]
    if n_cols < 2:
        raise ValueError(f"Kendall's tau needs at least 2 columns, got {n_cols}.")
    first, second = torch.triu_indices(n_cols, n_cols, 1, device=a.device)
    if max_pairs is not None and first.numel() > max_pairs:
        keep = torch.linspace(0, first.numel() - 1, max_pairs, device=a.device).long()
        first, second = first[keep], second[keep]
    rows = max(1, _KENDALL_CHUNK // first.numel())
    with torch.no_grad():
        out = [
            (torch.sign(ai[:, first] - ai[:, second]) * torch.sign(bi[:, first] - bi[:, second])).mean(dim=1)
            for ai, bi in zip(a.split(rows), b.split(rows), strict=True)
        ]
    return torch.cat(out)


def non_target_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *, temperature: float
) -> torch.Tensor:
    """Per-sample distillation term (:func:`~._kd.distillation_kl`) on the non-target classes only.

    The target class of every sample is removed from both sets of logits before the softmax (C2KD's non-target
    knowledge; the authors' code zeroes the target logit instead).

    Parameters
    ----------
    student_logits, teacher_logits
        ``(B, C)`` logits (``C >= 2``); the teacher's are detached.
    labels
        ``(B,)`` target classes.
    temperature
        Softening temperature.

    Returns
    -------
    ``(B,)`` ``T^2 KL`` of the teacher's non-target distribution to the student's.
    """
    n, n_classes = student_logits.shape
    keep = ~F.one_hot(labels, n_classes).bool()
    return distillation_kl(
        student_logits[keep].view(n, n_classes - 1),
        teacher_logits[keep].view(n, n_classes - 1),
        temperature=temperature,
        reduction="none",
    )


@register_objective("c2kd")
class C2KDObjective(Objective):
    """Customised cross-modal knowledge distillation (Huo et al., CVPR 2024) on the pairing keys.

    Each side has a classifier and a proxy head (linear, ``C`` outputs) on its features: ``h`` for the student,
    ``f_T(z)`` for the teacher (``f_T`` a teacher adapter, pre-trained with the teacher classifier to predict the
    pairing keys in :meth:`prepare`; the student adapter is pre-trained likewise with the student classifier, see
    :meth:`student_pretraining_loss`). With ``KD_T(a <- b)`` the distillation term of :func:`~._kd.distillation_kl`
    (target ``b`` detached) and ``s, s', t, t'`` the student and teacher classifier and proxy logits::

        L = CE(s, y) + KD_T(s' <- s) + KD_T(s <- s')          (student and its proxy, bidirectional)
          + CE(t, y) + KD_T(t' <- t) + KD_T(t <- t')          (teacher and its proxy, bidirectional)
          + mean_i m_i [NT_T(s'_i <- t'_i) + NT_T(t'_i <- s'_i)]   (on-the-fly selection distillation)

    where ``NT_T`` is the same term on the non-target classes (:func:`non_target_kl`) and ``m_i = 1`` when the
    Kendall rank correlation of ``t'_i`` and ``s'_i`` exceeds ``tau_threshold`` (samples whose soft labels
    disagree are filtered out); the mean is over the whole minibatch, as in the authors' code.

    Parameters
    ----------
    kd_temperature
        Softening temperature ``T`` (paper appendix A.2: 2). The common ``temperature`` (InfoNCE's) is not used.
    tau_threshold
        Kendall rank correlation above which a sample is distilled (paper: 0.3).
    teacher_hidden_dims
        Hidden layer sizes of the teacher adapter ``d_T -> ... -> d_T`` (paper: 1024, 1024).
    teacher_lr_scale, student_head_lr_scale, teacher_head_lr_scale
        Learning rates of the teacher adapter, of the student classifier and proxy, and of the teacher classifier
        and proxy, relative to the student adapter's (paper: 1e-6, 1e-5 and 1e-3 vs 0.1).
    pretrain_steps, pretrain_lr
        AdamW steps and learning rate of the teacher's pre-training in :meth:`prepare`.
    student_pretrain_steps, student_pretrain_lr
        AdamW steps and learning rate of the student adapter and classifier's pre-training on the pairing keys
        (``CE(s, y)``; 0 steps: none), see :meth:`SemiClippedModule.pretrain_student
        <scsemiclip.module.SemiClippedModule.pretrain_student>`.
    kendall_pairs
        Class pairs the Kendall correlation compares at most (see :func:`kendall_tau`; with many pairing keys the
        exact statistic costs ``B C^2 / 2`` comparisons per step).
    **kwargs
        The common arguments of :class:`~scsemiclip.module.Objective`.
    """

    def __init__(
        self,
        *,
        kd_temperature: float = 2.0,
        tau_threshold: float = 0.3,
        teacher_hidden_dims: Sequence[int] = (1024, 1024),
        teacher_lr_scale: float = 1e-5,
        student_head_lr_scale: float = 1e-4,
        teacher_head_lr_scale: float = 1e-2,
        pretrain_steps: int = 200,
        pretrain_lr: float = 1e-2,
        student_pretrain_steps: int = 500,
        student_pretrain_lr: float = 3e-3,
        kendall_pairs: int = 4096,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_n_classes(self.n_classes, self.name)
        set_student_pretraining(self, steps=student_pretrain_steps, lr=student_pretrain_lr)
        if kd_temperature <= 0:
            raise ValueError(f"`kd_temperature` must be positive, got {kd_temperature}.")
        if not -1.0 <= tau_threshold < 1.0:
            raise ValueError(f"`tau_threshold` must be in [-1, 1), got {tau_threshold}.")
        self.kd_temperature = kd_temperature
        self.tau_threshold = tau_threshold
        self.pretrain_steps = pretrain_steps
        self.pretrain_lr = pretrain_lr
        self.kendall_pairs = kendall_pairs
        self.teacher_adapter = mlp(self.d_teacher, teacher_hidden_dims, self.d_teacher)
        self.teacher_classifier = nn.Linear(self.d_teacher, self.n_classes)
        self.teacher_proxy = nn.Linear(self.d_teacher, self.n_classes)
        self.student_classifier = nn.Linear(self.d_student, self.n_classes)
        self.student_proxy = nn.Linear(self.d_student, self.n_classes)
        self.lr_scales.update(
            teacher_adapter=teacher_lr_scale,
            student_classifier=student_head_lr_scale,
            student_proxy=student_head_lr_scale,
            teacher_classifier=teacher_head_lr_scale,
            teacher_proxy=teacher_head_lr_scale,
        )

    @doc_params(doc_prepare=doc_prepare)
    def prepare(self, teacher: torch.Tensor, labels: torch.Tensor) -> None:
        """Pre-train the teacher adapter and classifier to predict the pairing keys of the teacher samples.

        ``pretrain_steps`` AdamW steps at ``pretrain_lr`` on ``CE(t, y)`` (:func:`~._kd.fit_classifier`),
        continuing from their current weights; both keep training (at their ``lr_scales``) afterwards.

        Parameters
        ----------
        {doc_prepare}
        """
        net = nn.Sequential(self.teacher_adapter, self.teacher_classifier)
        fit_classifier(net, teacher, labels, steps=self.pretrain_steps, lr=self.pretrain_lr)

    @doc_params(doc_h=doc_h, doc_labels_classes=doc_labels_classes)
    def student_pretraining_loss(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the student classifier on the adapter output (the unimodal pre-training).

        Parameters
        ----------
        {doc_h}
        {doc_labels_classes}

        Returns
        -------
        The scalar loss ``CE(s, y)``, ``s`` the student classifier logits.
        """
        return F.cross_entropy(self.student_classifier(h), labels)

    def _bidirectional(self, logits: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        t = self.kd_temperature
        return distillation_kl(proxy, logits, temperature=t) + distillation_kl(logits, proxy, temperature=t)

    def forward(self, h: torch.Tensor, z: torch.Tensor, *, labels: torch.Tensor) -> ObjectiveOutput:
        """The C2KD loss; logs the cross-entropies, the mean Kendall correlation and the kept fraction.

        Parameters
        ----------
        h
            ``(B, d_student)`` student adapter outputs, the features of the student classifier and proxy.
        z
            ``(B, d_T)`` the frozen teacher partner of every sample; the teacher adapter's output of it is the
            feature of the teacher classifier and proxy.
        labels
            ``(B,)`` pairing-key codes: the targets of both cross-entropies, left out of the non-target terms.

        Returns
        -------
        The loss and the logs ``cross_entropy`` (the student's), ``teacher_cross_entropy``, ``kendall_tau`` (the
        minibatch mean of the proxies' rank correlation) and ``kept_fraction`` (the fraction of samples distilled).
        """
        features = self.teacher_adapter(z)
        s, s_proxy = self.student_classifier(h), self.student_proxy(h)
        t, t_proxy = self.teacher_classifier(features), self.teacher_proxy(features)
        ce_student, ce_teacher = F.cross_entropy(s, labels), F.cross_entropy(t, labels)
        tau = kendall_tau(t_proxy, s_proxy, max_pairs=self.kendall_pairs)
        keep = (tau > self.tau_threshold).to(h.dtype)
        temp = self.kd_temperature
        selected = keep * (
            non_target_kl(s_proxy, t_proxy, labels, temperature=temp)
            + non_target_kl(t_proxy, s_proxy, labels, temperature=temp)
        )
        loss = (
            ce_student
            + self._bidirectional(s, s_proxy)
            + ce_teacher
            + self._bidirectional(t, t_proxy)
            + selected.mean()
        )
        logs = {
            "cross_entropy": ce_student.detach(),
            "teacher_cross_entropy": ce_teacher.detach(),
            "kendall_tau": tau.mean(),
            "kept_fraction": keep.mean(),
        }
        return ObjectiveOutput(loss, logs)
