"""Small neural-network building blocks shared by the adapters."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(n_input: int, hidden_dims: Sequence[int], n_output: int) -> nn.Sequential:
    """A fully connected network ``n_input -> hidden_dims... -> n_output``, ReLU between layers, linear output.

    Parameters
    ----------
    n_input
        Input dimension.
    hidden_dims
        Sizes of the hidden layers (may be empty: a single linear layer).
    n_output
        Output dimension.

    Returns
    -------
    The network.
    """
    dims = [int(n_input), *(int(h) for h in hidden_dims)]
    if min(dims + [int(n_output)]) < 1:
        raise ValueError(f"Layer sizes must be positive, got {n_input} -> {list(hidden_dims)} -> {n_output}.")
    layers: list[nn.Module] = []
    for n_in, n_out in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    layers.append(nn.Linear(dims[-1], int(n_output)))
    return nn.Sequential(*layers)
