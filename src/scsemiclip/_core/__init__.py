"""The private core at the bottom of the package: pure torch / numpy, no AnnData, pandas or Lightning.

Affine corrections fitted on controls, their array-level batch form, the PEA bank, the MLP building block,
the device resolver and the retrieval / perturbation-signal kernels (average precision, energy distance).
:mod:`scsemiclip.pp`, :mod:`scsemiclip.module`, :mod:`scsemiclip.model` and :mod:`scsemiclip.tl` import these
names from here.
"""

from ._affine import (
    BASES,
    EIGENVALUE_FLOOR,
    STEPS,
    TRANSFORM_STEPS,
    AffineMaps,
    fit_coral,
    fit_corrections,
    fit_whitening,
    inverse_sqrt_psd,
    sample_control_weights,
    sample_steps,
    step_mask,
)
from ._corrections import (
    METHODS,
    apply_maps,
    check_controls_per_batch,
    correct_array,
    correction_maps,
    group_controls,
    zca_tvn_maps,
    zca_tvn_rows,
)
from ._device import ACCELERATORS, resolve_device
from ._nn import mlp
from ._pea import PEABank, check_pea_params, sample_pea_bank
from ._ranking import (
    average_precision,
    benjamini_hochberg,
    energy_distances,
    exceedance_p_values,
    mean_pairwise_cosine,
    random_ap_null,
    random_subsets,
    rank_keys,
    subset_energy_distances,
    unit_rows,
)

__all__ = [
    "ACCELERATORS",
    "BASES",
    "EIGENVALUE_FLOOR",
    "METHODS",
    "STEPS",
    "TRANSFORM_STEPS",
    "AffineMaps",
    "PEABank",
    "apply_maps",
    "average_precision",
    "benjamini_hochberg",
    "check_controls_per_batch",
    "check_pea_params",
    "correct_array",
    "correction_maps",
    "energy_distances",
    "exceedance_p_values",
    "fit_coral",
    "fit_corrections",
    "fit_whitening",
    "group_controls",
    "inverse_sqrt_psd",
    "mean_pairwise_cosine",
    "mlp",
    "random_ap_null",
    "random_subsets",
    "rank_keys",
    "resolve_device",
    "sample_control_weights",
    "sample_pea_bank",
    "sample_steps",
    "step_mask",
    "subset_energy_distances",
    "unit_rows",
    "zca_tvn_maps",
    "zca_tvn_rows",
]
