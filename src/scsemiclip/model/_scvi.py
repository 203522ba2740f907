"""The posterior of a trained scVI model at the student's rows, for the ``scvi_denoise`` augmentation."""

from __future__ import annotations

import numpy as np
import torch
from anndata import AnnData

from scsemiclip._utils import get_rep


def posterior_scale(vae: object, adata: AnnData, student_rep: str) -> torch.Tensor:
    """Posterior standard deviation of every row of ``adata`` under ``vae``, whose latent mean is ``obsm[student_rep]``.

    Parameters
    ----------
    vae
        A trained ``scvi.model.SCVI`` with its AnnData, which holds every row of ``adata`` (matched by ``obs_names``).
    adata
        The student AnnData.
    student_rep
        Its ``obsm`` key, the posterior mean of ``vae`` (``get_latent_representation()``).

    Returns
    -------
    ``(n_obs, n_latent)`` float32 posterior standard deviations; a clear error when ``vae`` is missing, is not a
    trained SCVI model, lacks rows, or ``obsm[student_rep]`` is not its posterior mean.
    """
    if vae is None:
        raise ValueError(
            "Augmentation 'scvi_denoise' draws from the posterior of the trained scVI model whose latent mean is "
            f"obsm[{student_rep!r}]: pass `augmentation_kwargs={{'scvi_denoise': {{'scvi_model': vae}}}}` "
            "(or `ScVIDenoise(scvi_model=vae)`)."
        )
    if not hasattr(vae, "get_latent_representation") or not isinstance(getattr(vae, "adata", None), AnnData):
        raise TypeError(f"`scvi_model` must be a trained scvi.model.SCVI with its AnnData, got {type(vae).__name__}.")
    pos = vae.adata.obs_names.get_indexer(adata.obs_names)
    if (pos < 0).any():
        raise ValueError(
            f"{int((pos < 0).sum())} student rows (e.g. {adata.obs_names[pos < 0][0]!r}) are not in the scVI "
            "model's AnnData (matched by obs_names); scvi_denoise needs the counts of every student row."
        )
    mean, var = vae.get_latent_representation(vae.adata, indices=pos, return_dist=True)
    x = get_rep(adata, student_rep)
    if mean.shape != x.shape or not np.allclose(mean, x, rtol=1e-3, atol=1e-3):
        raise ValueError(
            f"obsm[{student_rep!r}] is not the posterior mean of the given scVI model (its "
            "`get_latent_representation()`); scvi_denoise draws around that mean."
        )
    return torch.as_tensor(np.sqrt(var), dtype=torch.float32)
