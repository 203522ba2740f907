"""A weakly paired transcriptomics / microscopy simulator with real genes and a known relationship structure.

:func:`simulate_weakly_paired` validates its arguments and runs the generative steps of its docstring in order:
the latent biology (:func:`_gene_programs`), the read-outs of the two modalities (:class:`_Student`,
:class:`_Teacher`) and of the expression (:class:`_Expression`), the perturbation conditions
(:func:`_compound_conditions`, :func:`_knockout_conditions`), then, screen by screen (:class:`_Screen`), the
plate layout and latent states (:func:`_samples`) and the AnnData of each modality (:func:`_screen_adata`).
The outputs depend on the order of the draws from each of the two random streams (``gen``, and ``count_gen`` for
the expression panel and the counts): a change of that order changes every output of a given seed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from scsemiclip._utils import RNGLike, Timer, normalize_pairs, resolve_rng, version_info

from ._relationships import SOURCES, relationships

#: Genes eligible for the latent biology must occur in at least this many of the five databases.
_MIN_SOURCES = 4
#: The teacher's batch effects are this fraction of the student's.
_TEACHER_BATCH_FACTOR = 0.1
#: Dose range in micromolar (log-spaced, highest first when there is one dose).
_DOSE_RANGE = (10.0, 0.1)
#: Scale of the loadings of the biological read-out on log expression (times 1 / sqrt(n_student_dims - n_nuisance)).
_LOADING_SCALE = 2.0
#: Scale of the loadings of the unrelated programmes on log expression, relative to _LOADING_SCALE.
_NUISANCE_LOADING = 0.15
#: Standard deviation of the per-batch, per-gene log-expression effects.
_EXPRESSION_BATCH = 0.3
#: Integer arguments and their smallest allowed value, in the order of ``uns["simulate_weakly_paired"]["params"]``.
_INT_MINIMUMS = {
    "n_compounds": 1,
    "n_doses": 1,
    "n_replicates": 1,
    "n_batches": 1,
    "n_controls": 2,
    "n_genes": 2,
    "n_ood_genes": 2,
    "n_ood_replicates": 1,
    "n_ood_batches": 1,
    "n_sc_cells": 1,
    "n_sc_batches": 1,
    "n_sc_controls": 2,
    "max_targets": 1,
    "n_latent": 1,
    "n_student_dims": 2,
    "n_nuisance": 0,
    "n_teacher_dims": 1,
    "n_panel_genes": 1,
    "smoothing_steps": 0,
}
#: Float arguments (after the integers in ``params``), True where the value must be positive, not only >= 0.
_FLOAT_POSITIVE = {
    "saturation": True,
    "stress": False,
    "bio_noise": False,
    "student_noise": False,
    "teacher_noise": False,
    "nuisance_scale": False,
    "off_target": False,
    "batch_shift": False,
    "batch_scale": False,
    "library_size": True,
    "dispersion": True,
    "sc_noise": False,
    "sc_library_size": True,
    "edge_fraction": True,
}


def _orthogonal(rng: np.random.Generator, n_rows: int, n_cols: int) -> np.ndarray:
    """An ``n_rows x n_cols`` block of a random orthogonal matrix (orthonormal rows or columns)."""
    q = np.linalg.qr(rng.normal(size=(max(n_rows, n_cols),) * 2))[0]
    return q[:n_rows, :n_cols]


def _loguniform(rng: np.random.Generator, low: float, high: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _add_batch_effects(
    rng: np.random.Generator, x: np.ndarray, batch: np.ndarray, n_batches: int, *, shift: float, scale: float
) -> np.ndarray:
    """Map each row of ``x`` to ``x S_b + m_b`` for its batch ``b``.

    ``S_b`` is symmetric positive definite (gains ``exp(scale * N(0, 1))`` along random axes) and
    ``m_b ~ shift * N(0, I)``.
    """
    dim = x.shape[1]
    axes = np.stack([_orthogonal(rng, dim, dim) for _ in range(n_batches)])
    gains = np.exp(scale * rng.normal(size=(n_batches, 1, dim)))
    scalings, shifts = (axes * gains) @ axes.transpose(0, 2, 1), shift * rng.normal(size=(n_batches, dim))
    return np.einsum("nd,nde->ne", x, scalings[batch]) + shifts[batch]


@dataclass(frozen=True)
class _Teacher:
    """Step 3, microscopy: a linear read-out of the latent state, measurement noise and weak batch effects."""

    read_out: np.ndarray  # (n_latent, n_teacher_dims), a block of a random orthogonal matrix
    noise: float
    batch_shift: float
    batch_scale: float

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        n_latent: int,
        n_dims: int,
        *,
        noise: float,
        batch_shift: float,
        batch_scale: float,
    ) -> _Teacher:
        """Draw the read-out; the batch effects are :data:`_TEACHER_BATCH_FACTOR` times the student's."""
        return cls(
            read_out=_orthogonal(rng, n_latent, n_dims),
            noise=noise,
            batch_shift=_TEACHER_BATCH_FACTOR * batch_shift,
            batch_scale=_TEACHER_BATCH_FACTOR * batch_scale,
        )

    def embed(self, rng: np.random.Generator, h: np.ndarray, batch: np.ndarray, n_batches: int) -> np.ndarray:
        """The embedding ``x_T`` of latent states ``h`` measured in batches ``batch``."""
        x = h @ self.read_out
        x = x + self.noise * rng.normal(size=x.shape)
        return _add_batch_effects(rng, x, batch, n_batches, shift=self.batch_shift, scale=self.batch_scale)


