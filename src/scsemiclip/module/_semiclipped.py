"""The Semi-Clipped module: student adapter, objective, frozen teacher and online PEA, all on the training device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scvi.module.base import BaseModuleClass, LossOutput

from scsemiclip._core import EIGENVALUE_FLOOR, PEABank, check_pea_params, mlp, sample_pea_bank
from scsemiclip._docs import doc_key, doc_params

from ._augmentations import Augmentation
from ._objectives import get_objective, minimise


def _fit_dtype(device: torch.device) -> torch.dtype:
    """Precision in which PEA maps are fitted (float64, except on MPS which has none)."""
    return torch.float32 if device.type == "mps" else torch.float64


class SemiClippedModule(BaseModuleClass):
    """Adapter ``f_S`` from student to teacher space, trained with a pluggable :mod:`objective <._objectives>`.

    The frozen teacher and the student controls live in non-persistent buffers: they follow the module to the
    training device but are not part of the saved state, so a saved module needs neither for inference.

    - ``teacher`` holds the corrected teacher samples grouped by pairing key (key ``k`` owns rows
      ``teacher_offsets[k] : teacher_offsets[k] + teacher_counts[k]``); :meth:`sample` draws, for every
      training sample, a partner uniformly among its key's teacher samples with one gather.
    - ``student_controls`` holds the raw student controls grouped by batch (``control_counts`` rows each), from
      which :meth:`refresh_bank` fits a bank of random PEA corrections per batch (docs/method.md); while the module is
      in training mode and a bank is present, :meth:`inference` applies to every sample a random correction of
      its batch (one gather and one batched matmul).
    - ``student_inputs`` and ``student_keys`` hold, for objectives that pre-train the student
      (:meth:`pretrain_student`), the training samples as the adapter sees them at inference and their key codes.

    Parameters
    ----------
    n_input
        Student embedding dimension ``d_S``.
    n_teacher
        Teacher embedding dimension ``d_T``.
    n_keys
        Number of pairing keys with samples on both sides (the classes of label-based objectives).
    hidden_dims
        Hidden layer sizes of the adapter (paper: 512, 1024).
    objective
        Name of a registered objective (see :data:`scsemiclip.module.OBJECTIVES`).
    temperature
        Softmax temperature passed to the objective.
    objective_kwargs
        Further keyword arguments of the objective (e.g. ``symmetric``, ``learn_temperature``,
        ``mask_same_key``).
    pea
        Use PEA during training (requires :meth:`set_student_controls`).
    pea_transforms, p_drop, min_control_fraction, pea_bank_size, coral_reg, eigenvalue_floor
        PEA settings, as in :func:`scsemiclip.pp.pea_augment` (``transforms``, ...); ``pea_bank_size``
        corrections are fitted per batch at every refresh.
    augmentations
        Further training-time augmentations of the student (:data:`scsemiclip.module.AUGMENTATIONS` objects),
        applied in order to every training minibatch before PEA (fitted by :meth:`fit_augmentations`).
    """

    def __init__(
        self,
        n_input: int,
        n_teacher: int,
        *,
        n_keys: int,
        hidden_dims: Sequence[int] = (512, 1024),
        objective: str = "semiclipped",
        temperature: float = 0.1,
        objective_kwargs: dict | None = None,
        pea: bool = True,
        pea_transforms: Sequence[str] = ("center", "standardize", "tvn"),
        p_drop: float = 0.5,
        min_control_fraction: float = 0.25,
        pea_bank_size: int = 16,
        coral_reg: float = 0.5,
        eigenvalue_floor: float = EIGENVALUE_FLOOR,
        augmentations: Sequence[Augmentation] = (),
    ) -> None:
        super().__init__()
        objective_cls = get_objective(objective)
        n_output = objective_cls.output_dim or n_teacher
        self.adapter = mlp(n_input, hidden_dims, n_output)
        self.objective = objective_cls(
            d_student=n_output,
            d_teacher=n_teacher,
            n_classes=n_keys,
            temperature=temperature,
            **(objective_kwargs or {}),
        )
        if pea_bank_size < 1:
            raise ValueError(f"`pea_bank_size` must be >= 1, got {pea_bank_size}.")
        self.pea = pea
        self.pea_transforms = check_pea_params(
            transforms=tuple(pea_transforms), p_drop=p_drop, min_control_fraction=min_control_fraction
        )
        self.p_drop = p_drop
        self.min_control_fraction = min_control_fraction
        self.pea_bank_size = pea_bank_size
        self.coral_reg = coral_reg
        self.eigenvalue_floor = eigenvalue_floor
        self.augmentations = torch.nn.ModuleList(augmentations)
        self.register_buffer("teacher", torch.empty(0, n_teacher), persistent=False)
        self.register_buffer("teacher_offsets", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("teacher_counts", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("student_controls", torch.empty(0, n_input), persistent=False)
        self.register_buffer("student_inputs", torch.empty(0, n_input), persistent=False)
        self.register_buffer("student_keys", torch.empty(0, dtype=torch.long), persistent=False)
        self.control_counts: list[int] = []
        self.bank: PEABank | None = None
        self.generator: torch.Generator | None = None
        #: Key codes whose teacher rows the objective's ``prepare`` sees (``None``: every key); set by a split.
        self.training_keys: torch.Tensor | None = None

    # ----------------------------------------------------------------------------------------------- set-up
    def param_groups(self, lr: float) -> list[dict[str, object]]:
        """Optimizer parameter groups: the adapter at ``lr``, then the objective's (:meth:`Objective.param_groups`).

        Parameters
        ----------
        lr
            Learning rate of the student adapter; the objective's groups scale it by its ``lr_scales``.

        Returns
        -------
        ``{"params": [...], "lr": ...}`` dicts: the adapter's trainable parameters at ``lr``, then one per learning
        rate of the objective's trainable parameters (none when it has none).
        """
        adapter = [p for p in self.adapter.parameters() if p.requires_grad]
        return [{"params": adapter, "lr": lr}, *self.objective.param_groups(lr)]

    def set_teacher(self, teacher: torch.Tensor, counts: torch.Tensor) -> None:
        """Store the frozen teacher, rows grouped by pairing key (``counts[k]`` rows for key ``k``, all > 0).

        Parameters
        ----------
        teacher
            ``(n_teacher, d_T)`` the corrected teacher samples, the rows of each key contiguous and in key order.
        counts
            ``(n_keys,)`` number of teacher rows of every pairing key (each >= 1, summing to ``n_teacher``).

        Returns
        -------
        ``None``; fills the non-persistent buffers ``teacher`` (float32), ``teacher_counts`` and ``teacher_offsets``
        on the module's device, from which :meth:`sample` draws the partners.
        """
        if teacher.shape[0] != int(counts.sum()) or bool((counts < 1).any()):
            raise ValueError("`counts` must be positive and sum to the number of teacher rows.")
        device = self.teacher.device
        self.teacher = teacher.to(device=device, dtype=torch.float32)
        self.teacher_counts = counts.to(device=device, dtype=torch.long)
        self.teacher_offsets = torch.cumsum(self.teacher_counts, 0) - self.teacher_counts

    def set_student_controls(self, controls: torch.Tensor, counts: Sequence[int]) -> None:
        """Store the raw student controls, rows grouped by batch (``counts[b]`` >= 2 rows for batch ``b``).

        Parameters
        ----------
        controls
            ``(n_controls, d_S)`` the uncorrected student controls, the rows of each batch contiguous and in
            batch-code order.
        counts
            Number of control rows of every batch (each >= 2, summing to ``n_controls``).

        Returns
        -------
        ``None``; fills the non-persistent buffer ``student_controls`` (float32, on the module's device) and
        ``control_counts``, from which :meth:`refresh_bank` fits the PEA bank.
        """
        if controls.shape[0] != sum(counts) or min(counts, default=0) < 2:
            raise ValueError("Every batch needs at least 2 controls and `counts` must sum to the number of rows.")
        self.student_controls = controls.to(device=self.student_controls.device, dtype=torch.float32)
        self.control_counts = [int(c) for c in counts]

    def set_student_inputs(self, inputs: torch.Tensor, keys: torch.Tensor) -> None:
        """Store the student training samples as the adapter sees them at inference, for :meth:`pretrain_student`.

        Parameters
        ----------
        inputs
            ``(n, d_S)`` adapter inputs (TVN-corrected on the data's controls when the model uses inference TVN).
        keys
            ``(n,)`` pairing-key code of every row (the class labels).

        Returns
        -------
        ``None``; fills the non-persistent buffers ``student_inputs`` and ``student_keys``.
        """
        if inputs.shape[0] != keys.shape[0]:
            raise ValueError(f"`inputs` has {inputs.shape[0]} rows but `keys` {keys.shape[0]}.")
        device = self.student_inputs.device
        self.student_inputs = inputs.to(device=device, dtype=torch.float32)
        self.student_keys = keys.to(device=device, dtype=torch.long)

    def start_training(self, seed: int) -> None:
        """Enter training mode with a fresh random generator on the module's device; prepare the objective.

        Lightning (>= 2.2) keeps whatever mode a module was left in, and scvi-tools leaves it in eval mode after
        training or loading; training in eval mode would silently switch PEA off, hence the explicit ``train()``.
        The objective's :meth:`~Objective.prepare` then gets the stored teacher (see :meth:`set_teacher`) and the
        pairing-key code of each of its rows (only the rows of :attr:`training_keys` when it is set).

        Parameters
        ----------
        seed
            Seed of the module's generator, which draws the teacher partners (:meth:`sample`), fits the PEA banks
            (:meth:`refresh_bank`) and picks each sample's correction (:meth:`inference`).

        Returns
        -------
        ``None``; sets ``generator``.
        """
        self.train()
        device = self.teacher.device
        self.generator = torch.Generator(device=device).manual_seed(seed)
        labels = torch.repeat_interleave(torch.arange(len(self.teacher_counts), device=device), self.teacher_counts)
        teacher = self.teacher
        if self.training_keys is not None:  # a validation split: the held-out keys' teacher rows stay unseen
            seen = torch.isin(labels, self.training_keys.to(device))
            teacher, labels = teacher[seen], labels[seen]
        self.objective.prepare(teacher, labels)

    def refresh_bank(self) -> None:
        """Fit a new bank of ``pea_bank_size`` random PEA corrections per batch (no-op when PEA is off)."""
        if not self.pea:
            return
        if not self.control_counts:
            raise RuntimeError("PEA needs the student controls: call `set_student_controls` first.")
        controls = self.student_controls.to(_fit_dtype(self.student_controls.device))
        bank = sample_pea_bank(
            list(torch.split(controls, self.control_counts)),
            bank_size=self.pea_bank_size,
            transforms=self.pea_transforms,
            p_drop=self.p_drop,
            min_control_fraction=self.min_control_fraction,
            coral_reg=self.coral_reg,
            eigenvalue_floor=self.eigenvalue_floor,
            generator=self.generator,
            dtype=torch.float32,
        )
        self.bank = bank

    def pretrain_student(self, *, seed: int, batch_size: int = 1024) -> None:
        """Unimodal pre-training of the student adapter with the objective's ``student_pretraining_loss``.

        A no-op unless the objective sets ``student_pretrain_steps`` (the label-based objectives ``kd``, ``shake``
        and ``c2kd`` do: the adapter and the student classifier learn the pairing keys before the distillation, as
        in the paper's section 4). Otherwise it runs that many AdamW steps (learning rate
        ``objective.student_pretrain_lr``) over the adapter and the objective's trainable parameters (only those
        the loss reaches change) on minibatches of ``batch_size`` rows of :meth:`set_student_inputs`' inputs drawn
        with replacement (every row when there are no more), from a generator seeded with ``seed`` and separate
        from the training's draws: deterministic, and the same on every rank of a distributed run given the same
        seed. No PEA: the inputs are the adapter's inference inputs.

        Parameters
        ----------
        seed
            Seed of the minibatch draws.
        batch_size
            Rows per step.

        Returns
        -------
        ``None``; the adapter and the objective's parameters are updated in place.
        """
        objective = self.objective
        if objective.student_pretrain_steps < 1:
            return
        if self.student_inputs.shape[0] == 0:
            raise RuntimeError(f"Objective {objective.name!r} pre-trains the student: call `set_student_inputs` first.")
        x, keys = self.student_inputs, self.student_keys
        minimise(
            lambda rows: objective.student_pretraining_loss(self.adapter(x[rows]), keys[rows]),
            [p for p in self.parameters() if p.requires_grad],
            n_rows=x.shape[0],
            steps=objective.student_pretrain_steps,
            lr=objective.student_pretrain_lr,
            batch_size=batch_size,
            generator=torch.Generator(device=x.device).manual_seed(seed),
        )

    def fit_augmentations(self, x: torch.Tensor, keys: torch.Tensor, *, seed: int) -> None:
        """Fit every augmentation on the training inputs (see :meth:`scsemiclip.module.Augmentation.fit`).

        Parameters
        ----------
        x
            ``(n, d_S)`` the training inputs as the data module yields them, on the device to fit on.
        keys
            ``(n,)`` pairing-key code of every row.
        seed
            Seed of the generator (on the device of ``x``) the augmentations fit with, one after the other.

        Returns
        -------
        ``None``; the augmentations' non-persistent buffers are filled on the device of ``x``.
        """
        keys = keys.to(x.device)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        probe = torch.Generator(device=x.device).manual_seed(seed)  # apart: the training's draws stay the same
        rows = torch.arange(min(8, x.shape[0]), device=x.device)
        for augmentation in self.augmentations:
            augmentation.to(x.device)
            augmentation.fit(x, keys, n_keys=len(self.teacher_counts), generator=generator)
            # one minibatch of the first rows before the training: an output of the wrong shape is an error now,
            # naming the augmentation, not a shape error of the adapter in the middle of the training
            augmentation(x[rows].float(), batch=torch.zeros_like(rows), key=keys[rows], index=rows, generator=probe)

    def end_training(self) -> None:
        """Release the bank and the generator."""
        self.bank = None
        self.generator = None

    # ----------------------------------------------------------------------------------------------- forward
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = {"x": tensors["x"], "batch": tensors["batch"]}
        if len(self.augmentations):  # what the augmentations read
            inputs |= {"key": tensors["key"], "index": tensors.get("index")}
        return inputs

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"key": tensors["key"]}

    def inference(
        self, x: torch.Tensor, batch: torch.Tensor, key: torch.Tensor | None = None, index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Adapter output ``h``; in training mode ``x`` is first augmented, then, with a PEA bank, corrected.

        In training mode, the :attr:`augmentations` run in order on ``x``, then every sample gets a random PEA
        correction of its batch. Both run in float32 even under mixed precision (whitening maps have a large
        dynamic range).

        Parameters
        ----------
        x
            ``(B, d_S)`` student samples as the data module yields them: raw with PEA (corrected here), the
            adapter's inference input otherwise.
        batch
            ``(B,)`` batch code of every sample (it selects the sample's PEA corrections).
        key
            ``(B,)`` pairing-key code of every sample (read by the augmentations).
        index
            ``(B,)`` row of every sample in the training inputs (read by augmentations that need it).

        Returns
        -------
        ``{"h": ...}``: the ``(B, d)`` adapter output, ``d`` the teacher's dimension or the objective's
        ``output_dim``.
        """
        if self.training and len(self.augmentations):
            with torch.autocast(x.device.type, enabled=False):
                x = x.float()
                for augmentation in self.augmentations:
                    x = augmentation(x, batch=batch, key=key, index=index, generator=self.generator)
        if self.training and self.bank is not None:
            with torch.autocast(x.device.type, enabled=False):
                x = self.bank.augment(x.float(), batch, self.generator)
        return {"h": self.adapter(x)}

    @doc_params(doc_key=doc_key)
    def sample(self, key: torch.Tensor) -> torch.Tensor:
        """Draw for every sample a teacher partner uniformly among the teacher samples of its pairing key.

        The draws come from ``generator`` (see :meth:`start_training`); the teacher is the one given to
        :meth:`set_teacher`.

        Parameters
        ----------
        {doc_key}

        Returns
        -------
        ``(B, d_T)`` the drawn teacher rows (float32, on the module's device).
        """
        counts = self.teacher_counts[key]
        u = torch.rand(key.shape, generator=self.generator, device=key.device)
        j = torch.minimum((u * counts).long(), counts - 1)
        return self.teacher[self.teacher_offsets[key] + j]

    @doc_params(doc_key=doc_key)
    def generative(self, key: torch.Tensor) -> dict[str, torch.Tensor]:
        """The drawn teacher partners ``z`` (one :meth:`sample` per minibatch).

        Parameters
        ----------
        {doc_key}

        Returns
        -------
        ``{"z": ...}``: the ``(B, d_T)`` teacher partner of every sample.
        """
        return {"z": self.sample(key)}

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
    ) -> LossOutput:
        """The objective's loss of the minibatch; its logs become extra metrics.

        Parameters
        ----------
        tensors
            The minibatch; its ``"key"`` entry (``(B,)`` pairing-key codes) gives the objective's ``labels``.
        inference_outputs
            Output of :meth:`inference` (``"h"``: the ``(B, d)`` adapter output).
        generative_outputs
            Output of :meth:`generative` (``"z"``: the ``(B, d_T)`` teacher partners).

        Returns
        -------
        scvi-tools' ``LossOutput`` with the objective's scalar loss, ``n_obs_minibatch=B`` and the objective's logs
        (detached 0-d tensors, see :class:`~scsemiclip.module.ObjectiveOutput`) as ``extra_metrics``.
        """
        out = self.objective(inference_outputs["h"], generative_outputs["z"], labels=tensors["key"])
        return LossOutput(loss=out.loss, n_obs_minibatch=tensors["key"].shape[0], extra_metrics=out.logs)
