"""Training and applying Semi-Clipped from AnnData / MuData (the scanpy-style entry points of the model).

The model (and with it scvi-tools and Lightning) is imported when a function runs, so ``import scsemiclip.tl``
stays light.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anndata as ad

from scsemiclip._utils import RNGLike, Timer, default_key, get_rep, storable, version_info
from scsemiclip._validate import check_choice, check_flag, check_int, check_key, check_real

if TYPE_CHECKING:
    from mudata import MuData

    from scsemiclip.model import SemiClipped
    from scsemiclip.module import Augmentation

#: Arguments of the model that are not options of :func:`fit_semiclipped` (set from the data).
_DATA_ARGS = ("n_teacher_dims", "n_keys")


def model_options() -> tuple[str, ...]:
    """The keyword-only options of :class:`~scsemiclip.model.SemiClipped` that :func:`fit_semiclipped` passes on."""
    from scsemiclip.model import SemiClipped

    params = inspect.signature(SemiClipped.__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in _DATA_ARGS)


def _modalities(
    adata: ad.AnnData | MuData, teacher: ad.AnnData | None, *, student_mod: str, teacher_mod: str
) -> tuple[ad.AnnData, ad.AnnData]:
    """The student and teacher AnnData from two AnnData or one MuData."""
    if isinstance(adata, ad.AnnData):
        if teacher is None:
            raise ValueError(
                "`teacher` is required when `adata` is an AnnData (or pass a MuData with modalities "
                f"{student_mod!r} and {teacher_mod!r})."
            )
        if not isinstance(teacher, ad.AnnData):
            raise TypeError(f"`teacher` must be an AnnData, got {type(teacher).__name__}.")
        return adata, teacher
    mods = getattr(adata, "mod", None)
    if not isinstance(mods, Mapping):
        raise TypeError(f"`adata` must be an AnnData or a MuData, got {type(adata).__name__}.")
    if teacher is not None:
        raise ValueError("Pass either a MuData holding both modalities or a student AnnData and `teacher`, not both.")
    for mod in (student_mod, teacher_mod):
        if mod not in mods:
            raise KeyError(f"The MuData has no modality {mod!r} (modalities: {', '.join(map(repr, mods))}).")
    return mods[student_mod], mods[teacher_mod]


def fit_semiclipped(
    adata: ad.AnnData | MuData,
    teacher: ad.AnnData | None = None,
    *,
    student_rep: str = "X_scVI",
    teacher_rep: str = "X_phenom",
    pair_keys: str | Sequence[str] = ("perturbation",),
    batch_key: str | None = "batch",
    control_key: str | None = "is_control",
    teacher_batch_key: str | None = None,
    teacher_control_key: str | None = None,
    teacher_tvn: bool = True,
    objective: str = "semiclipped",
    pea: bool = True,
    inference_tvn: bool | None = None,
    p_drop: float = 0.5,
    min_control_fraction: float = 0.25,
    pea_bank_size: int = 16,
    pea_transforms: Sequence[str] = ("center", "standardize", "tvn"),
    coral_reg: float = 0.5,
    augmentations: Sequence[str | Augmentation] | None = None,
    augmentation_kwargs: dict[str, dict] | None = None,
    max_epochs: int = 150,
    batch_size: int = 1024,
    lr: float = 1e-3,
    optimizer: str = "sgd",
    temperature: float = 0.1,
    hidden_dims: Sequence[int] = (512, 1024),
    objective_kwargs: dict | None = None,
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    rng: RNGLike = 0,
    key_added: str = "X_semiclipped",
    student_mod: str = "rna",
    teacher_mod: str = "image",
    **train_kwargs: object,
) -> SemiClipped:
    """Distil a frozen teacher embedding (microscopy) into the student (transcriptomics) with Semi-Clipped and PEA.

    Trains :class:`~scsemiclip.model.SemiClipped` on the weak pairs of the two datasets (samples sharing the
    values of ``pair_keys``; controls never pair) and embeds every student row with the trained adapter.

    Parameters
    ----------
    adata
        Student AnnData (with ``teacher``), or a MuData with modalities ``student_mod`` and ``teacher_mod``.
    teacher
        Teacher AnnData, when ``adata`` is an AnnData.
    student_rep
        Key of the frozen student embedding in ``obsm``.
    teacher_rep
        Key of the frozen teacher embedding in the teacher's ``obsm``.
    pair_keys
        ``obs`` column(s) present on both sides whose values pair samples (e.g. perturbation, dose, cell line).
        Values are compared one by one in a canonical form: integers of any size exactly (a dose of ``1``
        matches ``1.0`` and ``"1"``; 8-digit compound IDs stay distinct), other numbers at 12 significant digits,
        other values with ``str``. Missing values are an error outside the control rows.
    batch_key
        Batch column of the student (PEA and CORAL are per batch); ``None``: one batch.
    control_key
        Boolean control column of the student; ``None`` if it has no controls (no input TVN; then ``pea`` must be
        False).
    teacher_batch_key, teacher_control_key
        The teacher's columns; ``None``: the student's ``batch_key`` / ``control_key``.
    teacher_tvn
        Correct the teacher once with TVN on its own controls (basis-preserving, per-batch CORAL); ``False``: use it
        as given (e.g. gene-level profiles).
    objective
        ``"semiclipped"`` (a student adapter against the frozen teacher) or ``"clip"`` (an adapter on both sides).
    pea
        Perturbation Embedding Augmentation during training.
    inference_tvn
        TVN on the data's own controls before the adapter (``None``: when the student has controls).
    p_drop, min_control_fraction, pea_bank_size
        PEA step dropout, smallest control fraction and corrections per batch and epoch (see
        :class:`~scsemiclip.model.SemiClipped` for the ablation of the paper's Table 2).
    pea_transforms
        Corrections PEA draws from (``"center"``, ``"standardize"``, ``"tvn"``).
    coral_reg
        Ridge of the CORAL steps (teacher and input TVN, PEA).
    augmentations
        Training-time augmentations of the student, in order: names of :data:`scsemiclip.module.AUGMENTATIONS`
        (``"mwo"``, ``"scvi_denoise"``, ``"mdwgan_gp"``, ``"scgft"``), :class:`~scsemiclip.module.Augmentation`
        objects and ``"pea"`` (last); ``None``: PEA alone when ``pea=True``. When given, PEA runs exactly when
        ``"pea"`` is named. See :class:`~scsemiclip.model.SemiClipped` (``"scvi_denoise"`` needs the scVI model).
    augmentation_kwargs
        Options of the named augmentations, by name (e.g. ``{"scvi_denoise": {"scvi_model": vae}}``).
    max_epochs
        Training epochs.
    batch_size
        Minibatch size per device (in-batch negatives).
    lr
        Peak learning rate (cosine schedule).
    optimizer
        ``"sgd"`` (momentum 0.95, weight decay 1e-4, the authors'), ``"adamw"`` or ``"adam"``.
    temperature
        InfoNCE temperature.
    hidden_dims
        Hidden layers of the adapter.
    objective_kwargs
        Options of the objective (``symmetric``, ``learn_temperature``, ``mask_same_key``; ``teacher_hidden_dims``
        for CLIP).
    accelerator, devices
        Lightning accelerator and devices.
    rng
        Seed or generator (initialisation, minibatches, partners, PEA); results are deterministic on CPU.
    key_added
        Key of the result in ``obsm`` and ``uns``.
    student_mod, teacher_mod
        Modality names in a MuData.
    **train_kwargs
        Passed to :meth:`SemiClipped.train <scsemiclip.model.SemiClipped.train>` (``strategy``, ``plan_kwargs``,
        Lightning trainer options such as ``enable_progress_bar=False``); ``plan_kwargs`` entries override
        ``lr`` / ``optimizer``.

    Returns
    -------
    The trained model; writes into the student AnnData (for a MuData: ``adata.mod[student_mod]``)

    ``obsm[key_added]``
        ``f_S(TVN(z_S))`` for every row, controls included (float32, teacher dimension).
    ``uns[key_added]``
        ``params`` (the arguments), ``final_losses`` (last epoch's value of each logged training metric),
        ``pair_counts`` (see :class:`~scsemiclip.model.SemiClipped`: trained, control and unpaired samples and
        keys on both sides) and ``version``.

    Nothing else of either input is modified (the model is set up on a light copy holding ``obs`` and the
    embedding).
    """
    from scsemiclip.model import SemiClipped
    from scsemiclip.module import OBJECTIVES

    arguments = dict(locals())
    for name in ("student_rep", "teacher_rep", "key_added", "student_mod", "teacher_mod"):
        check_key(arguments[name], name=name)
    for name in ("batch_key", "control_key", "teacher_batch_key", "teacher_control_key"):
        check_key(arguments[name], name=name, none_ok=True)
    check_int(max_epochs, name="max_epochs", minimum=1)
    check_int(batch_size, name="batch_size", minimum=1)
    check_real(lr, name="lr", low=0, low_open=True)
    check_key(optimizer, name="optimizer")
    check_choice(objective, name="objective", choices=sorted(OBJECTIVES))
    student, teacher_ad = _modalities(adata, teacher, student_mod=student_mod, teacher_mod=teacher_mod)
    key = default_key(student_rep, "semiclipped", key_added)
    timer = Timer(f"fitting Semi-Clipped on obsm[{student_rep!r}] with teacher obsm[{teacher_rep!r}]")
    light = ad.AnnData(obs=student.obs.copy())
    light.obsm[student_rep] = get_rep(student, student_rep)
    SemiClipped.setup_anndata(
        light, student_rep=student_rep, pair_keys=pair_keys, batch_key=batch_key, control_key=control_key
    )
    model = SemiClipped(light, teacher_ad, **{name: arguments[name] for name in model_options()})
    plan_kwargs = {"lr": lr, "optimizer": optimizer, **dict(train_kwargs.pop("plan_kwargs", None) or {})}
    model.train(
        max_epochs,
        batch_size=batch_size,
        accelerator=accelerator,
        devices=devices,
        plan_kwargs=plan_kwargs,
        **train_kwargs,
    )
    student.obsm[key] = model.get_latent_representation()
    history = model.history or {}
    init_args = {k: v for k, v in model.init_args.items() if k not in _DATA_ARGS}
    params = {**model.setup_args, **init_args, "max_epochs": max_epochs, "batch_size": batch_size}
    student.uns[key] = storable(
        {
            "params": {**params, "plan_kwargs": plan_kwargs},
            "final_losses": {name: float(df.iloc[-1, 0]) for name, df in history.items() if len(df)},
            "pair_counts": model.pair_counts_,
            "version": version_info(),
        }
    )
    timer.done(f"added obsm[{key!r}], uns[{key!r}]")
    return model


def apply_semiclipped(
    adata: ad.AnnData,
    model: SemiClipped,
    *,
    student_rep: str | None = None,
    batch_key: str | None = "batch",
    control_key: str | None = "is_control",
    key_added: str = "X_semiclipped",
    copy: bool = False,
) -> ad.AnnData | None:
    """Embed new (e.g. out-of-distribution) data with a trained Semi-Clipped adapter.

    The student embedding is TVN-corrected on the new data's own controls (basis-preserving, per-batch CORAL; if
    the model uses input TVN), then passed through the adapter.

    Parameters
    ----------
    adata
        Data with the same kind of student embedding (same encoder, same dimension) as the training data.
    model
        A trained (or loaded) :class:`~scsemiclip.model.SemiClipped`.
    student_rep
        Key of the student embedding in ``adata.obsm``; ``None``: the model's.
    batch_key
        Batch column for the per-batch CORAL step; ``None``: one batch.
    control_key
        Boolean control column (at least 2 controls per batch); only read when the model uses input TVN.
    key_added
        Key of the result in ``obsm`` and ``uns``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a modified copy if ``copy=True``; writes

    ``obsm[key_added]``
        The adapter output for every row, controls included (float32, teacher dimension).
    ``uns[key_added]``
        ``params`` (the arguments and the model's ``inference_tvn`` and objective) and ``version``.
    """
    from scsemiclip.model import SemiClipped

    if not isinstance(model, SemiClipped):
        raise TypeError(f"`model` must be a trained scsemiclip.model.SemiClipped, got {type(model).__name__}.")
    if not model.is_trained_:
        raise ValueError("`model` is not trained (its adapter would give random outputs); train or load it first.")
    check_key(student_rep, name="student_rep", none_ok=True)
    check_key(batch_key, name="batch_key", none_ok=True)
    check_key(control_key, name="control_key", none_ok=True)
    check_key(key_added, name="key_added")
    check_flag(copy, name="copy")
    rep = model.student_rep if student_rep is None else student_rep
    key = default_key(rep, "semiclipped", key_added)
    timer = Timer(f"applying Semi-Clipped to obsm[{rep!r}]")
    out = model.get_latent_representation(adata, student_rep=rep, batch_key=batch_key, control_key=control_key)
    target = adata.copy() if copy else adata
    target.obsm[key] = out
    params = {
        "student_rep": rep,
        "batch_key": batch_key,
        "control_key": control_key,
        "inference_tvn": model.inference_tvn,
        "objective": model.init_args["objective"],
    }
    target.uns[key] = storable({"params": params, "version": version_info()})
    timer.done(f"added obsm[{key!r}], uns[{key!r}]")
    return target if copy else None
