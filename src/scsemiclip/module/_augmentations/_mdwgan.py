"""MDWGAN-GP: a key-conditional multiple-discriminator WGAN-GP trained on the training embeddings (Li et al. 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scsemiclip._validate import check_int, check_real

from ._base import Augmentation, Minibatch, register_augmentation, segment_sum

#: Rows of the distance matrix computed at once when building the nearest-neighbour graphs.
_CHUNK = 2048


def knn_propagate(x: torch.Tensor, *, n_neighbors: int, metric: str) -> torch.Tensor:
    """One step of graph propagation ``D^-1/2 (A + I) D^-1/2 x`` over the symmetric k-nearest-neighbour graph.

    Parameters
    ----------
    x
        ``(n, d)`` samples.
    n_neighbors
        Neighbours of every sample (itself excluded); ``A`` links ``i`` and ``j`` when either is among the
        other's neighbours.
    metric
        ``"correlation"`` (Pearson correlation of the rows) or ``"euclidean"``.

    Returns
    -------
    ``(n, d)`` the propagated samples (``D`` the degree of ``A + I``).
    """
    n = x.shape[0]
    k = min(n_neighbors, n - 1)
    if k < 1:
        return x.clone()
    if metric == "correlation":
        z = x - x.mean(dim=1, keepdim=True)
        z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    elif metric != "euclidean":
        raise ValueError(f"`metric` must be 'correlation' or 'euclidean', got {metric!r}.")
    cols = []
    for start in range(0, n, _CHUNK):
        rows = torch.arange(start, min(start + _CHUNK, n), device=x.device)
        sim = z[rows] @ z.T if metric == "correlation" else -torch.cdist(x[rows], x)
        sim[torch.arange(rows.numel(), device=x.device), rows] = -torch.inf
        cols.append(sim.topk(k, dim=1).indices)
    src = torch.arange(n, device=x.device).repeat_interleave(k)
    dst = torch.cat(cols).reshape(-1)
    edges = torch.unique(torch.cat([src * n + dst, dst * n + src]))
    i, j = edges // n, edges % n
    deg = 1.0 + torch.bincount(i, minlength=n).to(x.dtype)
    weight = (deg[i] * deg[j]).rsqrt().unsqueeze(1)
    return x / deg.unsqueeze(1) + segment_sum(weight * x[j], i, n)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class _Critic(nn.Module):
    """Critic on ``[x | key embedding]``: a shared trunk, a main head and an auxiliary head."""

    def __init__(self, d: int, n_keys: int, key_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_keys, key_dim)
        self.trunk = nn.Sequential(_mlp([d + key_dim, hidden, hidden]), nn.LeakyReLU(0.2))
        self.main = nn.Linear(hidden, 1)
        self.aux = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, key: torch.Tensor, *, head: str) -> torch.Tensor:
        h = self.trunk(torch.cat([x, self.embed(key)], dim=1))
        return (self.main if head == "main" else self.aux)(h).squeeze(1)


@register_augmentation
class MDWGANGP(Augmentation):
    """Replace a sample by a synthetic sample of its key from a key-conditional multiple-discriminator WGAN-GP.

    Li, Wu, Li, Liu, Xuan & Zhu (2023), "MDWGAN-GP: data augmentation for gene expression data based on multiple
    discriminator WGAN-GP", *BMC Bioinformatics* 24:427; public code ``lryup/MDWGAN-GP``. Trained once before the
    fit (:meth:`fit`) on the training inputs standardised per dimension, conditioned on the pairing key (a learnt
    key embedding): generator MLP ``[noise | key] -> hidden -> hidden -> d``; critic MLP on ``[x | key]`` with a
    main head, which sees the data, and an auxiliary head, which sees two "enriched" copies of the data, each one
    step of graph propagation ``D^-1/2 (A + I) D^-1/2 X`` over a k-nearest-neighbour graph (one by correlation, one
    by Euclidean distance). Loss: the WGAN term plus ``gp_weight`` times the gradient penalty, per head, the
    auxiliary head weighted ``aux_weight``; RMSprop, ``n_critic`` critic steps per generator step, instance noise
    ``N(0, instance_noise^2)`` on a ``noise_fraction`` of the critic's inputs. As augmentation, a sample is replaced
    with probability ``p`` by ``G(noise, its key)``, de-standardised; its teacher partner is drawn among its key's
    teacher samples as for any sample.

    Departures: the original trains one unconditional model per class of a small expression matrix for thousands
    of epochs and adds the generated samples to the data once; here one model conditioned on the key (the data's
    classes) is trained for ``n_steps`` generator steps on minibatches of ``batch_size`` embeddings, and its
    samples enter the minibatch online. Only the generator is kept (in non-persistent buffers, not saved).

    Parameters
    ----------
    p
        Probability that a sample is replaced by a synthetic sample of its key.
    n_steps
        Generator steps of the training.
    n_critic
        Critic steps per generator step.
    batch_size
        Training minibatch size.
    lr
        RMSprop learning rate of both networks.
    noise_dim
        Dimension of the generator's noise input.
    key_dim
        Dimension of the learnt key embeddings.
    hidden
        Width of the hidden layers.
    gp_weight
        Weight of the gradient penalty.
    aux_weight
        Weight of the auxiliary head's loss.
    n_neighbors
        Neighbours of the two enrichment graphs.
    instance_noise
        Standard deviation of the critic's instance noise.
    noise_fraction
        Fraction of the critic's inputs that get instance noise.
    """

    name = "mdwgan_gp"

    def __init__(
        self,
        *,
        p: float = 0.5,
        n_steps: int = 300,
        n_critic: int = 5,
        batch_size: int = 256,
        lr: float = 5e-4,
        noise_dim: int = 10,
        key_dim: int = 10,
        hidden: int = 128,
        gp_weight: float = 10.0,
        aux_weight: float = 0.2,
        n_neighbors: int = 10,
        instance_noise: float = 0.5,
        noise_fraction: float = 0.25,
    ) -> None:
        super().__init__(p=p)
        self.n_steps = check_int(n_steps, name="n_steps", minimum=1)
        self.n_critic = check_int(n_critic, name="n_critic", minimum=1)
        self.batch_size = check_int(batch_size, name="batch_size", minimum=1)
        self.lr = check_real(lr, name="lr", low=0, low_open=True)
        self.noise_dim = check_int(noise_dim, name="noise_dim", minimum=1)
        self.key_dim = check_int(key_dim, name="key_dim", minimum=1)
        self.hidden = check_int(hidden, name="hidden", minimum=1)
        self.gp_weight = check_real(gp_weight, name="gp_weight", low=0)
        self.aux_weight = check_real(aux_weight, name="aux_weight", low=0)
        self.n_neighbors = check_int(n_neighbors, name="n_neighbors", minimum=0)
        self.instance_noise = check_real(instance_noise, name="instance_noise", low=0)
        self.noise_fraction = check_real(noise_fraction, name="noise_fraction", low=0, high=1)
        self.register_buffer("mean", torch.empty(0), persistent=False)
        self.register_buffer("std", torch.empty(0), persistent=False)
        self.register_buffer("key_embedding", torch.empty(0, 0), persistent=False)
        self.n_layers = 0

    # ------------------------------------------------------------------------------------------------ training
    def _noisy(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rows = torch.rand((x.shape[0], 1), generator=generator, device=x.device) < self.noise_fraction
        return x + rows * self.instance_noise * torch.randn(x.shape, generator=generator, device=x.device)

    def _critic_loss(
        self,
        critic: _Critic,
        real: torch.Tensor,
        fake: torch.Tensor,
        key: torch.Tensor,
        *,
        head: str,
        generator: torch.Generator,
    ) -> torch.Tensor:
        real, fake = self._noisy(real, generator), self._noisy(fake, generator)
        eps = torch.rand((real.shape[0], 1), generator=generator, device=real.device)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_()
        (grad,) = torch.autograd.grad(critic(mixed, key, head=head).sum(), mixed, create_graph=True)
        penalty = ((grad.norm(dim=1) - 1) ** 2).mean()
        wgan = critic(fake, key, head=head).mean() - critic(real, key, head=head).mean()
        return wgan + self.gp_weight * penalty

    def fit(self, x: torch.Tensor, keys: torch.Tensor, *, n_keys: int, generator: torch.Generator) -> None:
        """Train the conditional WGAN-GP on the standardised training inputs; keep the generator.

        Parameters
        ----------
        x
            ``(n, d_S)`` the training inputs.
        keys
            ``(n,)`` pairing-key code of every row (the condition).
        n_keys
            Number of pairing keys.
        generator
            Random generator on the device of ``x``: network initialisation, minibatches, noise.
        """
        x = x.float()
        n, d = x.shape
        self.mean = x.mean(dim=0)
        std = x.std(dim=0, correction=0)
        self.std = torch.where(std > 0, std, torch.ones_like(std))
        xs = (x - self.mean) / self.std
        enriched = torch.cat(
            [knn_propagate(xs, n_neighbors=self.n_neighbors, metric=m) for m in ("correlation", "euclidean")]
        )
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=x.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = nn.ModuleDict(
                {
                    "embed": nn.Embedding(n_keys, self.key_dim),
                    "net": _mlp([self.noise_dim + self.key_dim, self.hidden, self.hidden, d]),
                }
            ).to(x.device)
            critic = _Critic(d, n_keys, self.key_dim, self.hidden).to(x.device)
        opt_g = torch.optim.RMSprop(gen.parameters(), lr=self.lr)
        opt_c = torch.optim.RMSprop(critic.parameters(), lr=self.lr)
        b = min(self.batch_size, n)

        def fake_of(key: torch.Tensor) -> torch.Tensor:
            noise = torch.randn((key.shape[0], self.noise_dim), generator=generator, device=x.device)
            return gen["net"](torch.cat([noise, gen["embed"](key)], dim=1))

        for _ in range(self.n_steps):
            for _ in range(self.n_critic):
                rows = torch.randint(0, n, (b,), generator=generator, device=x.device)
                aux_rows = rows + n * torch.randint(0, 2, (b,), generator=generator, device=x.device)
                key = keys[rows]
                fake = fake_of(key).detach()
                loss = self._critic_loss(critic, xs[rows], fake, key, head="main", generator=generator)
                aux = self._critic_loss(critic, enriched[aux_rows], fake, key, head="aux", generator=generator)
                opt_c.zero_grad(set_to_none=True)
                (loss + self.aux_weight * aux).backward()
                opt_c.step()
            key = keys[torch.randint(0, n, (b,), generator=generator, device=x.device)]
            fake = fake_of(key)
            loss = -critic(fake, key, head="main").mean() - self.aux_weight * critic(fake, key, head="aux").mean()
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
        self.key_embedding = gen["embed"].weight.detach().clone()
        linears = [m for m in gen["net"] if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):
            self.register_buffer(f"weight{i}", layer.weight.detach().clone(), persistent=False)
            self.register_buffer(f"bias{i}", layer.bias.detach().clone(), persistent=False)
        self.n_layers = len(linears)

    # ------------------------------------------------------------------------------------------------ sampling
    def generate(self, key: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Synthetic samples of the given keys, de-standardised (in the space of the training inputs).

        Parameters
        ----------
        key
            ``(B,)`` pairing-key codes.
        generator
            Random generator of the noise.

        Returns
        -------
        ``(B, d_S)`` float32 tensor.
        """
        if self.n_layers == 0:
            raise RuntimeError("mdwgan_gp was not fitted: call `fit` with the training inputs first.")
        noise = torch.randn((key.shape[0], self.noise_dim), generator=generator, device=key.device)
        h = torch.cat([noise, self.key_embedding[key]], dim=1)
        for i in range(self.n_layers):
            h = F.linear(h, getattr(self, f"weight{i}"), getattr(self, f"bias{i}"))
            if i < self.n_layers - 1:
                h = F.leaky_relu(h, 0.2)
        return h * self.std + self.mean

    def augment(self, x: torch.Tensor, minibatch: Minibatch, generator: torch.Generator | None) -> torch.Tensor:
        return self.generate(minibatch.key, generator)
