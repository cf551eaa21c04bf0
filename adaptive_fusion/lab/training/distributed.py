"""Data-parallel plumbing: the process group under torchrun (gloo on CPU, nccl on GPU) and a
sampler that shards each epoch's permutation by rank and can resume in the middle of an epoch."""

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass
class Context:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup() -> Context:
    """One process per rank as torchrun starts them (WORLD_SIZE, RANK, LOCAL_RANK set); a plain
    run is a world of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def teardown(context: Context) -> None:
    if context.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


class EpochSampler(Sampler[int]):
    """Indices of one epoch for one rank. The permutation depends only on (seed, epoch); global
    batch b holds permutation[b*G : (b+1)*G] (G = global batch size), of which rank r takes its
    consecutive share. Batches before `start_batch` are skipped (resuming mid-epoch)."""

    def __init__(self, length: int, global_batch: int, seed: int, epoch: int,
                 rank: int = 0, world_size: int = 1, start_batch: int = 0):
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} not divisible by {world_size} ranks")
        self.batches = length // global_batch
        if self.batches == 0:
            raise ValueError(f"dataset of {length} samples is smaller than one batch")
        order = np.random.default_rng([seed, epoch]).permutation(length)
        per_rank = global_batch // world_size
        grid = order[: self.batches * global_batch].reshape(self.batches, world_size, per_rank)
        self.indices = grid[start_batch:, rank].reshape(-1).tolist()

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