@dataclass(frozen=True)
class _Student:
    """Step 4, transcriptomics embedding: saturated programmes, stress programme and unrelated programmes, mixed."""

    saturation: float
    stress: float
    mix_bio: np.ndarray  # (n_latent, n_bio) read-out of the saturated programs
    stress_axis: np.ndarray  # (n_bio,) unit vector of the shared stress programme
    rotation: np.ndarray  # (n_student_dims, n_student_dims) orthogonal mixing of all student programmes
    noise: float
    nuisance_scale: float
    off_target: float
    batch_shift: float
    batch_scale: float

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        n_latent: int,
        n_dims: int,
        n_nuisance: int,
        saturation: float,
        stress: float,
        noise: float,
        nuisance_scale: float,
        off_target: float,
        batch_shift: float,
        batch_scale: float,
    ) -> _Student:
        """Draw the read-out (``A``, ``c`` and ``R``)."""
        n_bio = n_dims - n_nuisance
        axis = rng.normal(size=n_bio)
        mix_bio = rng.normal(size=(n_latent, n_bio)) / np.sqrt(n_latent)
        return cls(
            saturation=saturation,
            stress=stress,
            mix_bio=mix_bio,
            stress_axis=axis / np.linalg.norm(axis),
            rotation=_orthogonal(rng, n_dims, n_dims),
            noise=noise,
            nuisance_scale=nuisance_scale,
            off_target=off_target,
            batch_shift=batch_shift,
            batch_scale=batch_scale,
        )

    def embed(
        self,
        rng: np.random.Generator,
        h: np.ndarray,
        off: np.ndarray,
        batch: np.ndarray,
        n_batches: int,
        extra_noise: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The embedding ``x_S`` of latent states ``h`` with off-target directions ``off``, measured in ``batch``.

        ``extra_noise`` (single cells) is added before the batch effects. Returns the embedding, the biological
        read-out ``f(h)`` and the unrelated programmes ``u``.
        """
        bio = np.tanh(self.saturation * h) / self.saturation @ self.mix_bio
        bio += self.stress * np.sum(h**2, axis=1, keepdims=True) * self.stress_axis
        nuisance = self.nuisance_scale * rng.normal(size=off.shape) + self.off_target * off
        x = np.concatenate([bio, nuisance], axis=1) @ self.rotation
        x = x + self.noise * rng.normal(size=x.shape)
        if extra_noise > 0:
            x = x + extra_noise * rng.normal(size=x.shape)
        x = _add_batch_effects(rng, x, batch, n_batches, shift=self.batch_shift, scale=self.batch_scale)
        return x, bio, nuisance


@dataclass(frozen=True)
class _Expression:
    """Step 5, expression counts over a panel of real genes, driven by the student's programmes."""

    panel: pd.Index  # (n_panel_genes,) sorted gene symbols
    log_abundance: np.ndarray  # (n_panel_genes,)
    loadings: np.ndarray  # (n_bio, n_panel_genes) effect of the biological read-out on log expression
    nuisance_loadings: np.ndarray  # (n_nuisance, n_panel_genes) effect of the unrelated programmes
    dispersion: float

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        symbols: pd.Index,
        n_genes: int,
        *,
        n_bio: int,
        n_nuisance: int,
        dispersion: float,
    ) -> _Expression:
        """Draw the loadings, the abundances and a panel of ``n_genes`` among ``symbols``."""
        loadings = rng.normal(scale=_LOADING_SCALE / np.sqrt(n_bio), size=(n_bio, n_genes))
        nuisance_loadings = rng.normal(
            scale=_NUISANCE_LOADING * _LOADING_SCALE / np.sqrt(n_bio), size=(n_nuisance, n_genes)
        )
        log_abundance = rng.normal(size=n_genes)
        panel = pd.Index(np.sort(rng.choice(symbols, n_genes, replace=False)))
        return cls(
            panel=panel,
            log_abundance=log_abundance,
            loadings=loadings,
            nuisance_loadings=nuisance_loadings,
            dispersion=dispersion,
        )

    def counts(
        self,
        rng: np.random.Generator,
        bio: np.ndarray,
        nuisance: np.ndarray,
        batch: np.ndarray,
        n_batches: int,
        library_size: float,
    ) -> np.ndarray:
        """Negative binomial (gamma-Poisson) counts whose log-means are driven by the biological read-out.

        The unrelated programmes enter weakly, and each of the ``n_batches`` batches has per-gene effects of the
        expression's own.
        """
        batch_effect = _EXPRESSION_BATCH * rng.normal(size=(n_batches, len(self.panel)))
        logits = self.log_abundance + bio @ self.loadings + nuisance @ self.nuisance_loadings + batch_effect[batch]
        rates = np.exp(logits - logits.max(axis=1, keepdims=True))
        size = library_size * np.exp(0.25 * rng.normal(size=(len(bio), 1)))
        mean = size * rates / rates.sum(axis=1, keepdims=True)
        return rng.poisson(rng.gamma(self.dispersion, mean / self.dispersion)).astype(np.float32)


