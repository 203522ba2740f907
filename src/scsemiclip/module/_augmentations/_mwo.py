"""MWO: within-key mixing of weighted observations (Kircher et al. 2022)."""

from __future__ import annotations

import torch

from ._base import Augmentation, KeyGroups, Minibatch, register_augmentation


@register_augmentation
class MWO(Augmentation):
    r"""Mixed weighted observations: a sample becomes a random convex combination of itself and a same-key sample.

    Kircher, Chludzinski, Krepel, Saremi, Beineke & Jung (2022), "Augmentation of transcriptomic data for improved
    classification of patients with respiratory diseases of viral origin", *Int. J. Mol. Sci.* 23:2481,
    doi:10.3390/ijms23052481, compare three augmentations of microarray / RNA-seq expression for classification,
    one of which they call MWO.

    **Assumption.** The article's Methods section could not be read from where this was written (only its abstract
    was reachable), so MWO is implemented here as its name reads, a within-class mixing of weighted
    observations: the augmented version of sample ``x_i`` of pairing key ``k`` is

    .. math:: x_i' = w\, x_i + (1 - w)\, x_j, \qquad w \sim U(0, 1),

    with ``x_j`` a training sample of key ``k`` drawn uniformly (possibly ``x_i`` itself) and a fresh ``w`` per
    sample and step. The pairing key plays the class label. Departures: the article mixes expression values of
    patients of one diagnosis to enlarge a small training set once; here the embeddings are mixed online, in the
    minibatch, each sample with probability ``p``.

    Parameters
    ----------
    p
        Probability that a sample is replaced by a mixture.
    """

    name = "mwo"

    def __init__(self, *, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.groups = KeyGroups()

    def fit(self, x: torch.Tensor, keys: torch.Tensor, *, n_keys: int, generator: torch.Generator) -> None:
        self.groups.fit(x, keys, n_keys=n_keys)

    def augment(self, x: torch.Tensor, minibatch: Minibatch, generator: torch.Generator | None) -> torch.Tensor:
        partner = self.groups.rows[self.groups.draw(minibatch.key, generator)]
        w = torch.rand((x.shape[0], 1), generator=generator, device=x.device)
        return w * x + (1 - w) * partner
