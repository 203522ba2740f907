"""Named recipes (the flags of :class:`~scsemiclip.model.SemiClipped` under one name) and the augmentations resolved."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from scsemiclip._validate import check_choice
from scsemiclip.module import build_augmentations

if TYPE_CHECKING:
    from scsemiclip.module import Augmentation

#: Today's PEA corrections (every transform).
PEA_TRANSFORMS = ("center", "standardize", "tvn")

#: The fixed recipes and the flags they set (``pea``, ``inference_tvn``, ``pea_transforms``).
RECIPES: dict[str, dict[str, object]] = {
    "base": {"pea": False, "inference_tvn": False, "pea_transforms": PEA_TRANSFORMS},
    "inference_tvn": {"pea": False, "inference_tvn": True, "pea_transforms": PEA_TRANSFORMS},
    "pea": {"pea": True, "inference_tvn": True, "pea_transforms": PEA_TRANSFORMS},
    "pea_no_whitening": {"pea": True, "inference_tvn": False, "pea_transforms": ("center", "standardize")},
}


def resolve_recipe(
    recipe: str | None, *, pea: bool | None, inference_tvn: bool | None, pea_transforms: Sequence[str] | None
) -> tuple[bool, bool | None, tuple[str, ...]]:
    """The flags ``(pea, inference_tvn, pea_transforms)`` of ``recipe``, checked against those given explicitly.

    Parameters
    ----------
    recipe
        A name of :data:`RECIPES`, or ``None``: the flags as given, ``None`` flags at their defaults (``pea=True``,
        ``inference_tvn=None`` (whenever the student has controls), every PEA transform).
    pea, inference_tvn, pea_transforms
        Flags given explicitly (``None``: not given).

    Returns
    -------
    The resolved flags.

    Raises
    ------
    ValueError
        If ``recipe`` is not a fixed recipe name, or a flag given explicitly differs from the recipe's.
    """
    if recipe is None:
        transforms = PEA_TRANSFORMS if pea_transforms is None else tuple(pea_transforms)
        return (True if pea is None else pea), inference_tvn, transforms
    if recipe == "auto":
        raise ValueError(
            "`recipe='auto'` chooses among the fixed recipes with validation fits; the model takes a fixed recipe "
            f"({', '.join(map(repr, RECIPES))}): use scsemiclip.tl.fit_semiclipped(recipe='auto') to choose one."
        )
    check_choice(recipe, name="recipe", choices=list(RECIPES))
    flags = RECIPES[recipe]
    given = {"pea": pea, "inference_tvn": inference_tvn, "pea_transforms": pea_transforms}
    conflicts = [
        f"{name}={value!r}"
        for name, value in given.items()
        if value is not None and (tuple(value) if name == "pea_transforms" else value) != flags[name]
    ]
    if conflicts:
        raise ValueError(
            f"`recipe={recipe!r}` sets {', '.join(f'{k}={v!r}' for k, v in flags.items())}, but "
            f"{', '.join(conflicts)} was given; drop the flag(s) or `recipe` (a recipe or the flags, not both)."
        )
    return flags["pea"], flags["inference_tvn"], tuple(flags["pea_transforms"])


def recipe_of(*, pea: bool, inference_tvn: bool, pea_transforms: Sequence[str]) -> str | None:
    """The name of the fixed recipe with these (resolved) flags, ``None`` when none has them."""
    for name, flags in RECIPES.items():
        if flags["pea"] == pea and flags["inference_tvn"] == inference_tvn:
            if not pea or tuple(pea_transforms) == flags["pea_transforms"]:  # no PEA: its transforms play no part
                return name
    return None


def resolve_augmentations(
    augmentations: Sequence[str | Augmentation] | None, options: dict[str, dict] | None, *, pea: bool
) -> tuple[tuple[Augmentation, ...], bool]:
    """The augmentation objects (without PEA) and whether PEA runs (see the model's ``augmentations``)."""
    if augmentations is None:
        if options:
            raise ValueError("`augmentation_kwargs` is given without `augmentations`; name the augmentations.")
        return (), pea
    objects, named_pea = build_augmentations(augmentations, options=options)
    if named_pea and not pea:
        raise ValueError("`pea=False`, but 'pea' is named in `augmentations`; drop one of the two.")
    return objects, named_pea