@dataclass(frozen=True)
class _Conditions:
    """The perturbation conditions of one screen (compound x dose, or gene knockouts)."""

    kind: str  # "compound" or "gene"
    control: str  # label of the negative controls
    label: np.ndarray
    dose: np.ndarray
    targets: np.ndarray
    effect: np.ndarray  # (n_conditions, n_latent)
    off_target: np.ndarray  # (n_conditions, n_nuisance)

    def samples(self, cond: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """``obs`` columns, latent effect and off-target direction of samples of conditions ``cond`` (-1: control)."""
        ctrl = cond < 0
        idx = np.where(ctrl, 0, cond)
        obs = pd.DataFrame(
            {
                "perturbation": np.where(ctrl, self.control, self.label[idx]),
                "perturbation_type": pd.Categorical(
                    np.where(ctrl, "control", self.kind), categories=["compound", "gene", "control"]
                ),
                "dose": np.where(ctrl, 0.0, self.dose[idx]),
                "is_control": ctrl,
                "targets": np.where(ctrl, "", self.targets[idx]),
            }
        )
        return obs, np.where(ctrl[:, None], 0.0, self.effect[idx]), np.where(ctrl[:, None], 0.0, self.off_target[idx])


@dataclass(frozen=True)
class _Screen:
    """One screen seen by one modality: its conditions and plate layout."""

    prefix: str  # of the batch labels and the sample names
    conditions: _Conditions
    n_replicates: int  # replicates (cells) per condition
    n_batches: int
    n_controls: int  # per batch
    library_size: float | None  # typical total count of the transcriptomics; None for microscopy (the teacher)
    extra_noise: float = 0.0  # of the student embedding, before the batch effects (single cells)


def _gene_programs(
    rng: np.random.Generator, *, n_genes: int, n_latent: int, edge_fraction: float, smoothing_steps: int
) -> tuple[pd.DataFrame, pd.Index]:
    """Step 1: real genes with unit latent programs smoothed over a random part of their known relationships.

    Returns the programs (rows: the chosen genes, sorted; columns ``"z1"``, ``"z2"``, ...) and every gene symbol
    of the databases (for the expression panel).
    """
    tables = [relationships(source) for source in SOURCES]
    n_sources = Counter(g for t in tables for g in pd.unique(t[["entity1", "entity2"]].to_numpy().ravel()))
    candidates = pd.Index(sorted(g for g, c in n_sources.items() if c >= _MIN_SOURCES))
    pairs = normalize_pairs(pd.concat(tables, ignore_index=True))
    a, b = candidates.get_indexer(pairs.entity1), candidates.get_indexer(pairs.entity2)
    inside = (a >= 0) & (b >= 0)
    adj = sparse.coo_matrix((np.ones(inside.sum()), (a[inside], b[inside])), shape=(len(candidates),) * 2).tocsr()
    adj = adj + adj.T
    degree = np.asarray(adj.sum(axis=1)).ravel()
    if n_genes > np.count_nonzero(degree):
        raise ValueError(
            f"`n_genes={n_genes}` exceeds the {np.count_nonzero(degree)} genes with known relationships in at "
            f"least {_MIN_SOURCES} of the databases."
        )
    chosen = np.sort(rng.choice(len(candidates), n_genes, replace=False, p=degree / degree.sum()))
    upper = sparse.triu(adj[chosen][:, chosen], k=1).tocoo()
    keep = rng.random(upper.nnz) < edge_fraction
    sub = sparse.coo_matrix((np.ones(keep.sum()), (upper.row[keep], upper.col[keep])), shape=(n_genes, n_genes))
    sub = (sub + sub.T + sparse.eye(n_genes)).tocsr()
    scale = sparse.diags(1 / np.sqrt(np.asarray(sub.sum(axis=1)).ravel()))
    diffusion = scale @ sub @ scale
    programs = rng.normal(size=(n_genes, n_latent))
    for _ in range(smoothing_steps):
        programs = diffusion @ programs
    programs /= np.linalg.norm(programs, axis=1, keepdims=True)
    columns = [f"z{i + 1}" for i in range(n_latent)]
    return pd.DataFrame(programs, index=candidates[chosen], columns=columns), pd.Index(sorted(n_sources))


def _layout(
    rng: np.random.Generator, *, n_conditions: int, n_replicates: int, n_batches: int, n_controls: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plate layout: condition index (-1 for controls), batch and replicate number of every sample.

    Replicate ``r`` of a condition goes to batch ``(o + r) mod n_batches`` for a random offset ``o``, so the
    replicates of a condition are in different batches (all batches when ``n_replicates == n_batches``).
    Every batch gets ``n_controls`` controls. Rows are sorted by batch.
    """
    offset = rng.integers(0, n_batches, n_conditions)
    cond = np.concatenate([np.repeat(np.arange(n_conditions), n_replicates), np.full(n_controls * n_batches, -1)])
    replicate = np.concatenate(
        [np.tile(np.arange(n_replicates), n_conditions), np.tile(np.arange(n_controls), n_batches)]
    )
    batch = np.concatenate(
        [
            (offset[:, None] + np.arange(n_replicates)[None, :]).ravel() % n_batches,
            np.repeat(np.arange(n_batches), n_controls),
        ]
    )
    order = np.argsort(batch, kind="stable")
    return cond[order], batch[order], replicate[order]


def _compound_conditions(
    rng: np.random.Generator,
    gene_programs: pd.DataFrame,
    *,
    n_compounds: int,
    n_doses: int,
    max_targets: int,
    n_nuisance: int,
) -> _Conditions:
    """Step 2, the compound screen: targets, direction, potency and Hill response of each compound and dose.

    Conditions are compound x dose, compound-major.
    """
    genes, programs = gene_programs.index, gene_programs.to_numpy()
    n_latent = programs.shape[1]
    targets, directions = [], np.empty((n_compounds, n_latent))
    for c in range(n_compounds):
        hit = np.sort(rng.choice(len(genes), rng.integers(1, max_targets + 1), replace=False))
        directions[c] = rng.dirichlet(np.ones(hit.size)) @ programs[hit]
        targets.append(";".join(genes[hit]))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    doses = np.geomspace(*_DOSE_RANGE, n_doses)[::-1]
    potency, ec50 = _loguniform(rng, 0.7, 2.5, n_compounds), _loguniform(rng, 0.3, 3.0, n_compounds)
    strength = potency[:, None] * doses[None, :] / (doses[None, :] + ec50[:, None])
    return _Conditions(
        kind="compound",
        control="DMSO",
        label=np.repeat([f"CPD{c + 1:04d}" for c in range(n_compounds)], n_doses),
        dose=np.tile(doses, n_compounds),
        targets=np.repeat(targets, n_doses),
        effect=(directions[:, None, :] * strength[:, :, None]).reshape(-1, n_latent),
        off_target=np.repeat(rng.normal(size=(n_compounds, n_nuisance)), n_doses, axis=0),
    )


def _knockout_conditions(
    rng: np.random.Generator, gene_programs: pd.DataFrame, *, n_ood_genes: int, n_nuisance: int
) -> _Conditions:
    """Step 2, the knockouts of the OOD screens: ``n_ood_genes`` of the genes, each with effect ``a_g z_g``."""
    genes, programs = gene_programs.index, gene_programs.to_numpy()
    ko = np.sort(rng.choice(len(genes), n_ood_genes, replace=False))
    return _Conditions(
        kind="gene",
        control="non-targeting",
        label=genes[ko].to_numpy(),
        dose=np.full(n_ood_genes, np.nan),
        targets=genes[ko].to_numpy(),
        effect=_loguniform(rng, 0.5, 2.0, n_ood_genes)[:, None] * programs[ko],
        off_target=rng.normal(size=(n_ood_genes, n_nuisance)),
    )


def _samples(
    rng: np.random.Generator, screen: _Screen, bio_noise: float
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Step 2 for the samples of one screen: plate layout, ``obs`` and latent states.

    Returns ``obs``, the latent states ``h = effect + bio_noise * N(0, I)``, the off-target directions scaled by
    the size of the effect (``|effect| * o_p``) and the batch index of every sample.
    """
    cond, batch, replicate = _layout(
        rng,
        n_conditions=len(screen.conditions.label),
        n_replicates=screen.n_replicates,
        n_batches=screen.n_batches,
        n_controls=screen.n_controls,
    )
    obs, effect, off = screen.conditions.samples(cond)
    obs.insert(0, "batch", pd.Categorical([f"{screen.prefix}{b + 1}" for b in batch]))
    obs["replicate"] = replicate
    obs.index = pd.Index([f"{screen.prefix}_{i:05d}" for i in range(len(obs))])
    h = effect + bio_noise * rng.normal(size=effect.shape)
    return obs, h, np.linalg.norm(effect, axis=1, keepdims=True) * off, batch


def _screen_adata(
    rng: np.random.Generator,
    count_rng: np.random.Generator,
    screen: _Screen,
    *,
    teacher: _Teacher,
    student: _Student,
    expression: _Expression,
    bio_noise: float,
) -> ad.AnnData:
    """Steps 2 to 6 for one screen: the AnnData of its samples, seen by microscopy or by transcriptomics.

    ``count_rng`` is the stream of the counts (step 5), ``rng`` that of everything else.
    """
    obs, h, off, batch = _samples(rng, screen, bio_noise)
    if screen.library_size is None:
        adata = ad.AnnData(obs=obs)
        adata.obsm["X_phenom"] = teacher.embed(rng, h, batch, screen.n_batches)
    else:
        x, bio, nuisance = student.embed(rng, h, off, batch, screen.n_batches, screen.extra_noise)
        counts = expression.counts(count_rng, bio, nuisance, batch, screen.n_batches, screen.library_size)
        adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=expression.panel))
        adata.obsm["X_emb"] = x
    adata.obsm["X_latent"] = h
    return adata


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_float(name: str, value: object, *, positive: bool = False) -> float:
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ValueError(f"`{name}` must be a {'positive' if positive else 'non-negative'} number, got {value!r}.")
    return float(value)


