"""Cross-rank negatives: with ``gather_negatives`` two DDP ranks (gloo, CPU) train as one process on both batches."""

from __future__ import annotations

import queue as queue_module
import time

import ddp_gather_worker as worker  # a top-level module (tests/ is on the path): the spawned ranks import it
import pytest
import torch
import torch.multiprocessing as mp


def _results(procs: list, queue, n: int, deadline_s: float) -> list[tuple]:
    """``n`` results of the ranks, failing at once on a rank's error or death and after ``deadline_s`` at the latest."""
    results, end = [], time.monotonic() + deadline_s
    while len(results) < n:
        try:
            item = queue.get(timeout=1)
        except queue_module.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"ranks died: {[(p.name, p.exitcode) for p in dead]}"
            assert time.monotonic() < end, f"{len(results)} of {n} results after {deadline_s} s"
            continue
        assert item[1] != "error", f"rank {item[0]} failed:\n{item[2]}"
        results.append(item)
    return results


@pytest.mark.slow
def test_gathered_negatives_equal_one_process_on_the_concatenated_batch(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    store = (tmp_path / "store").as_uri()  # a file rendezvous: no port to race for
    args = (store, worker.CASES, queue)
    procs = [ctx.Process(target=worker.rank_main, args=(r, *args), daemon=True) for r in range(worker.WORLD)]
    try:
        for p in procs:
            p.start()
        results = _results(procs, queue, worker.WORLD * len(worker.CASES), deadline_s=300)
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0, (p.name, p.exitcode)
    finally:  # a stuck rank never outlives the test
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    for name, kwargs in worker.CASES:
        adapter, objective, x, z, labels = worker.case(name, kwargs)
        loss, grads = worker.step(adapter, objective, x, z, labels)  # one process, the whole batch
        ranks = [r for r in results if r[1] == name and r[2] == str(kwargs)]
        assert len(ranks) == worker.WORLD
        for _, _, _, rank_loss, rank_grads in ranks:
            assert rank_loss == pytest.approx(loss, rel=1e-5)
            assert len(rank_grads) == len(grads)
            for g_rank, g_one in zip(rank_grads, grads, strict=True):
                torch.testing.assert_close(torch.as_tensor(g_rank), g_one, rtol=1e-4, atol=1e-6)
        # local negatives only (no gather) give another loss: the comparison can fail
        adapter, objective, x, z, labels = worker.case(name, dict(kwargs, gather_negatives=False))
        halves = [
            worker.step(adapter, objective, *(t[r * worker.B : (r + 1) * worker.B] for t in (x, z, labels)))[0]
            for r in range(worker.WORLD)
        ]
        assert sum(halves) / worker.WORLD != pytest.approx(loss, rel=1e-3)


def test_gather_is_a_no_op_in_one_process():
    adapter, objective, x, z, labels = worker.case("semiclipped", {"gather_negatives": True, "mask_same_key": True})
    _, plain, *_ = worker.case("semiclipped", {"mask_same_key": True})
    h = adapter(x)
    assert torch.equal(objective(h, z, labels=labels).loss, plain(h, z, labels=labels).loss)
