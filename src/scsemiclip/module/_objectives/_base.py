"""The interface of a training objective, its registry, and the InfoNCE loss shared by the contrastive objectives.

An objective is a :class:`torch.nn.Module` that receives, for a minibatch of ``B`` weakly paired samples, the
student adapter output ``h`` (``B x d``), the frozen teacher embedding ``z`` of each sample's drawn partner
(``B x d_T``, after the teacher's fixed correction, never trained) and the pairing-key code of every sample
(``labels``, ``B``; the class labels of label-based objectives), and returns the loss and a few scalars to log.
It may own trainable parameters (a teacher adapter, a learnable temperature, classifier heads), which the
training plan optimises together with the student adapter (at learning rates relative to the adapter's, see
:meth:`Objective.param_groups`), and it may pre-train parts of itself on the whole teacher set in
:meth:`Objective.prepare` (e.g. the teacher classifier of knowledge distillation). An objective that sets
:attr:`Objective.student_pretrain_steps` also gets the student adapter pre-trained, with its own
:meth:`Objective.student_pretraining_loss` (e.g. the label-based objectives: the adapter and the student classifier
learn the pairing keys), by :meth:`SemiClippedModule.pretrain_student
<scsemiclip.module.SemiClippedModule.pretrain_student>` before the training proper.

A new objective is one new file in this package with a subclass decorated by :func:`register_objective`,
imported from ``__init__``; the module looks objectives up by name in :data:`OBJECTIVES`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from scsemiclip._docs import doc_h, doc_labels, doc_params, doc_prepare, doc_z
from scsemiclip._validate import check_flag, check_real


class ObjectiveOutput(NamedTuple):
    """What an objective returns for a minibatch."""

    loss: torch.Tensor
    """Scalar loss to minimise."""
    logs: dict[str, torch.Tensor]
    """Detached 0-d tensors logged once per epoch (averaged over the epoch's minibatches)."""


class Objective(nn.Module, abc.ABC):
    """Base class of the training objectives.

    Parameters
    ----------
    d_student
        Dimension of the student adapter output ``h``.
    d_teacher
        Dimension of the teacher embedding ``z``.
    n_classes
        Number of pairing keys present on both sides (the classes of label-based objectives).
    temperature
        Softmax temperature (objectives without one ignore it).
    """

    #: Name under which the objective is registered (set by :func:`register_objective`).
    name: ClassVar[str] = ""
    #: Output dimension of the student adapter; ``None`` means the teacher's dimension.
    output_dim: ClassVar[int | None] = None

    def __init__(self, *, d_student: int, d_teacher: int, n_classes: int, temperature: float) -> None:
        super().__init__()
        temperature = check_real(temperature, name="temperature", low=0, low_open=True)  # NaN too
        self.d_student = d_student
        self.d_teacher = d_teacher
        self.n_classes = n_classes
        self.temperature = temperature
        #: Learning rate of some trainable submodules relative to the student adapter's, by attribute name (e.g.
        #: ``{"teacher_adapter": 1e-7}``, as in the paper's appendix A.2); see :meth:`param_groups`.
        self.lr_scales: dict[str, float] = {}
        #: AdamW steps of the student adapter's unimodal pre-training with :meth:`student_pretraining_loss` at the
        #: start of every training run (0, the default: none; see
        #: :meth:`SemiClippedModule.pretrain_student <scsemiclip.module.SemiClippedModule.pretrain_student>`).
        self.student_pretrain_steps: int = 0
        #: AdamW learning rate of the student pre-training.
        self.student_pretrain_lr: float = 1e-3

    def param_groups(self, lr: float) -> list[dict[str, object]]:
        """The objective's trainable parameters as optimizer parameter groups, with :attr:`lr_scales` applied.

        A parameter of the submodule ``self.<name>`` trains at ``lr * lr_scales[name]``, every other one at ``lr``.

        Parameters
        ----------
        lr
            Learning rate of the student adapter.

        Returns
        -------
        One ``{"params": [...], "lr": ...}`` dict per learning rate (none without trainable parameters).
        """
        groups: dict[float, list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if param.requires_grad:
                groups.setdefault(lr * self.lr_scales.get(name.split(".")[0], 1.0), []).append(param)
        return [{"params": params, "lr": group_lr} for group_lr, params in groups.items()]

    @doc_params(doc_prepare=doc_prepare)
    def prepare(self, teacher: torch.Tensor, labels: torch.Tensor) -> None:
        """Hook run at the start of every training run, on the training device; does nothing by default.

        Parameters
        ----------
        {doc_prepare}
        """

    @doc_params(doc_h=doc_h, doc_labels=doc_labels)
    def student_pretraining_loss(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of the student adapter's unimodal pre-training (only called when :attr:`student_pretrain_steps` > 0).

        The module minimises it over the student adapter and the objective's trainable parameters (those that
        receive no gradient from it stay untouched), on minibatches of the student's training samples as the
        adapter sees them at inference (no PEA), before the training proper. Objectives that pre-train the student
        override it and set :attr:`student_pretrain_steps`.

        Parameters
        ----------
        {doc_h}
        {doc_labels}

        Returns
        -------
        The scalar loss.
        """
        raise NotImplementedError(f"Objective {self.name!r} has no student pre-training (student_pretrain_steps=0).")

    @abc.abstractmethod
    @doc_params(doc_h=doc_h, doc_labels=doc_labels, doc_z=doc_z)
    def forward(self, h: torch.Tensor, z: torch.Tensor, *, labels: torch.Tensor) -> ObjectiveOutput:
        """Loss of a minibatch.

        Parameters
        ----------
        {doc_h}
        {doc_z}
        {doc_labels}

        Returns
        -------
        The loss and the values to log.
        """


#: Registered objectives by name.
OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator adding an :class:`Objective` subclass to :data:`OBJECTIVES` under ``name``."""

    def decorate(cls: type[Objective]) -> type[Objective]:
        if name in OBJECTIVES:
            raise ValueError(f"An objective named {name!r} is already registered ({OBJECTIVES[name].__name__}).")
        cls.name = name
        OBJECTIVES[name] = cls
        return cls

    return decorate


def get_objective(name: str) -> type[Objective]:
    """The objective class registered under ``name``; the error lists the known names."""
    if name not in OBJECTIVES:
        raise ValueError(f"Unknown objective {name!r}; choose from {sorted(OBJECTIVES)}.")
    return OBJECTIVES[name]


def minimise(
    loss_of_rows: Callable[[torch.Tensor | slice], torch.Tensor],
    params: list[nn.Parameter],
    *,
    n_rows: int,
    steps: int,
    lr: float,
    batch_size: int = 1024,
    generator: torch.Generator,
) -> None:
    """Minimise a loss over minibatches of rows with AdamW, in place, with gradients enabled whatever the context.

    Each step evaluates ``loss_of_rows(rows)`` on ``batch_size`` row indices drawn with replacement from
    ``generator`` (on the rows' device), or on every row (``slice(None)``) when there are no more than
    ``batch_size``. Parameters that get no gradient are left untouched (AdamW skips them).

    Parameters
    ----------
    loss_of_rows
        Loss (0-d) of a minibatch given its row indices (``(batch_size,)`` long tensor) or ``slice(None)``.
    params
        Parameters to optimise (their ``requires_grad`` must be set).
    n_rows
        Number of rows to draw from.
    steps
        Optimizer steps.
    lr
        AdamW learning rate (default weight decay 0.01).
    batch_size
        Rows per step.
    generator
        Torch generator on the rows' device (the draws are deterministic given its state).

    Returns
    -------
    ``None``.
    """
    if steps < 1 or not params:
        return
    optimizer = torch.optim.AdamW(params, lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            rows = (
                torch.randint(n_rows, (batch_size,), generator=generator, device=generator.device)
                if n_rows > batch_size
                else slice(None)
            )
            optimizer.zero_grad()
            loss_of_rows(rows).backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def distributed_world() -> tuple[int, int]:
    """Rank of this process and world size of the default process group (``(0, 1)`` outside a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """The rows of ``x`` of every rank, concatenated in rank order (``x`` itself outside a distributed run).

    A tensor that requires grad is gathered with gradients: the backward sends every rank's gradient of the
    gathered rows back to the rank that owns them, so with the gradient averaging of DDP the gradients are those
    of one process on the concatenated batch (open_clip's ``gather_with_grad`` with ``local_loss``). Every rank must pass the same shape (the data module drops partial
    minibatches, so it does).
    """
    if distributed_world()[1] == 1:
        return x
    return _GatherWithGrad.apply(x) if x.requires_grad else _all_gather(x)


def _all_gather(x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient of the gathered rows and returns this rank's share."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rows = slice(dist.get_rank() * x.shape[0], (dist.get_rank() + 1) * x.shape[0])
        return _all_gather(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # any backend (gloo has no reduce-scatter)
        return grad[ctx.rows]


def global_targets(
    n_local: int, labels: torch.Tensor | None, *, gather: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Column of every local row's positive among the (gathered) columns, and the mask of its false negatives.

    Parameters
    ----------
    n_local
        Rows ``B`` of this rank's minibatch.
    labels
        ``(B,)`` pairing-key codes, or ``None`` (no mask).
    gather
        Whether the columns are the minibatches of all ranks (:func:`gather_batch`): row ``i`` of rank ``r`` has its
        positive in column ``r B + i``.
    device
        Device of the outputs.

    Returns
    -------
    ``(B,)`` the positive's column, and ``(B, n_columns)`` booleans marking the columns other than the positive
    with the row's label (``None`` without ``labels``).
    """
    rank = distributed_world()[0] if gather else 0
    target = torch.arange(n_local, device=device) + rank * n_local
    if labels is None:
        return target, None
    columns = gather_batch(labels) if gather else labels
    same = labels[:, None] == columns[None, :]
    same[torch.arange(n_local, device=device), target] = False
    return target, same


def info_nce(
    h: torch.Tensor,
    z: torch.Tensor,
    *,
    scale: torch.Tensor,
    labels: torch.Tensor | None = None,
    symmetric: bool = False,
    gather: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE of ``h_i`` against its partner ``z_i`` among the minibatch's ``z_j``, on L2-normalised vectors.

    ``L = -(1/B) sum_i log softmax_j(scale <h_i, z_j>)_i`` (``scale = 1 / temperature``).

    Parameters
    ----------
    h, z
        ``(B, d)`` the two sides, row ``i`` of each forming the positive pair.
    scale
        Inverse temperature (0-d tensor).
    labels
        ``(B,)`` pairing-key codes; if given, in-batch negatives ``j != i`` with ``labels[j] == labels[i]`` are
        masked out (they are false negatives: the same perturbation).
    symmetric
        Average with the loss of ``z`` against ``h`` (CLIP's symmetric loss).
    gather
        In a distributed run, the negatives are the minibatches of all ranks (all-gathered with gradients, see
        :func:`gather_batch`): each rank's loss is that of its rows against the global batch, and DDP's averaged
        gradients equal those of one process on the concatenated batch. No effect in a single process.

    Returns
    -------
    The loss and the top-1 retrieval accuracy of ``h`` among the (global) minibatch (both 0-d; the accuracy
    detached).
    """
    hn, zn = F.normalize(h, dim=1), F.normalize(z, dim=1)
    target, same = global_targets(h.shape[0], labels, gather=gather, device=h.device)
    logits = (hn @ (gather_batch(zn) if gather else zn).T) * scale
    if same is not None:
        logits = logits.masked_fill(same, float("-inf"))
    loss = F.cross_entropy(logits, target)
    if symmetric:
        # z against h: the transposed logits in one process; this rank's z rows against every rank's h otherwise
        back = (zn @ gather_batch(hn).T) * scale if gather else logits.T
        if gather and same is not None:
            back = back.masked_fill(same, float("-inf"))
        loss = 0.5 * (loss + F.cross_entropy(back, target))
    top1 = (logits.detach().argmax(1) == target).float().mean()
    return loss, top1


class ContrastiveObjective(Objective):
    """InfoNCE between the student adapter output and the (optionally adapted) teacher partner.

    Parameters
    ----------
    symmetric
        Symmetric (CLIP) loss instead of the one-sided student-to-teacher loss.
    learn_temperature
        Learn the temperature (as a log inverse temperature initialised at ``1 / temperature``, capped at 100).
    mask_same_key
        Mask in-batch negatives that share the positive's pairing key.
    gather_negatives
        Under DDP, contrast every rank's samples against the minibatches of all ranks (all-gathered with
        gradients, see :func:`info_nce`): the loss and the gradients of a global batch of ``world_size x
        batch_size``, as on one device. No effect in a single process.
    **kwargs
        See :class:`Objective`.
    """

    def __init__(
        self,
        *,
        symmetric: bool = False,
        learn_temperature: bool = False,
        mask_same_key: bool = False,
        gather_negatives: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        # "no" would be truthy: under DDP it would switch the gathering on
        self.symmetric = check_flag(symmetric, name="symmetric")
        self.mask_same_key = check_flag(mask_same_key, name="mask_same_key")
        self.gather_negatives = check_flag(gather_negatives, name="gather_negatives")
        self.learn_temperature = check_flag(learn_temperature, name="learn_temperature")
        log_scale = torch.tensor(math.log(1.0 / self.temperature))
        if learn_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @doc_params(doc_z=doc_z)
    def teacher_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """The teacher side of the loss (the frozen embedding itself unless a subclass adapts it).

        Parameters
        ----------
        {doc_z}

        Returns
        -------
        ``z`` itself (here ``d_student == d_T``).
        """
        return z

    def scale(self) -> torch.Tensor:
        """The inverse temperature ``exp(log_scale)``, initially ``1 / temperature``.

        Returns
        -------
        A 0-d tensor, capped at 100; it carries the gradient of ``log_scale`` when the temperature is learned.
        """
        return self.log_scale.exp().clamp(max=100.0)

    @doc_params(doc_h=doc_h)
    def forward(self, h: torch.Tensor, z: torch.Tensor, *, labels: torch.Tensor) -> ObjectiveOutput:
        """InfoNCE loss (:func:`info_nce`); logs the top-1 in-batch accuracy (and the temperature when learned).

        Parameters
        ----------
        {doc_h}
        z
            ``(B, d_T)`` the frozen teacher partner of every sample, passed through :meth:`teacher_embedding`.
        labels
            ``(B,)`` pairing-key codes; used only with ``mask_same_key`` (in-batch negatives that share the
            positive's key are masked out).

        Returns
        -------
        The loss and the logs ``top1_accuracy`` (and ``temperature``, ``1 / scale``, when learned).
        """
        scale = self.scale()
        loss, top1 = info_nce(
            h,
            self.teacher_embedding(z),
            scale=scale,
            labels=labels if self.mask_same_key else None,
            symmetric=self.symmetric,
            gather=self.gather_negatives,
        )
        logs = {"top1_accuracy": top1}
        if self.learn_temperature:
            logs["temperature"] = 1.0 / scale.detach()
        return ObjectiveOutput(loss, logs)
