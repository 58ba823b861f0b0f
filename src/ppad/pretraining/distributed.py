"""Several pre-training processes on PyTorch's own stack: torchrun's elastic launcher starts them,
DDP averages their gradients, ``torch.distributed.nn`` gathers features with their gradients.

``ppad pretrain --devices N [--num-nodes M --rdzv-endpoint HOST:PORT]`` relaunches itself under the
elastic launcher (what ``torchrun`` runs) unless it already runs under it (``torchrun … -m
ppad.cli.main pretrain …``, or a cluster's launcher that sets the same variables): every process
then runs the same command and joins one process group — gloo on CPU, NCCL on GPUs.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ppad.errors import SettingsError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the pre-training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    nodes: int = 1
    backend: str = ""

    @property
    def main(self) -> bool:
        """Rank 0: the only process that validates and writes."""
        return self.rank == 0


def launched() -> bool:
    """Whether this process is one of an elastic launcher's workers."""
    return "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def relaunch(argv: list[str], devices: int, nodes: int, endpoint: str | None) -> int:
    """Run ``python -m ppad.cli.main *argv`` as ``devices`` processes on each of ``nodes`` machines
    (torchrun's launcher, in this process); the exit code of the first process that failed, or 0."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # failures are reported by ppad
    if nodes > 1 and not endpoint:
        raise SettingsError("--num-nodes above 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
    if not torch.cuda.is_available() or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        # CPU processes share the cores instead of each taking all of them
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // devices)))
    config = LaunchConfig(
        min_nodes=nodes,
        max_nodes=nodes,
        nproc_per_node=devices,
        run_id=os.environ.get("PPAD_RUN_ID", "ppad-pretrain") if nodes > 1 else f"ppad-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint=endpoint or "localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    try:
        elastic_launch(config, sys.executable)("-m", "ppad.cli.main", *argv)
    except ChildFailedError as error:  # each process has printed its own error
        return next((failure.exitcode for failure in error.failures.values() if failure.exitcode), 1)
    return 0


def _die_with_the_launcher() -> None:
    """On Linux, ask the kernel to end this process when its launcher dies (even by SIGKILL),
    rather than leave it training alone and writing into the run folder."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the launcher was already gone
        raise SystemExit(1)


def join(devices: int, nodes: int, device: str) -> tuple[Ranks, torch.device]:
    """Join the launcher's process group (gloo on CPU, NCCL on CUDA); this process's device."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        _die_with_the_launcher()
    world = int(os.environ["WORLD_SIZE"])
    if world != devices * nodes:
        raise SettingsError(f"launched as {world} processes, but --devices {devices} × --num-nodes {nodes}")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    on_gpu = device.startswith("cuda")
    here = torch.device(f"cuda:{local_rank}") if on_gpu else torch.device(device)
    if on_gpu:
        torch.cuda.set_device(here)
    backend = "nccl" if on_gpu else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Ranks(dist.get_rank(), world, local_rank, nodes, backend), here


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()


def gather_with_grad(x: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Every process's ``x`` concatenated in rank order; gradients flow back to each owner."""
    if ranks.world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()))


def data_parallel(module: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """``module`` wrapped in DDP (gradients averaged over processes) when there are several."""
    if ranks.world == 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def maybe_no_sync(model: nn.Module, syncing: bool):
    """DDP's ``no_sync`` on accumulation steps that do not step the optimizer."""
    return model.no_sync() if not syncing and hasattr(model, "no_sync") else nullcontext()
