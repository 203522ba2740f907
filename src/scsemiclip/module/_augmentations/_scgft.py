"""scGFT: synthetic samples from a random Fourier-component perturbation of a same-key parent (Nouri 2025)."""

from __future__ import annotations

import torch

from scsemiclip._validate import check_int

from ._base import Augmentation, KeyGroups, Minibatch, register_augmentation, segment_sum


@register_augmentation
class ScGFT(Augmentation):
    """The single-cell generative Fourier transformer's one-shot synthesis, within each pairing key.

    Nouri (2025), scGFT, *Commun. Biol.* 8:113; public code ``Sanofi-Public/PMCB-scGFT`` (``RunScGFT``). Per group
    (here: pairing key) every sample is Fourier-transformed along its coordinates; the amplitudes ``|F_k|`` are
    scaled per component by their L2 norm over the group's samples and ``sd_k`` is the standard deviation (ddof 1)
    of these scaled amplitudes over the group. A synthetic sample is a random parent of the group whose
    ``n_components`` randomly chosen non-constant components (both conjugates of each) are multiplied by
    ``a_k ~ N(2, sd_k)``, inverse-transformed, real part. A group of one sample uses ``sd_k = 1``, as the reference
    code does. Fitting raises a ValueError when the dimension has fewer than ``n_components`` non-constant
    components (``(d_S - 1) // 2``).

    Departures: the original works on log-normalised counts, synthesises a fixed number of cells once and clips
    negative values to 0; here it runs on the embedding (``rfft`` of a real vector: the DC and, for an even
    dimension, the Nyquist bin are never modified), online (each sample is replaced with probability ``p`` by a
    synthetic sample of its key), and without clipping (embeddings can be negative).

    Parameters
    ----------
    p
        Probability that a sample is replaced by a synthetic sample of its key.
    n_components
        Number of Fourier components modified per synthetic sample (``RunScGFT``'s ``ncpmnts``, default 1).
    """

    name = "scgft"

    def __init__(self, *, p: float = 0.5, n_components: int = 1) -> None:
        super().__init__(p=p)
        self.n_components = check_int(n_components, name="n_components", minimum=1)
        self.groups = KeyGroups()
        self.register_buffer("sd", torch.empty(0, 0), persistent=False)

    def fit(self, x: torch.Tensor, keys: torch.Tensor, *, n_keys: int, generator: torch.Generator) -> None:
        n_free = (x.shape[1] - 1) // 2
        if n_free < self.n_components:
            raise ValueError(
                f"scgft modifies {self.n_components} non-constant Fourier components, but a {x.shape[1]}-dimensional "
                f"embedding has only {n_free}; lower `n_components`."
            )
        self.groups.fit(x, keys, n_keys=n_keys)
        sorted_keys = torch.repeat_interleave(torch.arange(n_keys, device=x.device), self.groups.counts)
        amp = torch.fft.rfft(self.groups.rows.double(), dim=1).abs()
        norm = segment_sum(amp**2, sorted_keys, n_keys).sqrt().clamp_min(torch.finfo(amp.dtype).tiny)
        scaled = amp / norm[sorted_keys]
        counts = self.groups.counts.to(amp.dtype).unsqueeze(1)
        mean = segment_sum(scaled, sorted_keys, n_keys) / counts.clamp_min(1)
        var = segment_sum((scaled - mean[sorted_keys]) ** 2, sorted_keys, n_keys) / (counts - 1).clamp_min(1)
        self.sd = torch.where(counts > 1, var.sqrt(), torch.ones_like(var)).float()

    def augment(self, x: torch.Tensor, minibatch: Minibatch, generator: torch.Generator | None) -> torch.Tensor:
        n, d = x.shape
        spectrum = torch.fft.rfft(self.groups.rows[self.groups.draw(minibatch.key, generator)], dim=1)
        n_free = (d - 1) // 2
        bins = torch.rand((n, n_free), generator=generator, device=x.device).topk(self.n_components, dim=1).indices + 1
        noise = torch.randn(bins.shape, generator=generator, device=x.device)
        factor = torch.ones(spectrum.shape, device=x.device).scatter_(
            1, bins, 2 + self.sd[minibatch.key].gather(1, bins) * noise
        )
        return torch.fft.irfft(spectrum * factor, n=d, dim=1)
