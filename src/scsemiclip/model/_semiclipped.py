"""The Semi-Clipped model (scvi-tools form): set-up, training, latent representation, save and load."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
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

from scsemiclip._core import group_controls, resolve_device, zca_tvn
from scsemiclip._settings import settings
from scsemiclip._utils import RNGLike, batch_codes, control_mask, get_rep, resolve_rng, torch_seed, version_info
from scsemiclip.module import SemiClippedModule
from scsemiclip.train import DeviceDataSplitter, EpochProgressBar, SemiClippedTrainingPlan, quiet_lightning

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
from ._pairing import Pairing, weak_pairs

if TYPE_CHECKING:
    from lightning.pytorch.strategies import Strategy

logger = logging.getLogger("scsemiclip")

#: File written by :meth:`SemiClipped.save`.
MODEL_FILE = "model.pt"
#: Key of the set-up arguments in scvi-tools' registry (``AnnDataManager.registry``, see ``view_registry``).
SETUP_ARGS = "setup_args"
#: Start methods of Lightning's DDP strategy names.
_DDP_START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}


@contextmanager
def _about(what: str) -> Iterator[None]:
    """Prefix the message of a ValueError raised inside with the data it is about."""
    try:
        yield
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from err


def _ddp_without_buffer_broadcast(strategy: str | Strategy) -> str | Strategy:
    """Lightning's DDP strategy names as ``DDPStrategy(broadcast_buffers=False)`` (the frozen teacher is a buffer)."""
    if isinstance(strategy, str) and strategy in _DDP_START_METHODS:
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(broadcast_buffers=False, start_method=_DDP_START_METHODS[strategy])
    return strategy


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
        ``mask_same_key`` (mask in-batch negatives sharing the positive's pairing key); for ``"clip"`` also
        ``teacher_hidden_dims``.
    pea
        PEA during training (needs the student's controls, at least 2 per batch).
    inference_tvn
        Correct the adapter's input with TVN on the data's own controls (and train on the corrected student when
        ``pea=False``); ``None``: whenever the student has controls.
    pea_transforms
        Corrections PEA draws from.
    p_drop
        PEA step dropout probability (0: no step dropout).
    min_control_fraction
        Smallest fraction of a batch's controls a PEA correction is fitted on (1: no control sampling).
    pea_bank_size
        PEA corrections fitted per batch at every epoch; each sample draws one of its batch at every step.
    coral_reg
        Ridge of the CORAL steps.
    rng
        Seed or generator: adapter initialisation, and (drawn at each :meth:`train`) minibatch order, partner
        draws and PEA.
    n_teacher_dims, n_keys
        Teacher dimension and number of paired keys, only without ``teacher``.
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
        pea: bool = True,
        inference_tvn: bool | None = None,
        pea_transforms: Sequence[str] = ("center", "standardize", "tvn"),
        p_drop: float = 0.5,
        min_control_fraction: float = 0.25,
        pea_bank_size: int = 16,
        coral_reg: float = 0.5,
        rng: RNGLike = 0,
        n_teacher_dims: int | None = None,
        n_keys: int | None = None,
    ) -> None:
        super().__init__(adata)
        objective_kwargs = dict(objective_kwargs or {})
        inference_tvn = self._read_setup(pea=pea, inference_tvn=inference_tvn)
        self.pea = pea
        self.inference_tvn = inference_tvn
        self.coral_reg = coral_reg
        self.teacher_batch_key = self.batch_key if teacher_batch_key is None else teacher_batch_key
        self.teacher_control_key = self.control_key if teacher_control_key is None else teacher_control_key
        self._rng = resolve_rng(rng)
        x = get_rep(adata, self.student_rep)
        self.pairing: Pairing | None = None
        z = None
        if teacher is not None:
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
            with _about("teacher"):
                z = zca_tvn(z, t_ctrl, codes, labels, batch_key=batch_key, coral_reg=self.coral_reg)
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
        return np.asarray(z[self.pairing.teacher_rows], dtype=np.float32)

    def _controls_by_batch(self, x: np.ndarray) -> tuple[torch.Tensor, list[int]]:
        """The student's raw controls grouped by batch, and their number per batch (at least 2 each)."""
        is_ctrl = control_mask(self.adata, self.control_key)
        codes, labels = batch_codes(self.adata, self.batch_key)
        with _about("adata"):
            groups = group_controls(x, is_ctrl, codes, labels, batch_key=self.batch_key)
        return torch.as_tensor(np.concatenate(groups), dtype=torch.float32), [len(g) for g in groups]

    # ----------------------------------------------------------------------------------------------- data
    def _model_input(
        self, adata: AnnData, *, student_rep: str, batch_key: str | None, control_key: str | None
    ) -> np.ndarray:
        """The adapter's input: the student embedding, TVN-corrected on the data's own controls if :attr:`inference_tvn`."""
        x = get_rep(adata, student_rep)
        n_input = self.module.adapter[0].in_features
        if x.shape[1] != n_input:
            raise ValueError(
                f"adata.obsm[{student_rep!r}] has {x.shape[1]} dimensions, but the model's adapter takes {n_input} "
                "(the dimension of the student embedding it was trained on)."
            )
        if not self.inference_tvn:
            return x
        if control_key is None:
            raise ValueError(
                "The model corrects its input with TVN on the data's own controls (`inference_tvn=True`), but "
                "`control_key` is None; give the boolean control column."
            )
        is_ctrl = control_mask(adata, control_key)
        codes, labels = batch_codes(adata, batch_key)
        with _about("adata"):
            return zca_tvn(x, is_ctrl, codes, labels, batch_key=batch_key, coral_reg=self.coral_reg)

    def _training_tensors(self) -> dict[str, torch.Tensor]:
        """Input, batch code and key code of every training sample (raw input with PEA: it corrects online)."""
        if self.pea:
            x = get_rep(self.adata, self.student_rep)
        else:
            x = self._model_input(
                self.adata, student_rep=self.student_rep, batch_key=self.batch_key, control_key=self.control_key
            )
        codes, _ = batch_codes(self.adata, self.batch_key)
        rows = self.pairing.student_rows
        return {
            "x": torch.as_tensor(x[rows], dtype=torch.float32),
            "batch": torch.as_tensor(codes[rows]),
            "key": torch.as_tensor(self.pairing.student_codes),
        }

    # ----------------------------------------------------------------------------------------------- training
    def train(
        self,
        max_epochs: int = 150,
        *,
        batch_size: int = 1024,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        strategy: str | Strategy = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs: object,
    ) -> None:
        """Train the adapter (and the objective's parameters) with Lightning.

        Objectives that pre-train the student (``"kd"``, ``"shake"``, ``"c2kd"``: ``student_pretrain_steps`` in
        ``objective_kwargs``) first fit the adapter and their student classifier to the pairing keys, on the
        adapter's inference input (TVN-corrected when :attr:`inference_tvn`, without PEA), see
        :meth:`SemiClippedModule.pretrain_student <scsemiclip.module.SemiClippedModule.pretrain_student>`.

        Parameters
        ----------
        max_epochs
            Number of epochs (passes over the training samples).
        batch_size
            Minibatch size per device (the in-batch negatives); the last partial minibatch is dropped.
        accelerator, devices
            Lightning accelerator and devices (e.g. ``"gpu"``, ``4``).
        strategy
            Lightning strategy. The names ``"ddp"``, ``"ddp_spawn"``, ``"ddp_fork"`` and ``"ddp_notebook"`` become
            ``DDPStrategy(broadcast_buffers=False)`` (the frozen teacher and the controls are buffers that never
            change: broadcasting them at every step would be pure overhead). In-batch negatives are per device.
        plan_kwargs
            Keyword arguments of :class:`~scsemiclip.train.SemiClippedTrainingPlan` (``optimizer``, ``lr``,
            ``weight_decay``, ``momentum``, ``eps``, ``lr_min``).
        **trainer_kwargs
            Keyword arguments of :class:`scvi.train.Trainer` / :class:`lightning.pytorch.Trainer` (e.g.
            ``enable_progress_bar=False``, ``precision="bf16-mixed"``). The progress bar follows
            :data:`scsemiclip.settings` ``.progress_bar`` unless ``enable_progress_bar`` is given: one bar per epoch in a
            terminal or notebook, a line every few seconds when the output goes to a file. Lightning's info lines
            are shown only at ``settings.verbosity = "debug"``.

        Returns
        -------
        ``None``; the losses per epoch are in :attr:`history`.
        """
        if self.pairing is None:
            raise RuntimeError(
                "This model has no teacher (it was built for inference, e.g. by `load`); train a model built with one."
            )
        tensors = self._training_tensors()
        if self.module.objective.student_pretrain_steps > 0:
            # the student's unimodal pre-training (label-based objectives) sees the adapter's inference input
            inputs = tensors["x"]
            if self.pea:
                x = self._model_input(
                    self.adata, student_rep=self.student_rep, batch_key=self.batch_key, control_key=self.control_key
                )
                inputs = torch.as_tensor(x[self.pairing.student_rows], dtype=torch.float32)
            self.module.set_student_inputs(inputs, tensors["key"])
        datamodule = self._data_splitter_cls(tensors, batch_size=batch_size, seed=torch_seed(self._rng))
        plan = self._training_plan_cls(self.module, seed=torch_seed(self._rng), **(plan_kwargs or {}))
        trainer_kwargs.setdefault("log_every_n_steps", max(1, min(50, datamodule.n_train // batch_size)))
        trainer_kwargs.setdefault("enable_progress_bar", settings.progress_bar)
        if trainer_kwargs["enable_progress_bar"]:
            trainer_kwargs["callbacks"] = [*trainer_kwargs.get("callbacks", []), EpochProgressBar()]
        with quiet_lightning(verbose=logger.getEffectiveLevel() <= logging.DEBUG):
            runner = self._train_runner_cls(
                self,
                training_plan=plan,
                data_splitter=datamodule,
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                strategy=_ddp_without_buffer_broadcast(strategy),
                simple_progress_bar=False,
                **trainer_kwargs,
            )
            runner()

    # ----------------------------------------------------------------------------------------------- inference
    @torch.inference_mode()
    def _adapt(self, x: np.ndarray, *, batch_size: int) -> np.ndarray:
        device = self.module.device
        xt = torch.as_tensor(x, dtype=torch.float32)
        out = [self.module.adapter(chunk.to(device)).cpu() for chunk in xt.split(batch_size)]
        return torch.cat(out).numpy()

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
        self._check_if_trained(warn=True)
        adata = self.adata if adata is None else adata
        x = self._model_input(
            adata,
            student_rep=self.student_rep if student_rep is None else student_rep,
            batch_key=self.batch_key if batch_key is ... else batch_key,
            control_key=self.control_key if control_key is ... else control_key,
        )
        return self._adapt(x, batch_size=batch_size)

    # ----------------------------------------------------------------------------------------------- save / load
    @property
    def setup_args(self) -> dict[str, object]:
        """The arguments the data was set up with (:meth:`setup_anndata`: ``student_rep``, ``pair_keys``, ...)."""
        return dict(self.adata_manager.registry[SETUP_ARGS])

    @property
    def init_args(self) -> dict[str, object]:
        """The model's keyword arguments with their defaults resolved, as :meth:`save` stores them.

        ``teacher`` is left out; ``inference_tvn``, ``teacher_batch_key`` and ``teacher_control_key`` are the values
        in use, ``n_teacher_dims`` and ``n_keys`` those of the trained adapter, and ``rng`` the int seed (``None``
        when a Generator was given).
        """
        args = dict(self.init_params_["non_kwargs"])
        rng = args.get("rng")
        args["rng"] = int(rng) if isinstance(rng, int | np.integer) else None
        args["teacher_batch_key"] = self.teacher_batch_key
        args["teacher_control_key"] = self.teacher_control_key
        return args

    def save(self, dir_path: str | Path, *, overwrite: bool = False) -> None:
        """Save the weights and the set-up (``dir_path/model.pt``, loadable with ``torch.load(weights_only=True)``).

        Neither the teacher nor any data is saved: :meth:`load` rebuilds the model on a student AnnData.

        Parameters
        ----------
        dir_path
            Directory to create.
        overwrite
            Overwrite an existing directory's model file.

        Returns
        -------
        ``None``.
        """
        path = Path(dir_path)
        if path.exists() and not overwrite:
            raise ValueError(f"{str(path)!r} already exists; pass `overwrite=True` or another directory.")
        path.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": type(self).__name__,
                "version": version_info(),
                "state_dict": self.module.state_dict(),
                "init_params": self.init_args,
                "setup_args": self.setup_args,
                "n_input": int(self.module.adapter[0].in_features),
                "pair_counts": {k: int(v) for k, v in self.pair_counts_.items()},
            },
            path / MODEL_FILE,
        )

    @classmethod
    def load(
        cls, dir_path: str | Path, *, adata: AnnData, accelerator: str = "auto", device: int | str = "auto"
    ) -> SemiClipped:
        """Load a model saved with :meth:`save` for inference on ``adata`` (a student AnnData).

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
        saved = torch.load(Path(dir_path) / MODEL_FILE, map_location="cpu", weights_only=True)
        if saved.get("model") != cls.__name__:
            raise ValueError(f"{str(dir_path)!r} holds a {saved.get('model')!r} model, not {cls.__name__}.")
        setup_args = saved["setup_args"]
        n_input = get_rep(adata, setup_args["student_rep"]).shape[1]
        if n_input != saved["n_input"]:
            raise ValueError(
                f"adata.obsm[{setup_args['student_rep']!r}] has {n_input} dimensions; the saved model takes "
                f"{saved['n_input']}."
            )
        cls.setup_anndata(adata, **setup_args)
        model = cls(adata, **saved["init_params"])
        model.module.load_state_dict(saved["state_dict"])
        model.pair_counts_ = dict(saved["pair_counts"])
        model.is_trained_ = True
        model.to_device(resolve_device(accelerator, device))
        model.module.eval()
        return model