def _check_arguments(args: dict[str, object]) -> dict[str, float | int]:
    """Validate the arguments of :func:`simulate_weakly_paired` (its ``locals()``); returns them but ``rng``."""
    p: dict[str, float | int] = {name: _check_int(name, args[name], lo) for name, lo in _INT_MINIMUMS.items()}
    p |= {name: _check_float(name, args[name], positive=pos) for name, pos in _FLOAT_POSITIVE.items()}
    if p["edge_fraction"] > 1:
        raise ValueError(f"`edge_fraction` must be in (0, 1], got {args['edge_fraction']!r}.")
    if p["n_ood_genes"] > p["n_genes"]:
        raise ValueError(
            f"`n_ood_genes={p['n_ood_genes']}` exceeds `n_genes={p['n_genes']}`; the knockouts are among them."
        )
    if p["max_targets"] > p["n_genes"]:
        raise ValueError(f"`max_targets={p['max_targets']}` exceeds `n_genes={p['n_genes']}`.")
    if p["n_nuisance"] >= p["n_student_dims"]:
        raise ValueError(
            f"`n_nuisance={p['n_nuisance']}` must be smaller than `n_student_dims={p['n_student_dims']}` "
            "(the rest carries biology)."
        )
    return p


def simulate_weakly_paired(
    *,
    n_compounds: int = 300,
    n_doses: int = 3,
    n_replicates: int = 4,
    n_batches: int = 4,
    n_controls: int = 32,
    n_genes: int = 600,
    n_ood_genes: int = 400,
    n_ood_replicates: int = 3,
    n_ood_batches: int = 3,
    n_sc_cells: int = 8,
    n_sc_batches: int = 3,
    n_sc_controls: int = 64,
    max_targets: int = 3,
    n_latent: int = 8,
    n_student_dims: int = 32,
    n_nuisance: int = 8,
    n_teacher_dims: int = 16,
    n_panel_genes: int = 500,
    edge_fraction: float = 0.5,
    smoothing_steps: int = 3,
    saturation: float = 2.0,
    stress: float = 1.5,
    bio_noise: float = 0.05,
    student_noise: float = 0.1,
    teacher_noise: float = 0.1,
    nuisance_scale: float = 2.0,
    off_target: float = 0.1,
    batch_shift: float = 3.0,
    batch_scale: float = 0.1,
    library_size: float = 20000.0,
    dispersion: float = 10.0,
    sc_noise: float = 0.5,
    sc_library_size: float = 1000.0,
    rng: RNGLike = 0,
) -> dict[str, ad.AnnData]:
    r"""Simulate a weakly paired transcriptomics (student) / microscopy (teacher) screen with real genes.

    The default data of the tutorials, the command line and the model's acceptance test: a compound screen seen
    by both modalities (weak pairs by compound and dose, never by replicate) and two out-of-distribution (OOD)
    gene-knockout screens in new batches, one of bulk samples and one of single cells, on which
    known-relationship recall (:func:`scsemiclip.tl.known_relationship_recall`) measures what a student embedding
    has learnt and interpretability preservation (:func:`scsemiclip.tl.interpretability_preservation`) how much
    of the expression it still explains.

    **Generative model.**

    1. *Latent biology.* ``n_genes`` real genes are drawn (probability proportional to their degree) among the
       genes with relationships in at least 4 of the five databases of :func:`scsemiclip.datasets.relationships`.
       A random ``edge_fraction`` of the known relationships among them forms a graph; each gene's latent
       program ``z_g`` (``n_latent`` dims) is Gaussian noise diffused ``smoothing_steps`` times over that graph
       (symmetric normalised adjacency with self-loops), scaled to unit norm. Related genes thus have similar
       programs and recall is bounded by how much of the databases the graph carries.
    2. *Perturbations.* A compound hits 1 to ``max_targets`` genes (Dirichlet weights) and acts along the unit
       direction of the weighted sum of their programs, with a potency (log-uniform in [0.7, 2.5]) times a
       Hill response ``dose / (dose + EC50)`` (EC50 log-uniform in [0.3, 3] µM; ``n_doses`` doses log-spaced
       from 0.1 to 10 µM). A knockout of gene ``g`` has effect ``a_g z_g`` with a strength ``a_g`` log-uniform
       in [0.5, 2]. Each sample's latent state is ``h = effect + bio_noise * N(0, I)`` (``effect = 0`` for
       controls).
    3. *Teacher (microscopy)*, strong and linear: ``x_T = h W + teacher_noise * N(0, I)`` with ``W`` a block
       of a random orthogonal matrix (``n_latent x n_teacher_dims``), then the batch effect below at a tenth
       of the student's strength.
    4. *Student (transcriptomics)*, weak and nonlinear: each latent program's read-out saturates and strong
       perturbations of any kind trigger one shared stress programme,
       ``f(h) = tanh(saturation * h) / saturation @ A + stress * |h|^2 c`` (``A`` Gaussian, ``c`` a unit
       vector; ``n_student_dims - n_nuisance`` dims), and ``n_nuisance`` unrelated programmes
       ``u = nuisance_scale * N(0, I) + off_target * |effect| * o_p`` (cell-state variation plus off-target
       effects ``o_p ~ N(0, I)`` specific to each compound or gene) are added. The embedding is
       ``x_S = [f(h), u] R + student_noise * N(0, I)`` (``R`` random orthogonal), then batch ``b`` maps it
       to ``x_S S_b + m_b`` (``S_b`` symmetric positive definite: gains ``exp(batch_scale * N(0, 1))`` along
       random axes; ``m_b ~ batch_shift * N(0, I)``).
    5. *Expression counts* over ``n_panel_genes`` real gene symbols, driven by the biology: the student's
       biological read-out ``f(h)`` of step 4 (before the mixing ``R``), a weak trace of its unrelated
       programmes ``u``, and batch effects of the expression's own,
       ``counts ~ NB(mean = l * softmax(beta + f(h) L + u M + e_b), inverse dispersion = dispersion)``, with
       ``beta ~ N(0, 1)`` (gene abundance), ``L ~ N(0, 4 / (n_student_dims - n_nuisance))``,
       ``M ~ N(0, 0.09 / (n_student_dims - n_nuisance))`` (loadings 0.15 times those of the biology),
       ``e_b ~ N(0, 0.3^2)`` per batch and gene, and a library size ``l`` log-normal (sd 0.25 in log) around
       ``library_size``. The embedding's measurement noise and batch effects (``S_b``, ``m_b``) do not enter
       ``X``. Of the per-gene variance of the log-normalised counts (compound screen, defaults) the biology
       explains about 55 %, the batches about 7 %, the unrelated programmes about 10 %, and the rest is counting
       noise. So ``obsm["X_emb"]`` carries what drives ``X`` (linearly, within a batch) under strong programmes
       and batch effects that ``X`` barely shows, like an encoder that amplifies cell-state variation, and an
       embedding without those programmes (the teacher's, or a distilled one) can explain ``X`` about as well
       as the student (interpretability preservation).
       A 32-component PCA of the log-normalised counts (fitted on the compound screen or on the knockout
       screen) has an OOD recall of about 0.17, close to ``X_emb``'s. The panel and all counts draw from
       their own random stream, so changing ``n_panel_genes``, ``library_size``, ``dispersion`` or
       ``sc_library_size`` leaves the embeddings unchanged.
    6. *Single-cell knockout screen* (``"ood_sc"``, transcriptomics only), a shift from bulk to single-cell
       transcriptomics like the paper's SC-RPE1 evaluation: the same knockouts (genes, strengths and off-target
       programmes) in ``n_sc_batches`` new batches, ``n_sc_cells`` cells per knockout (spread over the batches
       as replicates are) and ``n_sc_controls`` non-targeting cells per batch. A cell follows steps 2, 4 and 5
       like a bulk sample (same latent biology, same read-out, new batch effects of the same strength), except
       that its embedding gets extra noise ``sc_noise * N(0, I)`` before the batch effect (an encoder of
       sparse profiles) and its counts a library size around ``sc_library_size`` (with the defaults about half
       of the counts are zeros). This screen is simulated last, so its parameters leave the other outputs
       unchanged.

    Why distillation can help here: TVN and cosine similarity are blind to invertible linear maps, so
    the student's handicap is nonlinear (saturating read-outs, and the stress programme that grows with
    ``|h|^2`` and dominates the direction of strong perturbations) plus perturbation-specific off-target
    programmes, and the teacher has fewer dimensions than the student. A map from student to teacher learnt on
    the compound screen removes much of it on the knockout screen. With the defaults (3 seeds) the OOD recall
    (TVN, mean per gene, mean of the five databases) is about 0.43 for the teacher, 0.18 for the student
    embedding and 0.32 after a one-hidden-layer MLP regression of the teacher on the student fitted on the
    compounds (random: 0.10); on the single-cell screen, 0.12 for the student embedding and 0.23 after the
    same MLP. TVN does not remove the batch shifts (they are large, so that PEA matters) nor all of the batch
    scalings: an adapter applied to the new batches of a knockout screen must be robust to what is left.

    Parameters
    ----------
    n_compounds
        Compounds of the compound screen.
    n_doses
        Doses per compound.
    n_replicates
        Replicates per compound and dose in each modality (student and teacher replicates are different
        samples).
    n_batches
        Batches of the compound screen (in each modality).
    n_controls
        Negative controls per batch (DMSO in the compound screen, non-targeting guides in the knockout screen),
        at least 2.
    n_genes
        Genes of the latent biology (targets of compounds and knockouts).
    n_ood_genes
        Genes knocked out in the OOD screen (a random subset of the ``n_genes``).
    n_ood_replicates, n_ood_batches
        Replicates per knockout and batches of the OOD screen.
    n_sc_cells, n_sc_batches, n_sc_controls
        Cells per knockout, batches, and non-targeting cells per batch (at least 2) of the single-cell screen.
    max_targets
        Largest number of genes hit by one compound.
    n_latent
        Dimension of the latent biology.
    n_student_dims
        Dimension of the student embedding ``obsm["X_emb"]``.
    n_nuisance
        How many of the student's dimensions carry unrelated programmes.
    n_teacher_dims
        Dimension of the teacher embedding ``obsm["X_phenom"]``.
    n_panel_genes
        Genes of the expression panel (``var_names`` of the student).
    edge_fraction
        Share of the known relationships among the chosen genes that shape the latent programs, in (0, 1].
    smoothing_steps
        Diffusion steps over the relationship graph (more: related genes more alike).
    saturation
        Gain of the student's saturating read-out (larger: more nonlinear), positive.
    stress
        Strength of the shared stress programme in the student.
    bio_noise, student_noise, teacher_noise
        Standard deviations of the biological replicate noise (both modalities) and of each modality's
        measurement noise.
    nuisance_scale, off_target
        Standard deviation of the unrelated programmes and strength of the off-target programmes.
    batch_shift, batch_scale
        Strength of the student's batch shifts and batch-specific scalings (the teacher's are 10 times weaker).
    library_size, dispersion
        Typical total count per sample and negative-binomial inverse dispersion of ``X``.
    sc_noise, sc_library_size
        Standard deviation of the extra noise of a single cell's embedding, and typical total count per cell.
    rng
        Seed or :class:`numpy.random.Generator`; the same seed gives the same data.

    Returns
    -------
    A dict of five AnnData objects:

    ``"student"``
        Compound screen, transcriptomics: ``X`` counts (float32, ``n_panel_genes`` real gene symbols),
        ``obsm["X_emb"]`` the student embedding.
    ``"teacher"``
        Compound screen, microscopy (other replicates, other batches): no ``X`` variables,
        ``obsm["X_phenom"]`` the teacher embedding.
    ``"ood"``
        Knockout screen, transcriptomics, in new batches (as ``"student"``): the out-of-distribution set.
    ``"ood_teacher"``
        The same knockouts seen by microscopy (as ``"teacher"``), for reference (e.g. the teacher's recall).
    ``"ood_sc"``
        The same knockouts in a single-cell screen, transcriptomics (as ``"student"``, one row per cell), in new
        batches: a second out-of-distribution set.

    Each has

    ``obs["batch"]``
        Categorical batch label, distinct per screen and modality (``"tx1"``, ``"img1"``, ``"tx_ko1"``,
        ``"img_ko1"``, ``"tx_sc1"``, ...).
    ``obs["perturbation"]``
        Compound id (``"CPD0001"``, ...), knocked-out gene symbol, or ``"DMSO"`` / ``"non-targeting"`` for
        controls.
    ``obs["perturbation_type"]``
        ``"compound"``, ``"gene"`` or ``"control"`` (categorical).
    ``obs["dose"]``
        Dose in µM (0 for controls, NaN for knockouts).
    ``obs["is_control"]``
        Boolean, True for the negative controls (``n_controls`` in every batch, ``n_sc_controls`` in the
        single-cell screen).
    ``obs["replicate"]``
        Replicate (or cell) number within the condition, or control number within the batch.
    ``obs["targets"]``
        Genes hit by the perturbation, ``";"``-separated (the gene itself for a knockout, ``""`` for controls).
    ``obsm["X_latent"]``
        The sample's latent biological state ``h`` (ground truth).
    ``uns["simulate_weakly_paired"]``
        ``{"params": <the arguments but rng>, "gene_programs": DataFrame (genes x latent dims), "version": ...}``.
    """
    timer = Timer("simulating weakly paired data")
    params = _check_arguments(locals())
    gen = resolve_rng(rng)
    # the expression panel and the counts draw from their own stream, so that they leave the embeddings unchanged
    count_gen = np.random.default_rng(gen.integers(2**63))
    gene_programs, symbols = _gene_programs(
        gen, n_genes=n_genes, n_latent=n_latent, edge_fraction=edge_fraction, smoothing_steps=smoothing_steps
    )
    student = _Student.draw(
        gen,
        n_latent=n_latent,
        n_dims=n_student_dims,
        n_nuisance=n_nuisance,
        saturation=saturation,
        stress=stress,
        noise=student_noise,
        nuisance_scale=nuisance_scale,
        off_target=off_target,
        batch_shift=batch_shift,
        batch_scale=batch_scale,
    )
    teacher = _Teacher.draw(
        gen, n_latent, n_teacher_dims, noise=teacher_noise, batch_shift=batch_shift, batch_scale=batch_scale
    )
    n_bio = n_student_dims - n_nuisance
    expression = _Expression.draw(
        count_gen, symbols, n_panel_genes, n_bio=n_bio, n_nuisance=n_nuisance, dispersion=dispersion
    )
    compounds = _compound_conditions(
        gen, gene_programs, n_compounds=n_compounds, n_doses=n_doses, max_targets=max_targets, n_nuisance=n_nuisance
    )
    knockouts = _knockout_conditions(gen, gene_programs, n_ood_genes=n_ood_genes, n_nuisance=n_nuisance)
    # the single-cell screen comes last, so that it leaves the others unchanged
    screens = {
        "student": _Screen("tx", compounds, n_replicates, n_batches, n_controls, library_size),
        "teacher": _Screen("img", compounds, n_replicates, n_batches, n_controls, None),
        "ood": _Screen("tx_ko", knockouts, n_ood_replicates, n_ood_batches, n_controls, library_size),
        "ood_teacher": _Screen("img_ko", knockouts, n_ood_replicates, n_ood_batches, n_controls, None),
        "ood_sc": _Screen("tx_sc", knockouts, n_sc_cells, n_sc_batches, n_sc_controls, sc_library_size, sc_noise),
    }
    out = {}
    for name, screen in screens.items():
        adata = _screen_adata(
            gen, count_gen, screen, teacher=teacher, student=student, expression=expression, bio_noise=bio_noise
        )
        adata.uns["simulate_weakly_paired"] = {
            "params": dict(params),
            "gene_programs": gene_programs.copy(),
            "version": version_info(),
        }
        out[name] = adata
    timer.done(", ".join(f"{k}: {v.n_obs} samples" for k, v in out.items()))
    return out
