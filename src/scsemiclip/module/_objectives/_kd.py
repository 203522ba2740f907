"""Knowledge distillation baseline (docs/method.md): label cross-entropy plus the softened teacher classifier's KL."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scsemiclip._docs import doc_h, doc_labels_ce, doc_labels_classes, doc_params, doc_prepare

from ._base import Objective, ObjectiveOutput, minimise, register_objective


def distillation_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float, reduction: str = "mean"
) -> torch.Tensor:
    """Hinton et al.'s (2015) distillation term ``T^2 KL(softmax(t / T) || softmax(s / T))``.

    The teacher logits are detached (the target). ``T^2`` keeps the gradient scale independent of ``T``.

    Parameters
    ----------
    student_logits, teacher_logits
        ``(B, C)`` logits.
    temperature
        Softening temperature ``T``.
    reduction
        ``"mean"`` over samples, or ``"none"`` (one value per sample).

    Returns
    -------
    The loss (0-d), or ``(B,)`` with ``reduction="none"``.
    """
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1) * temperature**2
    if reduction == "none":
        return kl
    if reduction == "mean":
        return kl.mean()
    raise ValueError(f"`reduction` must be 'mean' or 'none', got {reduction!r}.")


def fit_classifier(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float, batch_size: int = 1024
) -> None:
    """Train ``net`` to predict the classes ``y`` from ``x`` (cross-entropy, AdamW), in place.

    Used by :meth:`~scsemiclip.module.Objective.prepare` for the unimodal pre-training of teacher classifiers;
    runs with gradients enabled whatever the context and restores the parameters' ``requires_grad`` flags.
    Each step uses ``batch_size`` rows drawn with replacement with a fixed seed, or every row when there are no
    more than ``batch_size`` (see :func:`~._base.minimise`).

    Parameters
    ----------
    net
        Network mapping ``(n, d)`` to ``(n, C)`` logits.
    x
        ``(n, d)`` inputs.
    y
        ``(n,)`` class codes in ``[0, C)``.
    steps
        Optimizer steps.
    lr
        AdamW learning rate.
    batch_size
        Rows per step.

    Returns
    -------
    ``None``.
    """
    params = list(net.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(requires_grad=True)
    try:
        minimise(
            lambda rows: F.cross_entropy(net(x[rows]), y[rows]),
            params,
            n_rows=x.shape[0],
            steps=steps,
            lr=lr,
            batch_size=batch_size,
            generator=torch.Generator(device=x.device).manual_seed(0),
        )
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(requires_grad=flag)


def check_n_classes(n_classes: int, name: str) -> None:
    """Label-based objectives need at least 2 classes (pairing keys)."""
    if n_classes < 2:
        raise ValueError(f"Objective {name!r} classifies pairing keys and needs at least 2 of them, got {n_classes}.")


def set_student_pretraining(objective: Objective, *, steps: int, lr: float) -> None:
    """Validate and set the student pre-training steps and learning rate of a label-based objective."""
    if steps < 0:
        raise ValueError(f"`student_pretrain_steps` must be >= 0, got {steps}.")
    if lr <= 0:
        raise ValueError(f"`student_pretrain_lr` must be positive, got {lr}.")
    objective.student_pretrain_steps = int(steps)
    objective.student_pretrain_lr = float(lr)


@register_objective("kd")
class KDObjective(Objective):
    """Knowledge distillation (Hinton et al., 2015) from a teacher classifier of the pairing keys.

    ``L = CE(g(h), y) + alpha T^2 KL(softmax(t / T) || softmax(g(h) / T))``: ``g`` is a linear classifier head on
    the student adapter output ``h``, ``y`` the pairing key, and ``t`` the logits of a linear classifier of the
    teacher embedding, trained to predict the pairing keys on every paired teacher sample in :meth:`prepare` and
    frozen afterwards. As in the paper (section 4), the student side is pre-trained unimodally too: before the
    distillation, the student adapter and ``g`` learn the pairing keys alone (``CE(g(h), y)``, see
    :meth:`student_pretraining_loss`) for ``student_pretrain_steps`` AdamW steps.

    Parameters
    ----------
    alpha
        Weight of the distillation term (paper appendix A.2: 10).
    kd_temperature
        Softening temperature ``T`` (paper: 9). The common ``temperature`` (InfoNCE's) is not used.
    classifier_lr_scale
        Learning rate of the student classifier head relative to the adapter's (paper: 1e-4 vs 0.1).
    pretrain_steps, pretrain_lr
        AdamW steps and learning rate of the teacher classifier's training in :meth:`prepare`.
    student_pretrain_steps, student_pretrain_lr
        AdamW steps and learning rate of the student adapter and classifier's pre-training on the pairing keys
        (0 steps: none), see :meth:`SemiClippedModule.pretrain_student
        <scsemiclip.module.SemiClippedModule.pretrain_student>`.
    **kwargs
        The common arguments of :class:`~scsemiclip.module.Objective`.
    """

    def __init__(
        self,
        *,
        alpha: float = 10.0,
        kd_temperature: float = 9.0,
        classifier_lr_scale: float = 1e-3,
        pretrain_steps: int = 200,
        pretrain_lr: float = 1e-2,
        student_pretrain_steps: int = 500,
        student_pretrain_lr: float = 3e-3,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_n_classes(self.n_classes, self.name)
        if kd_temperature <= 0:
            raise ValueError(f"`kd_temperature` must be positive, got {kd_temperature}.")
        set_student_pretraining(self, steps=student_pretrain_steps, lr=student_pretrain_lr)
        self.alpha = alpha
        self.kd_temperature = kd_temperature
        self.pretrain_steps = pretrain_steps
        self.pretrain_lr = pretrain_lr
        self.student_classifier = nn.Linear(self.d_student, self.n_classes)
        self.teacher_classifier = nn.Linear(self.d_teacher, self.n_classes).requires_grad_(requires_grad=False)
        self.lr_scales["student_classifier"] = classifier_lr_scale

    @doc_params(doc_prepare=doc_prepare)
    def prepare(self, teacher: torch.Tensor, labels: torch.Tensor) -> None:
        """Train the (frozen) teacher classifier to predict the pairing keys of the teacher samples.

        ``pretrain_steps`` AdamW steps at ``pretrain_lr`` (:func:`fit_classifier`), continuing from the
        classifier's current weights; it stays frozen during the training proper.

        Parameters
        ----------
        {doc_prepare}
        """
        fit_classifier(self.teacher_classifier, teacher, labels, steps=self.pretrain_steps, lr=self.pretrain_lr)

    @doc_params(doc_h=doc_h, doc_labels_classes=doc_labels_classes)
    def student_pretraining_loss(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the student classifier on the adapter output (the unimodal pre-training).

        Parameters
        ----------
        {doc_h}
        {doc_labels_classes}

        Returns
        -------
        The scalar loss ``CE(g(h), y)``.
        """
        return F.cross_entropy(self.student_classifier(h), labels)

    @doc_params(doc_h=doc_h, doc_labels_ce=doc_labels_ce)
    def forward(self, h: torch.Tensor, z: torch.Tensor, *, labels: torch.Tensor) -> ObjectiveOutput:
        """Cross-entropy plus distillation; logs both terms.

        Parameters
        ----------
        {doc_h}
        z
            ``(B, d_T)`` the frozen teacher partner of every sample, scored by the teacher classifier.
        {doc_labels_ce}

        Returns
        -------
        The loss ``CE + alpha * KD`` and the logs ``cross_entropy`` and ``distillation`` (unweighted).
        """
        logits = self.student_classifier(h)
        ce = F.cross_entropy(logits, labels)
        kd = distillation_kl(logits, self.teacher_classifier(z), temperature=self.kd_temperature)
        return ObjectiveOutput(ce + self.alpha * kd, {"cross_entropy": ce.detach(), "distillation": kd.detach()})
