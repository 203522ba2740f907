"""scVI denoising: posterior draws of a trained scVI encoder (Lopez et al. 2018)."""

from __future__ import annotations

import torch

from scsemiclip._core import AffineMaps

from ._base import Augmentation, Minibatch, register_augmentation


@register_augmentation
class ScVIDenoise(Augmentation):
    """Replace a sample by a random denoised copy: a draw ``z = mu + sigma * eps`` of scVI's posterior ``q(z | x)``.

    Lopez, Regier, Cole, Jordan & Yosef (2018), "Deep generative modeling for single-cell transcriptomics",
    *Nat. Methods* 15:1053. The student embedding is the posterior mean ``mu`` of a trained
    :class:`scvi.model.SCVI` (its ``get_latent_representation()``); the model layer computes the posterior scale
    ``sigma`` of every training sample once from that scVI model and its counts (:meth:`set_posterior`), and this
    augmentation only samples: ``x' = x + sigma * eps``, ``eps ~ N(0, I)``, a fresh draw per sample and step. When
    the adapter's training input is the TVN-corrected embedding (``pea=False``, inference TVN), the noise goes
    through the linear part of each batch's correction (``maps``), so the draw is the corrected posterior draw.

    Departures: the posterior is the encoder's Gaussian in latent space, not a decode-resample-re-encode of counts
    (faithful but costly); draws are per step rather than per epoch; no class labels are used.

    Parameters
    ----------
    p
        Probability that a sample is replaced by a posterior draw.
    scvi_model
        The trained :class:`scvi.model.SCVI` whose latent mean is the student embedding (read by the model layer,
        which holds the AnnData; never by this module).
    """

    name = "scvi_denoise"
    needs_index = True

    def __init__(self, *, p: float = 1.0, scvi_model: object | None = None) -> None:
        super().__init__(p=p)
        self.scvi_model = scvi_model
        self.register_buffer("scale", torch.empty(0, 0), persistent=False)
        self.register_buffer("maps", torch.empty(0, 0, 0), persistent=False)

    def set_posterior(self, scale: torch.Tensor, maps: torch.Tensor | None = None) -> None:
        """Store the posterior scale of every training sample (and the input correction's linear maps).

        Parameters
        ----------
        scale
            ``(n, d_S)`` posterior standard deviation of every training row (row ``i`` of the training inputs).
        maps
            ``(n_batches, d_S, d_S)`` linear part of each batch's input correction, applied to the noise (``None``:
            the training inputs are the raw embedding).
        """
        if bool((scale < 0).any()) or not bool(torch.isfinite(scale).all()):
            raise ValueError("The posterior scale must be finite and non-negative.")
        self.scale = scale.float()
        self.maps = torch.empty(0, 0, 0, device=scale.device) if maps is None else maps.float()

    def augment(self, x: torch.Tensor, minibatch: Minibatch, generator: torch.Generator | None) -> torch.Tensor:
        if self.scale.numel() == 0:
            raise RuntimeError("scvi_denoise has no posterior: the model sets it with `set_posterior` before training.")
        noise = self.scale[minibatch.index] * torch.randn(x.shape, generator=generator, device=x.device)
        if self.maps.numel():
            noise = AffineMaps(self.maps, self.maps.new_zeros(self.maps.shape[::2])).apply_rows(noise, minibatch.batch)
        return x + noise
