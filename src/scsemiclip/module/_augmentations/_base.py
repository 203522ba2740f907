"""The interface of a training-time augmentation of the student, its registry, and the per-key sample store.

An augmentation is a :class:`torch.nn.Module` that receives the student minibatch ``x`` (``B x d_S``, as the data
module yields it: the raw embedding when PEA runs, the adapter's inference input otherwise) with the batch code,
the pairing-key code and the row index of every sample, and returns an augmented minibatch of the same shape, on
the training device, with the module's random generator. Each sample is augmented with probability ``p``; the
teacher partner of an augmented sample is still drawn among its key's teacher samples, so a synthetic sample
keeps its key's partners. Augmentations that learn from the training set (a generator, per-key statistics) do so
once in :meth:`Augmentation.fit`, before the training, on the training inputs.

All their state lives in non-persistent buffers: it follows the module to the device but is not part of the
saved state (augmentation is training-only, a saved model needs none of it).

PEA is not an object of this registry: it is the module's bank of batch corrections (:class:`SemiClippedModule
<scsemiclip.module.SemiClippedModule>`), named ``"pea"`` in a sequence of augmentations, where it comes last:
the published augmentations are defined on the embedding itself (and fitted on the training inputs), PEA then
corrects the batch effects of whatever they produce, each sample with a random correction of its own batch.

A new augmentation is one new file in this package with a subclass decorated by :func:`register_augmentation`,
imported from ``__init__``.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Mapping, Sequence
from typing import ClassVar, NamedTuple, TypeVar

import torch
from torch import nn

from scsemiclip._validate import check_real

#: The augmentations by name (see :func:`~scsemiclip.module.register_augmentation`).
AUGMENTATIONS: dict[str, type[Augmentation]] = {}
#: Name of PEA in a sequence of augmentations.
PEA = "pea"

A = TypeVar("A", bound="type[Augmentation]")


class Minibatch(NamedTuple):
    """What an augmentation knows of the samples of a minibatch besides their embedding."""

    batch: torch.Tensor
    """``(B,)`` batch code of every sample."""
    key: torch.Tensor
    """``(B,)`` pairing-key code of every sample."""
    index: torch.Tensor | None
    """``(B,)`` row of every sample in the training inputs (``None`` unless the augmentation's ``needs_index``)."""


class Augmentation(nn.Module, abc.ABC):
    """Base class of the training-time augmentations of the student minibatch.

    Parameters
    ----------
    p
        Probability that a sample of the minibatch is replaced by its augmented version (independently per
        sample and step).
    """

    #: Name under which the augmentation is registered (set by :func:`register_augmentation`).
    name: ClassVar[str] = ""
    #: Whether :meth:`augment` reads ``index`` (the row of every sample in the training inputs).
    needs_index: ClassVar[bool] = False

    def __init__(self, *, p: float) -> None:
        super().__init__()
        self.p = check_real(p, name="p", low=0, high=1)

    def params(self) -> dict[str, float | int | bool | str]:
        """The scalar settings of the augmentation (its keyword arguments), as stored in ``uns`` and by ``save``.

        Returns
        -------
        ``{name: value}`` for every constructor argument whose value is a number, a bool or a string.
        """
        names = inspect.signature(type(self).__init__).parameters
        values = {name: getattr(self, name, None) for name in names if name != "self"}
        return {k: v for k, v in values.items() if isinstance(v, int | float | bool | str)}

    def fit(self, x: torch.Tensor, keys: torch.Tensor, *, n_keys: int, generator: torch.Generator) -> None:
        """Learn from the training inputs before the training (nothing by default).

        Parameters
        ----------
        x
            ``(n, d_S)`` the training inputs, as the data module yields them.
        keys
            ``(n,)`` pairing-key code of every row, in ``[0, n_keys)``.
        n_keys
            Number of pairing keys.
        generator
            Random generator on the device of ``x``.
        """

    @abc.abstractmethod
    def augment(self, x: torch.Tensor, minibatch: Minibatch, generator: torch.Generator | None) -> torch.Tensor:
        """The augmented version of every sample of the minibatch (before the per-sample choice with ``p``).

        Parameters
        ----------
        x
            ``(B, d_S)`` the student minibatch (float32).
        minibatch
            Batch code, pairing-key code and (when
            :attr:`~scsemiclip.module.Augmentation.needs_index`) training row of every sample.
        generator
            The module's random generator.

        Returns
        -------
        ``(B, d_S)`` float32 tensor.
        """

    def forward(
        self,
        x: torch.Tensor,
        *,
        batch: torch.Tensor,
        key: torch.Tensor,
        index: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Replace every sample with probability ``p`` by its :meth:`augment` version.

        Parameters
        ----------
        x
            ``(B, d_S)`` the student minibatch (float32).
        batch
            ``(B,)`` batch code of every sample.
        key
            ``(B,)`` pairing-key code of every sample.
        index
            ``(B,)`` row of every sample in the training inputs (needed when
            :attr:`~scsemiclip.module.Augmentation.needs_index`).
        generator
            The module's random generator.

        Returns
        -------
        ``(B, d_S)`` the augmented minibatch.
        """
        if self.needs_index and index is None:
            raise RuntimeError(f"Augmentation {self.name!r} needs the row index of every sample in the minibatch.")
        new = self.augment(x, Minibatch(batch, key, index), generator)
        if not isinstance(new, torch.Tensor) or new.shape != x.shape:
            got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
            raise ValueError(
                f"Augmentation {self.name or type(self).__name__!r} returned {got} for a minibatch of shape "
                f"{tuple(x.shape)}; `augment` must return a tensor of the minibatch's shape (B, d_S)."
            )
        if self.p >= 1.0:
            return new
        chosen = torch.rand((x.shape[0], 1), generator=generator, device=x.device) < self.p
        return torch.where(chosen, new, x)


def register_augmentation(cls: A) -> A:
    """Class decorator adding an :class:`~scsemiclip.module.Augmentation` subclass to the registry under its ``name``.

    Parameters
    ----------
    cls
        The augmentation class; its ``name`` must be new and not ``"pea"``.

    Returns
    -------
    ``cls`` unchanged.
    """
    if not cls.name or cls.name == PEA or cls.name in AUGMENTATIONS:
        raise ValueError(f"Augmentation name {cls.name!r} is empty, reserved or already registered.")
    AUGMENTATIONS[cls.name] = cls
    return cls


def build_augmentations(
    augmentations: Sequence[str | Augmentation], *, options: Mapping[str, Mapping[str, object]] | None = None
) -> tuple[tuple[Augmentation, ...], bool]:
    """Resolve a sequence of augmentation names and objects into objects, and whether it includes PEA.

    Parameters
    ----------
    augmentations
        Names of :data:`AUGMENTATIONS` (built with their defaults, or with ``options[name]``), :class:`Augmentation`
        objects and ``"pea"``, which must come last (see the module's documentation); each at most once.
    options
        Keyword arguments of the augmentations given by name, by name.

    Returns
    -------
    The augmentation objects in order (without PEA) and whether ``"pea"`` was named.
    """
    if isinstance(augmentations, str | Augmentation):
        augmentations = (augmentations,)
    options = dict(options or {})
    names = [a if isinstance(a, str) else getattr(a, "name", None) for a in augmentations]
    unused = set(options) - set(names)
    if unused:
        raise ValueError(f"Options given for {sorted(unused)}, which are not in `augmentations` {names}.")
    if PEA in names and names.index(PEA) != len(names) - 1:
        raise ValueError(
            f"'pea' must come last in `augmentations` (got {names}): the other augmentations act on the embedding "
            "itself, PEA then corrects the batch effects of what they produce."
        )
    nameless = [type(a).__name__ for a, name in zip(augmentations, names, strict=True) if name == ""]
    if nameless:
        raise ValueError(
            f'Augmentation {nameless[0]} has no `name`: give the class one (`name = "my_augmentation"`, a class '
            "attribute), by which it is stored with the model and named in messages."
        )
    out = []
    for spec, name in zip(augmentations, names, strict=True):
        if names.count(name) > 1:
            raise ValueError(f"Augmentation {name!r} is named twice in `augmentations` {names}.")
        if isinstance(spec, Augmentation):
            if name in options:
                raise ValueError(f"Options given for {name!r}, which is an object: set them on the object instead.")
            out.append(spec)
        elif not isinstance(spec, str):
            raise TypeError(f"`augmentations` holds names and Augmentation objects, got {type(spec).__name__}.")
        elif spec in AUGMENTATIONS:
            try:
                out.append(AUGMENTATIONS[spec](**options.get(spec, {})))
            except (TypeError, ValueError) as err:  # name the augmentation: `lr` or `p` alone is ambiguous
                raise type(err)(f"Augmentation {spec!r} (`augmentation_kwargs[{spec!r}]`): {err}") from None
        elif spec != PEA:
            raise KeyError(f"Unknown augmentation {spec!r}; choose among {sorted([*AUGMENTATIONS, PEA])}.")
    return tuple(out), PEA in names


class KeyGroups(nn.Module):
    """The training inputs grouped by pairing key, from which augmentations draw random samples of a key.

    Key ``k`` owns rows ``offsets[k] : offsets[k] + counts[k]`` of ``rows`` (non-persistent buffers).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rows", torch.empty(0, 0), persistent=False)
        self.register_buffer("offsets", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("counts", torch.empty(0, dtype=torch.long), persistent=False)

    def fit(self, x: torch.Tensor, keys: torch.Tensor, *, n_keys: int) -> None:
        """Store ``x`` grouped by key.

        Parameters
        ----------
        x
            ``(n, d)`` the training inputs.
        keys
            ``(n,)`` pairing-key code of every row.
        n_keys
            Number of pairing keys (keys without rows get a count of 0).
        """
        order = torch.argsort(keys, stable=True)
        self.rows = x[order].float()
        self.counts = torch.bincount(keys, minlength=n_keys).to(x.device)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts

    def draw(self, key: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Row numbers (into :attr:`rows`) of one random training sample of every key in ``key``.

        Parameters
        ----------
        key
            ``(B,)`` pairing-key codes (each with at least one training row).
        generator
            Random generator.

        Returns
        -------
        ``(B,)`` long tensor.
        """
        if self.counts.numel() == 0:
            raise RuntimeError("The augmentation was not fitted: call `fit` with the training inputs first.")
        counts = self.counts[key]
        u = torch.rand(key.shape, generator=generator, device=key.device)
        return self.offsets[key] + torch.minimum((u * counts).long(), counts - 1)


def segment_sum(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Sum of the rows of ``values`` per group (``groups[i]`` the group of row ``i``); ``(n_groups, ...)``."""
    out = values.new_zeros((n_groups, *values.shape[1:]))
    return out.index_add_(0, groups, values)
