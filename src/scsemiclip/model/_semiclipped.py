"""The Semi-Clipped model (scvi-tools form): set-up, training, latent representation, save and load."""

from __future__ import annotations

import inspect
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING

import numpy as np
import torch
from anndata import AnnData
from scvi.data import AnnDataManager
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from scsemiclip._core import (
    ACCELERATORS,
    EIGENVALUE_FLOOR,
    TRANSFORM_STEPS,
    AffineMaps,
    apply_maps,
    check_controls_per_batch,
    group_controls,
    resolve_device,
    zca_tvn_maps,
    zca_tvn_rows,
)
from scsemiclip._settings import settings
from scsemiclip._utils import RNGLike, batch_codes, control_mask, get_rep, resolve_rng, torch_seed, version_info
from scsemiclip._validate import check_choice, check_choices, check_flag, check_int, check_key, check_real
from scsemiclip.module import Augmentation, ScVIDenoise, SemiClippedModule
from scsemiclip.train import (
    DeviceDataSplitter,
    EpochProgressBar,
    HeldOutValidation,
    Scorer,
    SemiClippedTrainingPlan,
    ddp_without_buffer_broadcast,
    quiet_lightning,
    shared_float32,
    split_keys,
    torch_threads,
    warn_if_near_chance,
)

from ._fields import (
    BATCH_KEY,
    CONTROL_KEY,
    PAIR_KEYS_KEY,
    STUDENT_KEY,
    EmbeddingField,
    ObsColumnsField,
    validate_batch,
    validate_control,
)
from ._io import FORMAT_VERSION, MODEL_FILE, model_file, read_model_file
from ._pairing import Pairing, weak_pairs
from ._recipes import resolve_augmentations, resolve_recipe
from ._scvi import posterior_scale

if TYPE_CHECKING:
    from lightning.pytorch.strategies import Strategy

logger = logging.getLogger("scsemiclip")

#: Key of the set-up arguments in scvi-tools' registry (``AnnDataManager.registry``, see ``view_registry``).
SETUP_ARGS = "setup_args"


@contextmanager
def _about(what: str) -> Iterator[None]:
    """Prefix the message of a ValueError raised inside with the data it is about."""
    try:
        yield
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from err


