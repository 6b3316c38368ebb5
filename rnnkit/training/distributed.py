"""Data parallel training under ``torchrun``: process group, shards, collectives.

The same command runs on one process or under ``torchrun --nproc_per_node=N``; the
environment variables torchrun sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) decide.
Backend: nccl when CUDA is available, gloo otherwise. Only rank 0 writes files.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist

__all__ = ["World", "shard_columns"]


class World:
    """This process' place in the job: ``rank``, ``world_size``, ``is_main``."""

    def __init__(self, rank=0, world_size=1, local_rank=0):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1

    @classmethod
    def from_env(cls):
        """Join the torchrun job described by the environment, or a world of one."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
            # A process that exits with the group alive can abort in gloo's teardown
            # ("terminate called without an active exception", SIGABRT) while the
            # interpreter is finalizing: destroy it while Python is still whole.
            atexit.register(_destroy_group)
        return cls(dist.get_rank(), dist.get_world_size(),
                   int(os.environ.get("LOCAL_RANK", "0")))

    def all_reduce_sum(self, tensor):
        """Sum a tensor over all ranks, in place; returns it."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag):
        """True on every rank if ``flag`` is true on any rank (stop decisions)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def gather(self, tensor):
        """Every rank's copy of a same-shaped tensor, in rank order."""
        if not self.distributed:
            return [tensor]
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return parts

    def barrier(self):
        if self.distributed:
            dist.barrier()

    def close(self, sync=True):
        """Leave the job; safe to call more than once.

        With ``sync`` (every rank got here normally) a barrier first: once it returns no
        rank has a collective in flight, so no gloo worker thread still holds a tensor
        that Python owns. Such a tensor released by that thread while the interpreter
        finalizes takes the dying GIL and aborts the process ("terminate called without
        an active exception"); the group itself can outlive ``destroy_process_group``
        while a DistributedDataParallel module holds it. ``sync=False`` after an error,
        when another rank may never reach the barrier.
        """
        if self.distributed and dist.is_available() and dist.is_initialized():
            if sync:
                dist.barrier()
            _destroy_group()


def _destroy_group():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_columns(source, rank, world_size):
    """This rank's columns of a batchified ``(L, B)`` stream: rank r of W takes columns
    ``[r*B/W, (r+1)*B/W)``, so the W shards together are exactly the one-process batch
    and averaging the W gradients gives the one-process gradient."""
    batch = source.size(1)
    if batch % world_size:
        raise ValueError(f"shard_columns: batch size {batch} must be divisible by the "
                         f"number of processes {world_size}")
    width = batch // world_size
    return source[:, rank * width:(rank + 1) * width]
