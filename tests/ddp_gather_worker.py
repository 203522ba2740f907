"""The ranks of tests/test_ddp_gather.py (a module of its own: spawned processes import it by name)."""

from __future__ import annotations

import os
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from scsemiclip.module import OBJECTIVES

WORLD = 2
B, D_IN, D_T = 6, 5, 4
TIMEOUT = timedelta(seconds=60)  # a collective that waits longer than this fails the rank


def case(name: str, kwargs: dict) -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adapter, objective and the global batch (inputs, teacher partners, labels with repeated keys), seeded."""
    torch.manual_seed(0)
    adapter = nn.Linear(D_IN, D_T)
    objective = OBJECTIVES[name](d_student=D_T, d_teacher=D_T, n_classes=3, temperature=0.5, **kwargs)
    x, z = torch.randn(WORLD * B, D_IN), torch.randn(WORLD * B, D_T)
    labels = torch.randint(0, 3, (WORLD * B,))
    return adapter, objective, x, z, labels


class _Pair(nn.Module):
    """Adapter and objective as one module, so that DDP wraps the forward whose gradients it averages."""

    def __init__(self, adapter: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.adapter, self.objective = adapter, objective

    def forward(self, x: torch.Tensor, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.objective(self.adapter(x), z, labels=labels).loss


def grads(modules: list[nn.Module]) -> list[torch.Tensor]:
    return [p.grad.clone() for m in modules for p in m.parameters() if p.requires_grad]


def step(adapter: nn.Module, objective: nn.Module, x, z, labels) -> tuple[float, list[torch.Tensor]]:
    out = objective(adapter(x), z, labels=labels)
    out.loss.backward()
    return float(out.loss.detach()), grads([adapter, objective])


def rank_main(rank: int, store: str, cases: list, queue) -> None:
    """One DDP rank: the loss and the DDP-averaged gradients of its half of every case's batch, into ``queue``.

    Any error goes into ``queue`` too, so that the test reports it at once instead of waiting. The rank ends with
    ``os._exit``: the destructors of DDP's reducer and of gloo's process group can deadlock at interpreter exit
    (the group's destructor joins its worker threads while holding the GIL that a worker needs to free a tensor).
    """
    code = 1
    try:
        dist.init_process_group("gloo", init_method=store, rank=rank, world_size=WORLD, timeout=TIMEOUT)
        rows = slice(rank * B, (rank + 1) * B)
        keep = []  # DDP wrappers stay alive until the process ends: no reducer is destroyed mid-run
        for name, kwargs in cases:
            adapter, objective, x, z, labels = case(name, kwargs)
            ddp = nn.parallel.DistributedDataParallel(_Pair(adapter, objective))  # averages the gradients
            out = ddp(x[rows], z[rows], labels[rows])
            out.backward()
            loss = out.detach().clone()
            dist.all_reduce(loss)
            keep.append(ddp)
            # numpy, not tensors: shared tensors would not outlive this process
            queue.put((rank, name, str(kwargs), float(loss) / WORLD, [g.numpy() for g in grads([adapter, objective])]))
        dist.barrier()
        code = 0
    except BaseException:  # noqa: BLE001 (reported to the test, which fails on it)
        queue.put((rank, "error", traceback.format_exc(), None, None))
    finally:
        queue.close()
        queue.join_thread()  # everything put is in the pipe before the process ends
        os._exit(code)


CASES = [
    ("semiclipped", {"gather_negatives": True}),
    ("semiclipped", {"gather_negatives": True, "mask_same_key": True, "symmetric": True}),
    ("clip", {"gather_negatives": True, "symmetric": True, "learn_temperature": True, "teacher_hidden_dims": (3,)}),
    ("siglip", {"gather_negatives": True, "mask_same_key": True, "teacher_hidden_dims": (3,)}),
]