class SemiClipped(BaseModelClass):
    """Semi-Clipped (Bendidi et al., ICML 2025): distil a frozen teacher embedding into a student adapter, with PEA.

    An adapter ``f_S`` (MLP ``d_S -> 512 -> 1024 -> d_T``) is trained so that, for weakly paired samples (same
    pairing key, e.g. perturbation), ``f_S(z_S)`` retrieves its teacher partner ``z_T`` among the minibatch
    (one-sided InfoNCE on L2-normalised vectors, temperature 0.1). The teacher is frozen and corrected once (TVN
    on its own controls, basis-preserving, with per-batch CORAL). Every training sample gets a fresh partner
    drawn uniformly among its key's teacher samples at every step. With PEA, every training sample also gets a
    random batch correction of its batch (a random transform among centering, standardization and TVN, random
    step dropout, fitted on a random subset of the batch's controls) at every step. At inference the student
    embedding is TVN-corrected on the data's own controls and passed through the adapter.

    Controls never form pairs; student samples whose key has no teacher sample are left out of training
    (:attr:`pair_counts_` counts both).

    Ablation of the paper's Table 2 (rows are cumulative):

    ============================  ===========================================================================
    Base method                   ``pea=False, inference_tvn=False`` (raw embeddings, training and inference)
    + fixed biological aug.       ``pea=True, p_drop=0, min_control_fraction=1, inference_tvn=False``
    + inference on TVN            ``inference_tvn=True``
    + augmentation stochasticity  ``p_drop=0.5``
    + control sampling (PEA)      ``min_control_fraction=0.25`` (the default)
    ============================  ===========================================================================

    With ``pea=False, inference_tvn=True`` the adapter is trained on the TVN-corrected student.

    Parameters
    ----------
    adata
        Student AnnData set up with :meth:`setup_anndata`.
    teacher
        Teacher AnnData with ``obsm[teacher_rep]`` and the pairing-key columns; ``None`` builds a model for
        inference only (what :meth:`load` does), which then needs ``n_teacher_dims`` and ``n_keys``.
    teacher_rep
        Key of the teacher embedding in ``teacher.obsm``.
    teacher_batch_key
        Batch column of ``teacher.obs`` (for CORAL); ``None`` means the student's ``batch_key``.
    teacher_control_key
        Boolean control column of ``teacher.obs``; ``None`` means the student's ``control_key``.
    teacher_tvn
        Correct the teacher once with TVN (basis-preserving, per-batch CORAL) on its own controls; ``False`` uses
        it as given (e.g. gene-level profiles without controls).
    objective
        Registered objective: ``"semiclipped"`` (default) or ``"clip"`` (a teacher adapter as well).
    hidden_dims
        Hidden layer sizes of the student adapter.
    temperature
        InfoNCE temperature.
    objective_kwargs
        Further options of the objective: ``symmetric`` (CLIP's symmetric loss), ``learn_temperature``,
        ``mask_same_key`` (mask in-batch negatives sharing the positive's pairing key),
        ``gather_negatives`` (DDP: negatives from every rank's minibatch); for ``"clip"`` also
        ``teacher_hidden_dims``.
    recipe
        A named set of ``pea`` / ``inference_tvn`` / ``pea_transforms``: ``"base"`` (no PEA, raw inputs),
        ``"inference_tvn"`` (no PEA, TVN-corrected inputs), ``"pea"`` (the paper's recipe, the defaults) or
        ``"pea_no_whitening"`` (PEA with centering and standardization only, raw inputs); a flag given as well
        must agree (else an error). ``None``: the flags. :func:`scsemiclip.tl.fit_semiclipped` also chooses one
        (``"auto"``).
    pea
        PEA during training (needs the student's controls, at least 2 per batch); ``None``: the recipe's, else True.
    inference_tvn
        Correct the adapter's input with TVN on the data's own controls (and train on the corrected student when
        ``pea=False``); ``None``: the recipe's, else whenever the student has controls.
    pea_transforms
        Corrections PEA draws from; ``None``: the recipe's, else all three.
    p_drop
        PEA step dropout probability (0: no step dropout).
    min_control_fraction
        Smallest fraction of a batch's controls a PEA correction is fitted on (1: no control sampling).
    pea_bank_size
        PEA corrections fitted per batch at every epoch; each sample draws one of its batch at every step.
    coral_reg
        Ridge of the CORAL steps.
    eigenvalue_floor
        Robust whitening of the TVN corrections that feed the adapter (teacher and input TVN, PEA's TVN maps): no
        control direction is scaled up by more than ``1 / sqrt(eigenvalue_floor)`` times the best-conditioned one
        (docs/method.md); 0 whitens fully (the earlier fit, bit for bit).
    augmentations
        Training-time augmentations of the student minibatch, applied in order: names of
        :data:`scsemiclip.module.AUGMENTATIONS` (``"mwo"``, ``"scvi_denoise"``, ``"mdwgan_gp"``, ``"scgft"``),
        :class:`~scsemiclip.module.Augmentation` objects, and ``"pea"``, which must come last. ``None`` (default):
        PEA alone when ``pea=True``. When given, PEA runs exactly when ``"pea"`` is named (``pea=False`` with
        ``"pea"`` named is an error). The augmentations that learn from the data (``"mdwgan_gp"``'s generator,
        ``"scgft"``'s and ``"mwo"``'s per-key samples) are fitted at every :meth:`train` on the training inputs, on
        the training device; ``"scvi_denoise"`` needs the trained :class:`scvi.model.SCVI` whose posterior mean is
        ``obsm[student_rep]`` (``augmentation_kwargs={"scvi_denoise": {"scvi_model": vae}}``), whose AnnData holds
        every student row (same ``obs_names``).
    augmentation_kwargs
        Keyword arguments of the augmentations named in ``augmentations``, by name (e.g.
        ``{"mwo": {"p": 0.8}, "mdwgan_gp": {"n_steps": 500}}``).
    rng
        Seed or generator: adapter initialisation, and (drawn at each :meth:`train`) minibatch order, partner
        draws and PEA.
    n_teacher_dims, n_keys
        Teacher dimension and number of paired keys, only without ``teacher``.

    Attributes
    ----------
    pair_counts_
        Sample counts of the weak pairing: ``n_student``, ``n_student_controls``, ``n_student_paired`` (the
        training samples), ``n_student_unpaired`` (non-controls without a teacher sample of their key),
        ``n_student_keys`` and the same for the teacher, and ``n_keys_paired``; empty without ``teacher``.
    inference_tvn
        Whether the adapter's input is TVN-corrected on the data's own controls (``inference_tvn`` resolved).
    """

    _module_cls = SemiClippedModule
    _training_plan_cls = SemiClippedTrainingPlan
    _data_splitter_cls = DeviceDataSplitter
    _train_runner_cls = TrainRunner

    def __init__(
        self,
        adata: AnnData,
        teacher: AnnData | None = None,
        *,
        teacher_rep: str = "X_phenom",
        teacher_batch_key: str | None = None,
        teacher_control_key: str | None = None,
        teacher_tvn: bool = True,
        objective: str = "semiclipped",
        hidden_dims: Sequence[int] = (512, 1024),
        temperature: float = 0.1,
        objective_kwargs: dict | None = None,
        recipe: str | None = None,
        pea: bool | None = None,
        inference_tvn: bool | None = None,
        pea_transforms: Sequence[str] | None = None,
        p_drop: float = 0.5,
        min_control_fraction: float = 0.25,
        pea_bank_size: int = 16,
        coral_reg: float = 0.5,
        eigenvalue_floor: float = EIGENVALUE_FLOOR,
        augmentations: Sequence[str | Augmentation] | None = None,
        augmentation_kwargs: dict[str, dict] | None = None,
        rng: RNGLike = 0,
        n_teacher_dims: int | None = None,
        n_keys: int | None = None,
    ) -> None:
        check_key(teacher_rep, name="teacher_rep")
        check_key(teacher_batch_key, name="teacher_batch_key", none_ok=True)
        check_key(teacher_control_key, name="teacher_control_key", none_ok=True)
        check_flag(teacher_tvn, name="teacher_tvn")
        for flag, value in (("pea", pea), ("inference_tvn", inference_tvn)):
            check_flag(value, name=flag, none_ok=True)
        if pea_transforms is not None:
            check_choices(pea_transforms, name="pea_transforms", choices=TRANSFORM_STEPS)
        pea, inference_tvn, pea_transforms = resolve_recipe(
            recipe, pea=pea, inference_tvn=inference_tvn, pea_transforms=pea_transforms
        )
        check_key(objective, name="objective")
        if isinstance(hidden_dims, str) or not isinstance(hidden_dims, Sequence | np.ndarray):
            raise TypeError(f"`hidden_dims` must be a sequence of layer sizes, got {hidden_dims!r}.")
        for size in hidden_dims:
            check_int(size, name="hidden_dims", minimum=1)
        check_real(temperature, name="temperature", low=0, low_open=True)
        if objective_kwargs is not None and not isinstance(objective_kwargs, dict):
            raise TypeError(f"`objective_kwargs` must be a dict or None, got {type(objective_kwargs).__name__}.")
        check_real(p_drop, name="p_drop", low=0, high=1, high_open=True)
        check_real(min_control_fraction, name="min_control_fraction", low=0, high=1, low_open=True)
        check_int(pea_bank_size, name="pea_bank_size", minimum=1)
        check_real(coral_reg, name="coral_reg", low=0)
        check_real(eigenvalue_floor, name="eigenvalue_floor", low=0, high=1, high_open=True)
        check_int(n_teacher_dims, name="n_teacher_dims", minimum=1, none_ok=True)
        check_int(n_keys, name="n_keys", minimum=1, none_ok=True)
        resolve_rng(rng)
        augmentation_objects, pea = resolve_augmentations(augmentations, augmentation_kwargs, pea=pea)
        super().__init__(adata)
        objective_kwargs = dict(objective_kwargs or {})
        inference_tvn = self._read_setup(pea=pea, inference_tvn=inference_tvn)
        self.pea = pea
        self.inference_tvn = inference_tvn
        self.coral_reg = coral_reg
        self.eigenvalue_floor = eigenvalue_floor
        self.teacher_batch_key = self.batch_key if teacher_batch_key is None else teacher_batch_key
        self.teacher_control_key = self.control_key if teacher_control_key is None else teacher_control_key
        self._rng = resolve_rng(rng)
        x = get_rep(adata, self.student_rep)
        self.pairing: Pairing | None = None
        z = None
        if teacher is not None:
            with torch_threads():
                z = self._prepare_teacher(
                    teacher,
                    teacher_rep=teacher_rep,
                    batch_key=self.teacher_batch_key,
                    control_key=self.teacher_control_key,
                    tvn=teacher_tvn,
                )
            n_teacher_dims, n_keys = z.shape[1], len(self.pairing.keys)
        elif n_teacher_dims is None or n_keys is None:
            raise ValueError("Without `teacher` (a model for inference only) give `n_teacher_dims` and `n_keys`.")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed(self._rng))
            self.module = self._module_cls(
                x.shape[1],
                n_teacher_dims,
                n_keys=n_keys,
                hidden_dims=tuple(hidden_dims),
                objective=objective,
                temperature=temperature,
                objective_kwargs=objective_kwargs,
                pea=pea,
                pea_transforms=tuple(pea_transforms),
                p_drop=p_drop,
                min_control_fraction=min_control_fraction,
                pea_bank_size=pea_bank_size,
                coral_reg=coral_reg,
                eigenvalue_floor=eigenvalue_floor,
                augmentations=augmentation_objects,
            )
        if z is not None:
            self.module.set_teacher(torch.as_tensor(z), torch.as_tensor(self.pairing.teacher_counts))
            if pea:
                self.module.set_student_controls(*self._controls_by_batch(x))
        self.pair_counts_: dict[str, int] = dict(self.pairing.counts) if self.pairing is not None else {}
        self._model_summary_string = self._summary(objective=objective, hidden_dims=hidden_dims)
        self.init_params_ = self._get_init_params(locals())
        self.init_params_["non_kwargs"].pop("teacher", None)

    def _read_setup(self, *, pea: bool, inference_tvn: bool | None) -> bool:
        """Read the set-up columns into attributes; check the flags that need controls; resolve ``inference_tvn``."""
        setup = self.adata_manager.registry[SETUP_ARGS]
        self.student_rep: str = setup["student_rep"]
        self.pair_keys: tuple[str, ...] = tuple(setup["pair_keys"])
        self.batch_key: str | None = setup["batch_key"]
        self.control_key: str | None = setup["control_key"]
        if inference_tvn is None:
            inference_tvn = self.control_key is not None
        for flag, value in (("pea", pea), ("inference_tvn", inference_tvn)):
            if value and self.control_key is None:
                raise ValueError(
                    f"`{flag}=True` needs the student's controls, but the data was set up with `control_key=None`; "
                    f"mark the controls (pp.mark_controls) or pass `{flag}=False`."
                )
        return inference_tvn

    def _summary(self, *, objective: str, hidden_dims: Sequence[int]) -> str:
        adapter = self.module.adapter
        text = (
            f"SemiClipped: adapter {adapter[0].in_features} -> {tuple(hidden_dims)} -> {adapter[-1].out_features}, "
            f"objective {objective!r}, PEA {'on' if self.pea else 'off'}, "
            f"inference TVN {'on' if self.inference_tvn else 'off'}"
        )
        if self.pairing is not None:
            text += (
                f"; {self.pair_counts_['n_student_paired']} training samples over {len(self.pairing.keys)} pairing keys"
            )
        return text

    # ----------------------------------------------------------------------------------------------- setup
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        student_rep: str,
        pair_keys: str | Sequence[str] = ("perturbation",),
        batch_key: str | None = "batch",
        control_key: str | None = "is_control",
        **kwargs: object,
    ) -> None:
        """Register the student embedding and the pairing-key, batch and control columns of ``adata``.

        Nothing is written into ``obs`` (unlike scvi-tools' categorical fields); scvi-tools records the set-up in
        ``adata.uns["_scvi_uuid"]`` and ``adata.uns["_scvi_manager_uuid"]``.

        Parameters
        ----------
        adata
            Student AnnData.
        student_rep
            Key of the frozen student embedding in ``adata.obsm`` (dense, finite).
        pair_keys
            ``obs`` column(s) whose values pair student and teacher samples (e.g. perturbation, dose, cell line);
            checked when the model pairs with a teacher (not needed for inference).
        batch_key
            ``obs`` column of the experimental batch (PEA and CORAL are per batch); ``None``: one batch.
        control_key
            Boolean ``obs`` column marking negative controls; ``None`` when there are none (no input TVN, no PEA).
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Returns
        -------
        ``None``; writes ``adata.uns["_scvi_uuid"]`` and ``adata.uns["_scvi_manager_uuid"]``.
        """
        pair_keys = (pair_keys,) if isinstance(pair_keys, str) else tuple(pair_keys)
        if not pair_keys:
            raise ValueError("`pair_keys` must name at least one obs column.")
        setup_method_args = cls._get_setup_method_args(**locals())
        fields = [
            EmbeddingField(STUDENT_KEY, student_rep),
            ObsColumnsField(PAIR_KEYS_KEY, pair_keys, required=False),
            ObsColumnsField(BATCH_KEY, batch_key, validate=validate_batch),
            ObsColumnsField(CONTROL_KEY, control_key, validate=validate_control),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    def _prepare_teacher(
        self, teacher: AnnData, *, teacher_rep: str, batch_key: str | None, control_key: str | None, tvn: bool
    ) -> np.ndarray:
        """Pair with the teacher (sets :attr:`pairing`); returns the corrected paired teacher rows, grouped by key."""
        if not isinstance(teacher, AnnData):
            raise TypeError(f"`teacher` must be an AnnData, got {type(teacher).__name__}.")
        z = get_rep(teacher, teacher_rep, what="teacher")
        t_ctrl = (
            control_mask(teacher, control_key, what="teacher")
            if control_key is not None
            else np.zeros(teacher.n_obs, dtype=bool)
        )
        if tvn:
            if control_key is None:
                raise ValueError(
                    "`teacher_tvn=True` corrects the teacher on its own controls, but no control column is given "
                    "(`teacher_control_key` and the student's `control_key` are None); pass `teacher_control_key` "
                    "or `teacher_tvn=False`."
                )
            if not t_ctrl.any():
                raise ValueError(
                    f"The teacher has no controls (teacher.obs[{control_key!r}] is all False); `teacher_tvn=True` "
                    "corrects the teacher on its own controls: mark them (pp.mark_controls) or pass `teacher_tvn=False`."
                )
            codes, labels = batch_codes(teacher, batch_key, what="teacher")
            with _about("teacher"):  # the controls are checked before pairing, the correction runs after it
                check_controls_per_batch(t_ctrl, codes, labels, batch_key=batch_key)
        s_ctrl = (
            control_mask(self.adata, self.control_key)
            if self.control_key is not None
            else np.zeros(self.adata.n_obs, dtype=bool)
        )
        self.pairing = weak_pairs(
            self.adata.obs, teacher.obs, pair_keys=self.pair_keys, student_control=s_ctrl, teacher_control=t_ctrl
        )
        c = self.pairing.counts
        logger.info(
            "Weak pairs: %d of %d student samples over %d keys (%d controls, %d without teacher key left out); "
            "%d teacher samples.",
            c["n_student_paired"],
            c["n_student"],
            c["n_keys_paired"],
            c["n_student_controls"],
            c["n_student_unpaired"],
            c["n_teacher_paired"],
        )
        # only the paired rows are corrected, chunk by chunk, straight into float32 (no full-size copy), a group of
        # batches at a time (the maps of all batches never coexist)
        rows = self.pairing.teacher_rows
        if not tvn:
            return np.asarray(z[rows], dtype=np.float32)
        with _about("teacher"):  # codes and labels: read for the control check above
            return zca_tvn_rows(
                z,
                t_ctrl,
                codes,
                labels,
                rows=rows,
                batch_key=batch_key,
                coral_reg=self.coral_reg,
                eigenvalue_floor=self.eigenvalue_floor,
            )

    def _controls_by_batch(self, x: np.ndarray) -> tuple[torch.Tensor, list[int]]:
        """The student's raw controls grouped by batch, and their number per batch (at least 2 each)."""
        is_ctrl = control_mask(self.adata, self.control_key)
        codes, labels = batch_codes(self.adata, self.batch_key)
        with _about("adata"):
            groups = group_controls(x, is_ctrl, codes, labels, batch_key=self.batch_key)
        return torch.as_tensor(np.concatenate(groups), dtype=torch.float32), [len(g) for g in groups]

    # ----------------------------------------------------------------------------------------------- data
    def _input_maps(
        self, adata: AnnData, *, student_rep: str, batch_key: str | None, control_key: str | None
    ) -> tuple[np.ndarray, AffineMaps | None, np.ndarray | None]:
        """The student embedding, and the input TVN fitted on the data's own controls (maps and batch codes).

        Without :attr:`inference_tvn` the maps and codes are ``None``: the adapter takes the embedding as it is.
        """
        x = get_rep(adata, student_rep)
        n_input = self.module.adapter[0].in_features
        if x.shape[1] != n_input:
            raise ValueError(
                f"adata.obsm[{student_rep!r}] has {x.shape[1]} dimensions, but the model's adapter takes {n_input} "
                "(the dimension of the student embedding it was trained on)."
            )
        if not self.inference_tvn:
            return x, None, None
        if control_key is None:
            raise ValueError(
                "The model corrects its input with TVN on the data's own controls (`inference_tvn=True`), but "
                "`control_key` is None; give the boolean control column."
            )
        is_ctrl = control_mask(adata, control_key)
        codes, labels = batch_codes(adata, batch_key)
        with _about("adata"):
            maps = zca_tvn_maps(
                x,
                is_ctrl,
                codes,
                labels,
                batch_key=batch_key,
                coral_reg=self.coral_reg,
                eigenvalue_floor=self.eigenvalue_floor,
            )
            return x, maps, codes

    def _model_input(
        self, adata: AnnData, *, student_rep: str, batch_key: str | None, control_key: str | None
    ) -> np.ndarray:
        """The adapter's input for every row: the student embedding, TVN-corrected (in float32) if :attr:`inference_tvn`."""
        x, maps, codes = self._input_maps(adata, student_rep=student_rep, batch_key=batch_key, control_key=control_key)
        return x if maps is None else apply_maps(x, maps, codes, dtype=np.float32)

    def _training_tensors(self) -> dict[str, torch.Tensor]:
        """Input, batch code and key code of every row of the AnnData (raw input with PEA: it corrects online).

        The training samples are the rows ``pairing.student_rows`` (the key code of the others is -1). A float32
        embedding is shared, not copied: the data module gathers the rows of each minibatch.
        """
        if self.pea:
            x = get_rep(self.adata, self.student_rep)
        else:
            x = self._model_input(
                self.adata, student_rep=self.student_rep, batch_key=self.batch_key, control_key=self.control_key
            )
        codes, _ = batch_codes(self.adata, self.batch_key)
        key = np.full(self.adata.n_obs, -1, dtype=np.int64)
        key[self.pairing.student_rows] = self.pairing.student_codes
        return {"x": shared_float32(x), "batch": torch.as_tensor(codes), "key": torch.as_tensor(key)}

    # ----------------------------------------------------------------------------------------------- training
    def train(
        self,
        max_epochs: int = 150,
        *,
        batch_size: int = 1024,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        strategy: str | Strategy = "auto",
        train_size: float = 1.0,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        early_stopping: bool = False,
        early_stopping_monitor: str = "validation_loss",
        early_stopping_patience: int = 15,
        check_val_every_n_epoch: int = 1,
        validation_scorers: Mapping[str, Scorer] | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs: object,
    ) -> None:
        """Train the adapter (and the objective's parameters) with Lightning, optionally validated on held-out keys.

        Objectives that pre-train the student (``"kd"``, ``"shake"``, ``"c2kd"``: ``student_pretrain_steps`` in
        ``objective_kwargs``) first fit the adapter and their student classifier to the training keys, on the
        adapter's inference input (TVN-corrected when :attr:`inference_tvn`, without PEA).

        Parameters
        ----------
        max_epochs
            Number of epochs (passes over the training samples); the most, with ``early_stopping``.
        batch_size
            Minibatch size per device (the in-batch negatives); the last partial minibatch is dropped.
        accelerator, devices
            Lightning accelerator and devices (e.g. ``"gpu"``, ``4``).
        strategy
            Lightning strategy. The names ``"ddp"``, ``"ddp_spawn"``, ``"ddp_fork"`` and ``"ddp_notebook"`` become
            ``DDPStrategy(broadcast_buffers=False)`` (the frozen teacher and the controls are buffers that never
            change: broadcasting them at every step would be pure overhead). In-batch negatives are per device,
            unless ``objective_kwargs={"gather_negatives": True}`` (the global batch, see the scaling guide).
        train_size, validation_size, shuffle_set_split
            scvi-tools' split over the pairing keys (``scsemiclip.train.split_keys``): held-out keys leave
            training with all their rows and teacher partners (controls train), drawn with ``rng``. ``train_size=1``
            (default): no validation, the fit of earlier versions bit for bit.
        early_stopping, early_stopping_monitor, early_stopping_patience
            Stop when ``early_stopping_monitor`` (a metric of :attr:`history` below) has not improved for
            ``early_stopping_patience`` checks (needs a validation split; works under DDP).
        check_val_every_n_epoch
            Epochs between validation checks (the last epoch is always checked).
        validation_scorers
            Further held-out metrics logged at every check (``scsemiclip.train.Scorer``: the held-out keys' mean
            profiles and key codes -> value); :func:`~scsemiclip.tl.fit_semiclipped` adds ``validation_recall``.
        plan_kwargs
            Options of the training plan: ``optimizer`` (``"sgd"``, ``"adamw"`` or ``"adam"``), ``lr`` (1e-3),
            ``weight_decay`` (1e-4), ``momentum`` (0.95, SGD), ``eps`` (1e-8, Adam), ``lr_min`` (0.0: the end of the
            per-step cosine schedule).
        **trainer_kwargs
            Keyword arguments of :class:`scvi.train.Trainer` / :class:`lightning.pytorch.Trainer` (e.g.
            ``enable_progress_bar=False``, ``precision="bf16-mixed"``). The progress bar follows
            :data:`scsemiclip.settings` ``.progress_bar`` unless ``enable_progress_bar`` is given. Unless ``logger``
            or ``log_save_dir`` is given, the DDP ranks' history goes through a temporary folder.

        Returns
        -------
        ``None``. :attr:`history` holds ``train_loss`` and, with a split, the metrics of
        ``scsemiclip.train.HeldOut.metrics`` at every check; the best check's weights are kept.
        Sets ``train_indices`` / ``validation_indices`` (student rows), ``validation_keys_`` (held-out keys, tuples).
        Warns when an InfoNCE fit of 100 steps or more ends within 10 % of ``ln(batch_size)`` (chance).
        """
        if self.pairing is None:
            raise RuntimeError(
                "This model has no teacher (it was built for inference, e.g. by `load`); train a model built with one."
            )
        check_int(max_epochs, name="max_epochs", minimum=1)
        check_int(batch_size, name="batch_size", minimum=1)
        if isinstance(accelerator, str):
            check_choice(accelerator, name="accelerator", choices=ACCELERATORS)
        if plan_kwargs is not None and not isinstance(plan_kwargs, dict):
            raise TypeError(f"`plan_kwargs` must be a dict or None, got {type(plan_kwargs).__name__}.")
        tensors = self._training_tensors()
        seeds = [torch_seed(self._rng) for _ in range(2 + bool(len(self.module.augmentations)))]
        split = split_keys(
            *(self.pairing.student_rows, self.pairing.student_codes, len(self.pairing.keys)),
            train_size=train_size,
            validation_size=validation_size,
            shuffle_set_split=shuffle_set_split,
            seed=torch_seed(self._rng) if train_size < 1 or validation_size else 0,
        )
        if early_stopping and not len(split.validation_rows):
            raise ValueError("`early_stopping=True` needs held-out keys: give `train_size` < 1 or `validation_size`.")
        self.module.training_keys = torch.as_tensor(split.train_keys) if len(split.validation_rows) else None
        inputs = tensors["x"]
        if self.pea and (self.module.objective.student_pretrain_steps > 0 or len(split.validation_rows)):
            inputs = shared_float32(  # the adapter's inference input (PEA trains on the raw one)
                self._model_input(
                    self.adata, student_rep=self.student_rep, batch_key=self.batch_key, control_key=self.control_key
                )
            )
        rows = torch.as_tensor(split.train_rows)
        if self.module.objective.student_pretrain_steps > 0:  # unimodal pre-training (label-based objectives)
            self.module.set_student_inputs(inputs[rows], tensors["key"][rows])
        if any(a.needs_index for a in self.module.augmentations):
            tensors["index"] = torch.arange(self.adata.n_obs)
        datamodule = self._data_splitter_cls(
            tensors, batch_size=batch_size, seed=seeds[0], rows=split.train_rows, validation_rows=split.validation_rows
        )
        plan = self._training_plan_cls(self.module, seed=seeds[1], **(plan_kwargs or {}))
        if len(self.module.augmentations):
            self._prepare_augmentations(tensors, rows, seed=seeds[2], accelerator=accelerator)
        self.validation_keys_ = [k if isinstance(k, tuple) else (k,) for k in self.pairing.keys[split.validation_keys]]
        if len(split.validation_rows):
            validation = HeldOutValidation.for_split(
                inputs,
                tensors,
                split,
                control_mask(self.adata, self.control_key) if self.control_key is not None else None,
                batch_size=batch_size,
                seed=seeds[1],
                check_val_every_n_epoch=check_val_every_n_epoch,
                monitor=early_stopping_monitor,
                early_stopping=early_stopping,
                patience=early_stopping_patience,
                scorers=validation_scorers,
            )
            trainer_kwargs["callbacks"] = [*trainer_kwargs.get("callbacks", []), validation]
        del inputs  # a corrected copy of every row with PEA: the validation keeps its own rows only
        trainer_kwargs.setdefault("log_every_n_steps", max(1, min(50, datamodule.n_train // batch_size)))
        trainer_kwargs.setdefault("enable_progress_bar", settings.progress_bar)
        if trainer_kwargs["enable_progress_bar"]:
            trainer_kwargs["callbacks"] = [*trainer_kwargs.get("callbacks", []), EpochProgressBar()]
        with (
            quiet_lightning(verbose=logger.getEffectiveLevel() <= logging.DEBUG),
            torch_threads(),
            tempfile.TemporaryDirectory(prefix="scsemiclip_history_") as history_dir,
        ):
            if "logger" not in trainer_kwargs:  # scvi-tools' logger writes the DDP history here, not into the cwd
                trainer_kwargs.setdefault("log_save_dir", history_dir)
            runner = self._train_runner_cls(
                self,
                training_plan=plan,
                data_splitter=datamodule,
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                strategy=ddp_without_buffer_broadcast(strategy),
                simple_progress_bar=False,
                **trainer_kwargs,
            )
            runner()
        if plan.diverged is not None:  # raised here, outside Lightning and scvi-tools' runner (see the plan)
            self.is_trained_ = False
            raise plan.diverged
        loss = (self.history or {}).get("train_loss")
        warn_if_near_chance(
            None if loss is None or not len(loss) else float(loss.iloc[-1, 0]),
            objective=self.module.objective.name,
            batch_size=batch_size,
            n_steps=int(self.trainer.global_step),
            schedule_hint="Train longer (`max_epochs`) or with a smaller `batch_size` (tl.fit_semiclipped's default "
            "schedule takes at least 16 minibatches per epoch).",
        )

    def _prepare_augmentations(
        self, tensors: dict[str, torch.Tensor], rows: torch.Tensor, *, seed: int, accelerator: str
    ) -> None:
        """Give ``scvi_denoise`` its posterior scale, then fit the augmentations on the training rows (on the device)."""
        for augmentation in self.module.augmentations:
            if isinstance(augmentation, ScVIDenoise):
                augmentation.set_posterior(*self._scvi_posterior(augmentation.scvi_model))
        device = resolve_device(accelerator) if isinstance(accelerator, str) else torch.device("cpu")
        self.module.fit_augmentations(tensors["x"][rows].to(device), tensors["key"][rows], seed=seed)

    def _scvi_posterior(self, vae: object) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Posterior scale of every row from the scVI model; the input TVN's linear maps when the input is corrected."""
        scale = posterior_scale(vae, self.adata, self.student_rep)
        maps = None
        if not self.pea:
            _, input_maps, _ = self._input_maps(
                self.adata, student_rep=self.student_rep, batch_key=self.batch_key, control_key=self.control_key
            )
            maps = None if input_maps is None else input_maps.weight
        return scale, maps

    # ----------------------------------------------------------------------------------------------- inference
    @torch.inference_mode()
    def _adapt(
        self, x: np.ndarray, maps: AffineMaps | None, codes: np.ndarray | None, *, batch_size: int
    ) -> np.ndarray:
        """The adapter output of every row, ``batch_size`` rows at a time (input TVN included), into one float32 array."""
        device = self.module.device
        out = np.empty((x.shape[0], self.module.adapter[-1].out_features), dtype=np.float32)
        for start in range(0, x.shape[0], batch_size):
            part = slice(start, start + batch_size)
            chunk = x[part] if maps is None else apply_maps(x[part], maps, codes[part], dtype=np.float32)
            out[part] = self.module.adapter(torch.as_tensor(chunk, dtype=torch.float32).to(device)).cpu()
        return out

    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        *,
        student_rep: str | None = None,
        batch_key: str | None | EllipsisType = ...,
        control_key: str | None | EllipsisType = ...,
        batch_size: int = 16384,
    ) -> np.ndarray:
        """The adapter output ``f_S(TVN(z_S))`` for every row (controls included).

        Parameters
        ----------
        adata
            Data to embed (nothing is written into it; it is not registered); the input TVN is fitted on its own
            controls. ``None``: the model's AnnData.
        student_rep
            Key of the student embedding in ``adata.obsm`` (same encoder and dimension as the training data);
            ``None``: the model's.
        batch_key
            Batch column for the per-batch CORAL step of the input TVN; ``None``: one batch; ``...`` (default): the
            model's set-up.
        control_key
            Boolean control column (at least 2 controls per batch), read only when the model uses input TVN;
            ``...`` (default): the model's set-up.
        batch_size
            Rows per forward pass.

        Returns
        -------
        ``(n_obs, d_T)`` float32 array.
        """
        if not self.is_trained_:
            raise ValueError(
                "The model is not trained: its adapter would give random outputs; call `train()` first (or load a "
                "trained model with `SemiClipped.load`)."
            )
        check_int(batch_size, name="batch_size", minimum=1)
        if adata is not None and not isinstance(adata, AnnData):
            raise TypeError(f"`adata` must be an AnnData or None, got {type(adata).__name__}.")
        adata = self.adata if adata is None else adata
        with torch_threads():
            x, maps, codes = self._input_maps(
                adata,
                student_rep=self.student_rep if student_rep is None else student_rep,
                batch_key=self.batch_key if batch_key is ... else batch_key,
                control_key=self.control_key if control_key is ... else control_key,
            )
            return self._adapt(x, maps, codes, batch_size=batch_size)

    # ----------------------------------------------------------------------------------------------- save / load
    @property
    def setup_args(self) -> dict[str, object]:
        """The arguments that :meth:`~SemiClipped.setup_anndata` registered (``student_rep``, ``pair_keys``, ...)."""
        return dict(self.adata_manager.registry[SETUP_ARGS])

    @property
    def init_args(self) -> dict[str, object]:
        """The model's keyword arguments with their defaults resolved, as :meth:`~SemiClipped.save` stores them.

        ``teacher`` is left out; ``inference_tvn``, ``teacher_batch_key`` and ``teacher_control_key`` are the values
        in use, ``n_teacher_dims`` and ``n_keys`` those of the trained adapter, and ``rng`` the int seed (``None``
        when a Generator was given).
        """
        args = dict(self.init_params_["non_kwargs"])
        rng = args.get("rng")
        args["rng"] = int(rng) if isinstance(rng, int | np.integer) else None
        args["teacher_batch_key"] = self.teacher_batch_key
        args["teacher_control_key"] = self.teacher_control_key
        if args.get("augmentations") is not None:
            augmentations = list(self.module.augmentations)
            args["augmentations"] = [a.name for a in augmentations] + (["pea"] if self.pea else [])
            args["augmentation_kwargs"] = {a.name: a.params() for a in augmentations}
        return args

    def save(self, dir_path: str | Path, *, overwrite: bool = False) -> None:
        """Save the weights and the set-up (``dir_path/model.pt``, loadable with ``torch.load(weights_only=True)``).

        Neither the teacher nor any data is saved: :meth:`load` rebuilds the model on a student AnnData. The file
        records its format version and is written atomically (a failed save leaves no partial file).

        Parameters
        ----------
        dir_path
            Directory to create (not an existing file).
        overwrite
            Overwrite an existing directory's model file.

        Returns
        -------
        ``None``.
        """
        check_flag(overwrite, name="overwrite")
        path = Path(dir_path)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{str(path)!r} is a file; `save` writes a directory: give a directory path.")
        if path.exists() and not overwrite:
            raise ValueError(f"{str(path)!r} already exists; pass `overwrite=True` or another directory.")
        if not self.is_trained_:
            raise ValueError("The model is not trained; call `train()` before `save`.")
        path.mkdir(parents=True, exist_ok=True)
        partial = path / f".{MODEL_FILE}.partial"
        torch.save(
            {
                "model": type(self).__name__,
                "format_version": FORMAT_VERSION,
                "version": version_info(),
                "state_dict": self.module.state_dict(),
                "init_params": self.init_args,
                "setup_args": self.setup_args,
                "n_input": int(self.module.adapter[0].in_features),
                "pair_counts": {k: int(v) for k, v in self.pair_counts_.items()},
            },
            partial,
        )
        partial.replace(path / MODEL_FILE)

    @classmethod
    def load(
        cls, dir_path: str | Path, *, adata: AnnData, accelerator: str = "auto", device: int | str = "auto"
    ) -> SemiClipped:
        """Load a model saved with :meth:`~SemiClipped.save` for inference on ``adata`` (a student AnnData).

        The file is read with ``torch.load(weights_only=True)`` (no code runs) and checked before use; the errors
        name the path: a missing directory or file, a file that is not a model file, a corrupt or truncated one,
        another model class, a newer format, missing or mis-shaped tensors.

        Parameters
        ----------
        dir_path
            Directory given to :meth:`save`.
        adata
            Student AnnData with the saved set-up's ``student_rep`` (same dimension) and columns; it is set up with
            :meth:`setup_anndata` (see there for what that writes).
        accelerator, device
            Where to put the model.

        Returns
        -------
        The model, in eval mode, without teacher (it cannot be trained further).
        """
        if not isinstance(adata, AnnData):
            raise TypeError(f"`adata` must be an AnnData, got {type(adata).__name__}.")
        check_choice(accelerator, name="accelerator", choices=ACCELERATORS)
        file = model_file(dir_path)
        saved = read_model_file(file, cls.__name__)
        setup_args = saved["setup_args"]
        n_input = get_rep(adata, setup_args["student_rep"]).shape[1]
        if n_input != saved["n_input"]:
            raise ValueError(
                f"adata.obsm[{setup_args['student_rep']!r}] has {n_input} dimensions; the saved model takes "
                f"{saved['n_input']}."
            )
        known = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(saved["init_params"]) - set(known))
        if unknown:
            raise ValueError(
                f"{str(file)!r} was saved with options {unknown} that this scsemiclip's {cls.__name__} does not have "
                f"(saved by scsemiclip {saved.get('version', '?')})."
            )
        cls.setup_anndata(adata, **setup_args)
        model = cls(adata, **saved["init_params"])
        expected = {name: tuple(t.shape) for name, t in model.module.state_dict().items()}
        found = {name: tuple(t.shape) for name, t in saved["state_dict"].items()}
        wrong = sorted(name for name in set(expected) & set(found) if expected[name] != found[name])
        missing = sorted(set(expected) - set(found))
        if missing or wrong or set(found) - set(expected):
            detail = "; ".join(
                f"{what}: {', '.join(names[:5])}"
                for what, names in (
                    ("missing", missing),
                    ("mis-shaped", [f"{n} {found[n]} (expected {expected[n]})" for n in wrong]),
                    ("unexpected", sorted(set(found) - set(expected))),
                )
                if names
            )
            raise ValueError(f"{str(file)!r} does not hold this model's tensors ({detail}); the file is damaged.")
        model.module.load_state_dict(saved["state_dict"])
        model.pair_counts_ = dict(saved["pair_counts"])
        model.is_trained_ = True
        model.to_device(resolve_device(accelerator, device))
        model.module.eval()
        return model

    # ------------------------------------------------ scvi-tools members that do not apply to an adapter
    def differential_abundance(self, *args: object, **kwargs: object) -> None:
        """Not available: the adapter has no latent density to compare between groups.

        Parameters
        ----------
        *args, **kwargs
            Ignored.

        Raises
        ------
        NotImplementedError
            Always; compare embeddings with :func:`scsemiclip.tl.known_relationship_recall` instead.
        """
        _not_for_an_adapter("differential_abundance", "scsemiclip.tl.known_relationship_recall")

    def get_normalized_expression(self, *args: object, **kwargs: object) -> None:
        """Not available: the adapter maps embeddings to embeddings and has no expression decoder.

        Parameters
        ----------
        *args, **kwargs
            Ignored.

        Raises
        ------
        NotImplementedError
            Always; embed data with :meth:`get_latent_representation` instead.
        """
        _not_for_an_adapter("get_normalized_expression", "SemiClipped.get_latent_representation")


def _not_for_an_adapter(member: str, instead: str) -> None:
    """Raise the error of an inherited scvi-tools member that a Semi-Clipped adapter does not support."""
    raise NotImplementedError(
        f"SemiClipped.{member} is inherited from scvi-tools but does not apply to a Semi-Clipped adapter, which "
        f"maps a frozen embedding to another embedding (no generative model); use {instead} instead."
    )
