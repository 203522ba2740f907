"""Training and applying Semi-Clipped from AnnData / MuData (the scanpy-style entry points of the model).

The model (and with it scvi-tools and Lightning) is imported when a function runs, so ``import scsemiclip.tl``
stays light.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np

from scsemiclip._core import EIGENVALUE_FLOOR
from scsemiclip._utils import RNGLike, Timer, default_key, get_rep, storable, torch_seed, version_info
from scsemiclip._validate import check_choice, check_flag, check_int, check_key, check_real

from ._distillation import validation_recall
from ._recipes import PILOTS, SCHEDULES, VALIDATION_OPTIONS, has_validation, resolve_schedule, select_recipe

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
    recipe: str = "auto",
    schedule: str = "auto",
    pea: bool | None = None,
    inference_tvn: bool | None = None,
    p_drop: float = 0.5,
    min_control_fraction: float = 0.25,
    pea_bank_size: int = 16,
    pea_transforms: Sequence[str] | None = None,
    coral_reg: float = 0.5,
    eigenvalue_floor: float | None = None,
    augmentations: Sequence[str | Augmentation] | None = None,
    augmentation_kwargs: dict[str, dict] | None = None,
    max_epochs: int | None = None,
    batch_size: int | None = None,
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
    recipe
        ``"base"`` (no PEA, raw inputs), ``"inference_tvn"`` (no PEA, TVN-corrected inputs), ``"pea"`` (the
        paper's recipe), ``"pea_no_whitening"`` (PEA with centering and standardization, raw inputs) or ``"auto"``:
        does whitening the input help? Two pilot fits on the validation split, the first 12 epochs of the
        ``"base"`` and the ``"inference_tvn"`` full fits (their learning-rate schedule unchanged), scored by the
        held-out keys' mean phenotypic-activity mAP after output TVN when they have replicates and the data
        controls, else held-out top-1 retrieval, else the held-out loss; then the full fit of ``"pea"`` if the
        whitened input scored better, else of ``"base"`` (the fixed recipe's fit, bit for bit). At most 2.5 fixed
        fits in epochs (a full fit runs at least 16); the docs page "Validation, recipes and tuning" gives the
        measurements behind the rule. ``"auto"`` without a validation split (``schedule="paper"``, or
        fewer than 40 pairing keys) is ``"pea"`` (``"base"`` without controls); with ``pea`` / ``inference_tvn`` /
        ``pea_transforms`` given it is those flags. A fixed recipe with a flag that differs from it is an error.
    schedule
        ``"auto"``: at most 150 epochs, minibatches of at most ``n_pairs / 16`` (a power of 2 within 32..1024: at
        least 16 optimiser steps per epoch), 10 % of the pairing keys held out, early stopping on
        ``validation_loss`` (patience 15 epochs) and the best weights kept. ``"paper"``: the paper's 150 epochs
        of 1,024 pairs without validation (with ``recipe="auto"``: the paper's recipe): the fit of earlier versions
        bit for bit. ``max_epochs``, ``batch_size`` and validation options given in ``train_kwargs`` win.
    pea
        Perturbation Embedding Augmentation during training (``None``: the recipe's).
    inference_tvn
        TVN on the data's own controls before the adapter (``None``: the recipe's).
    p_drop, min_control_fraction, pea_bank_size
        PEA step dropout, smallest control fraction and corrections per batch and epoch (see
        :class:`~scsemiclip.model.SemiClipped` for the ablation of the paper's Table 2).
    pea_transforms
        Corrections PEA draws from (``"center"``, ``"standardize"``, ``"tvn"``; ``None``: the recipe's).
    coral_reg
        Ridge of the CORAL steps (teacher and input TVN, PEA).
    eigenvalue_floor
        Robust whitening of the TVN corrections that feed the adapter (teacher and input TVN, PEA's TVN maps): no
        control direction is scaled up by more than ``1 / sqrt(eigenvalue_floor)`` times the best-conditioned one
        (docs/method.md); 0 whitens fully (the earlier fit, bit for bit). ``None``: the schedule's (``"auto"``:
        ``1e-3``; ``"paper"``: 0, so that the paper's schedule gives the earlier fit bit for bit).
    augmentations
        Training-time augmentations of the student, in order: names of :data:`scsemiclip.module.AUGMENTATIONS`
        (``"mwo"``, ``"scvi_denoise"``, ``"mdwgan_gp"``, ``"scgft"``), :class:`~scsemiclip.module.Augmentation`
        objects and ``"pea"`` (last); ``None``: PEA alone when ``pea=True``. When given, PEA runs exactly when
        ``"pea"`` is named. See :class:`~scsemiclip.model.SemiClipped` (``"scvi_denoise"`` needs the scVI model).
    augmentation_kwargs
        Options of the named augmentations, by name (e.g. ``{"scvi_denoise": {"scvi_model": vae}}``).
    max_epochs
        Training epochs (the most, with early stopping); ``None``: the schedule's (150).
    batch_size
        Minibatch size per device (in-batch negatives); ``None``: the schedule's.
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
        Passed to :meth:`SemiClipped.train <scsemiclip.model.SemiClipped.train>`: the validation options of
        scvi-tools (``train_size``, ``validation_size``, ``shuffle_set_split``, ``early_stopping``,
        ``early_stopping_monitor``, ``early_stopping_patience``, ``check_val_every_n_epoch``; they override the
        schedule's), ``strategy``, ``plan_kwargs`` (its entries override ``lr`` / ``optimizer``) and Lightning
        trainer options such as ``enable_progress_bar=False``.

    Returns
    -------
    The trained model; writes into the student AnnData (for a MuData: ``adata.mod[student_mod]``)

    ``obsm[key_added]``
        ``f_S(TVN(z_S))`` for every row, controls included (float32, teacher dimension).
    ``uns[key_added]``
        ``params`` (the arguments, ``max_epochs`` / ``batch_size`` / validation options as resolved),
        ``final_losses`` (last value of each metric of the history, training and validation), ``pair_counts``
        (see :class:`~scsemiclip.model.SemiClipped`: trained, control and unpaired samples and keys on both
        sides), ``recipe`` (``chosen``: the recipe's name, ``"custom"`` for flags matching none; ``scores``: every
        candidate's score, empty unless ``"auto"`` chose; ``criterion``: how it was chosen; ``pilot_epochs``: the
        epochs of each of ``"auto"``'s two pilot fits, 0 without), ``validation_keys``
        (the held-out pairing keys) and ``version``.

    With a validation split, the model's ``history`` also holds ``validation_recall`` when at least 20 pairing keys
    are genes of the relationship databases on this machine (``tl.validation_recall``).

    The model's ``recipe_scores_`` holds the candidates' scores and ``init_args["recipe"]`` the recipe.

    Nothing else of either input is modified (the model is set up on a light copy holding ``obs`` and the
    embedding).
    """
    from scsemiclip.model import RECIPES, SemiClipped, recipe_of
    from scsemiclip.module import OBJECTIVES
    from scsemiclip.train import StopAfterEpochs

    arguments = dict(locals())
    for name in ("student_rep", "teacher_rep", "key_added", "student_mod", "teacher_mod"):
        check_key(arguments[name], name=name)
    for name in ("batch_key", "control_key", "teacher_batch_key", "teacher_control_key"):
        check_key(arguments[name], name=name, none_ok=True)
    check_int(max_epochs, name="max_epochs", minimum=1, none_ok=True)
    check_int(batch_size, name="batch_size", minimum=1, none_ok=True)
    check_real(lr, name="lr", low=0, low_open=True)
    check_key(optimizer, name="optimizer")
    check_choice(objective, name="objective", choices=sorted(OBJECTIVES))
    check_choice(recipe, name="recipe", choices=[*RECIPES, "auto"])
    check_choice(schedule, name="schedule", choices=SCHEDULES)
    student, teacher_ad = _modalities(adata, teacher, student_mod=student_mod, teacher_mod=teacher_mod)
    key = default_key(student_rep, "semiclipped", key_added)
    timer = Timer(f"fitting Semi-Clipped on obsm[{student_rep!r}] with teacher obsm[{teacher_rep!r}]")
    light = ad.AnnData(obs=student.obs.copy())
    light.obsm[student_rep] = get_rep(student, student_rep)
    SemiClipped.setup_anndata(
        light, student_rep=student_rep, pair_keys=pair_keys, batch_key=batch_key, control_key=control_key
    )
    flags = {name: arguments[name] for name in ("pea", "inference_tvn", "pea_transforms")}
    options = {name: arguments[name] for name in model_options()}
    if eigenvalue_floor is None:
        options["eigenvalue_floor"] = 0.0 if schedule == "paper" else EIGENVALUE_FLOOR
    if recipe == "auto" and any(v is not None for v in flags.values()):
        options["recipe"] = None  # the flags given decide
    elif recipe == "auto":  # chosen below when there is a validation split and controls
        options["recipe"] = "pea" if control_key is not None else "base"
    model = SemiClipped(light, teacher_ad, **options)
    max_epochs, batch_size, train_kwargs = resolve_schedule(
        schedule,
        n_pairs=model.pair_counts_["n_student_paired"],
        n_keys=model.pair_counts_["n_keys_paired"],
        max_epochs=max_epochs,
        batch_size=batch_size,
        train_kwargs=train_kwargs,
    )
    plan_kwargs = {"lr": lr, "optimizer": optimizer, **dict(train_kwargs.pop("plan_kwargs", None) or {})}
    fit = {"batch_size": batch_size, "accelerator": accelerator, "devices": devices, "plan_kwargs": plan_kwargs}
    if has_validation(train_kwargs) and "validation_scorers" not in train_kwargs:  # a screen of genes: held-out recall
        scorer = validation_recall([k[0] if isinstance(k, tuple) else k for k in model.pairing.keys])
        if scorer is not None:
            train_kwargs["validation_scorers"] = {"validation_recall": scorer}
    scores, criterion, pilot_epochs = {}, "the recipe given" if recipe != "auto" else "the flags given", 0
    if recipe == "auto" and options["recipe"] == "pea" and has_validation(train_kwargs):
        if rng is None or isinstance(rng, np.random.Generator):  # every candidate sees the same split
            options["rng"] = torch_seed(rng)

        def pilot(name: str) -> Callable[[int], SemiClipped]:
            def run(epochs: int) -> SemiClipped:
                candidate = SemiClipped(light, teacher_ad, **{**options, "recipe": name})
                callbacks = [*train_kwargs.get("callbacks", []), StopAfterEpochs(epochs)]  # the full fit's start
                pilot_kwargs = {**train_kwargs, "early_stopping": False, "check_val_every_n_epoch": epochs}
                with warnings.catch_warnings():  # a pilot is the start of a fit: not judged against chance
                    warnings.filterwarnings("ignore", message="The fit ended near chance")
                    candidate.train(
                        max_epochs, **fit, **{**pilot_kwargs, "callbacks": callbacks, "enable_progress_bar": False}
                    )
                return candidate

            return run

        pilots = {name: pilot(name) for name in PILOTS}
        chosen, scores, criterion, pilot_epochs = select_recipe(pilots, max_epochs=max_epochs)
        model = SemiClipped(light, teacher_ad, **{**options, "recipe": chosen})
    elif recipe == "auto" and options["recipe"] is not None:
        criterion = "no controls: the base recipe" if control_key is None else "no validation split: the paper's recipe"
    model.train(max_epochs, **fit, **train_kwargs)
    model.recipe_scores_ = scores
    student.obsm[key] = model.get_latent_representation()
    history = model.history or {}
    init_args = {k: v for k, v in model.init_args.items() if k not in _DATA_ARGS}
    chosen = init_args["recipe"] or recipe_of(
        pea=model.pea, inference_tvn=model.inference_tvn, pea_transforms=init_args["pea_transforms"]
    )
    validation = {name: train_kwargs[name] for name in VALIDATION_OPTIONS if name in train_kwargs}
    params = {**model.setup_args, **init_args, "max_epochs": max_epochs, "batch_size": batch_size}
    student.uns[key] = storable(
        {
            "params": {**params, "schedule": schedule, **validation, "plan_kwargs": plan_kwargs},
            "final_losses": {name: float(df.iloc[-1, 0]) for name, df in history.items() if len(df)},
            "pair_counts": model.pair_counts_,
            "recipe": {
                "chosen": chosen or "custom",
                "scores": scores,
                "criterion": criterion,
                "pilot_epochs": pilot_epochs,
            },
            "validation_keys": [list(map(str, k)) for k in model.validation_keys_],
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
