"""Shared parameter texts of the public docstrings, and the :func:`doc_params` decorator that inserts them.

A docstring names a shared text as ``{doc_<name>}`` on a line of its own, indented like a parameter name; the
texts below are written without that indentation (a parameter name at the start of a line, its description
4 spaces in), and :func:`doc_params` indents them like their placeholder. Only the placeholders given to
:func:`doc_params` are replaced, so other braces in a docstring need no escaping.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

_PLACEHOLDER = re.compile(r"^([ \t]*)\{(doc_\w+)\}[ \t]*$", re.MULTILINE)


def doc_params(**texts: str) -> Callable[[F], F]:
    """Replace the ``{doc_<name>}`` placeholders of the decorated object's docstring by ``texts``.

    Each placeholder stands alone on its line; the lines of its text after the first are indented like the
    placeholder (so one text serves functions and methods alike).

    Parameters
    ----------
    **texts
        Placeholder name (``doc_...``) -> text.

    Returns
    -------
    The decorator; it raises a :class:`KeyError` if the docstring names a placeholder it is not given, or is
    given one the docstring does not name.
    """

    def insert(match: re.Match) -> str:
        indent, name = match.group(1), match.group(2)
        first, *rest = texts[name].split("\n")
        return "\n".join([indent + first, *(indent + line if line else line for line in rest)])

    def decorate(obj: F) -> F:
        doc = obj.__doc__ or ""
        named = set(_PLACEHOLDER.findall(doc))
        if {name for _, name in named} != set(texts):
            given, found = sorted(texts), sorted(name for _, name in named)
            raise KeyError(f"{obj.__qualname__}: docstring placeholders {found} != given {given}.")
        obj.__doc__ = _PLACEHOLDER.sub(insert, doc)
        return obj

    return decorate


doc_adata_rep = """\
adata
    Annotated data with an embedding in ``obsm[use_rep]``.
use_rep
    Key of the embedding in ``adata.obsm``."""

doc_batch_key = """\
batch_key
    Column of ``adata.obs`` with the experimental batch; ``None`` for one batch."""

doc_control_key = """\
control_key
    Boolean column of ``adata.obs`` marking the negative controls (at least 2 per batch)."""

doc_copy = """\
copy
    Return a modified copy instead of writing into ``adata``."""

doc_correction_returns = """\
Returns
-------
``None``, or a modified copy if ``copy=True``; writes

``adata.obsm[key_added]``
    The corrected embedding (same shape and dtype as ``obsm[use_rep]``).
``adata.uns[key_added]``
    ``{"params": ..., "n_batches": ..., "version": ...}``."""

doc_eval_layer = """\
layer
    Layer with the expression counts that interpretability preservation decodes; ``None``: ``X``."""

doc_eval_perturbation_key = """\
perturbation_key
    ``obs`` column with the gene labels the recall aggregates by."""

doc_eval_sources = """\
sources
    Relationship databases of the recall, see :func:`~scsemiclip.tl.known_relationship_recall`."""

doc_pea = """\
transforms
    Corrections to draw from: ``"center"``, ``"standardize"``, ``"tvn"``.
p_drop
    Independent dropout probability of each step of a correction (at least one step is kept; 0: no step
    dropout).
min_control_fraction
    Smallest fraction of a batch's controls a correction is fitted on (1: no control sampling).
coral_reg
    Ridge of the CORAL step of TVN."""

doc_map_keys = """\
perturbation_key
    Column of ``adata.obs`` with the gene labels (gene symbols); ``None`` uses ``obs_names`` of a gene-level
    map.
control_key
    Boolean column of ``adata.obs`` marking the controls (dropped); ``None`` when there are none."""

doc_recall_data = f"""\
adata
    Annotated data: per sample (aggregated by ``perturbation_key``, controls dropped) or already one row
    per gene (used as it is: rows whose labels are unique are their own mean).
use_rep
    Key of the embedding in ``adata.obsm`` (``"X"`` for ``adata.X``).
{doc_map_keys}
sources
    Databases among ``"CORUM"``, ``"HuMAP"``, ``"Reactome"``, ``"SIGNOR"``, ``"StringDB"`` (see
    :func:`scsemiclip.datasets.relationships`), DataFrames with columns ``entity1, entity2`` (named
    ``custom_0``, ``custom_1``, ... in order), or a mapping from name to either."""

# ---- the tensors of the module and its objectives (B: minibatch size) --------------------------------------

doc_prepare = """\
teacher
    ``(n_teacher, d_T)`` every paired teacher sample (corrected), grouped by pairing key.
labels
    ``(n_teacher,)`` the pairing-key code of every teacher sample."""

doc_h = """\
h
    ``(B, d_student)`` student adapter outputs."""

doc_z = """\
z
    ``(B, d_T)`` the frozen teacher partner of every sample."""

doc_z_adapted = """\
z
    ``(B, d_T)`` the frozen teacher partner of every sample, passed through the teacher adapter."""

doc_labels = """\
labels
    ``(B,)`` pairing-key codes."""

doc_labels_unused = """\
labels
    ``(B,)`` pairing-key codes (not used)."""

doc_labels_classes = """\
labels
    ``(B,)`` pairing-key codes, the classes."""

doc_labels_ce = """\
labels
    ``(B,)`` pairing-key codes, the classes of the cross-entropy."""

doc_key = """\
key
    ``(B,)`` pairing-key code of every sample."""

doc_stage = """\
stage
    Lightning's stage (``"fit"``, ...); not used."""
