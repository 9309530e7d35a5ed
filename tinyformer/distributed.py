"""Training on several processes: torchrun, ``torch.distributed`` and DistributedDataParallel.

``torchrun --standalone --nproc_per_node=N -m tinyformer.train ...`` starts N copies of the
training command and tells each, through environment variables, who it is (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``) and where to meet the others (``MASTER_ADDR``,
``MASTER_PORT``). This module turns that environment into a :class:`World`, joins the process
group (gloo on CPU, NCCL on CUDA), wraps the model in DistributedDataParallel and gives each
rank its share of every batch. Without those variables a process is ``World()``, rank 0 of 1,
and every method below does nothing, so a single process runs exactly the code it ran before
distributed training existed.

How a batch is shared. ``TrainConfig.batch_size`` is the *global* batch: the windows of one
optimiser step, drawn from one seeded stream that every rank draws identically. Rank ``r`` of
``N`` trains on rows ``r * B/N`` to ``(r + 1) * B/N`` of it, in ``grad_accum_steps``
micro-batches. DDP averages the ranks' gradients, so one step on N ranks is, up to the order of
floating-point sums, the step one process takes on the whole batch; and since the stream does
not depend on N, a checkpoint resumes exactly on any number of ranks.

Nothing waits forever: the rendezvous and every collective operation give up after
``timeout`` seconds and raise :class:`DistributedError` naming the rank and what failed.

Taught in: Making it fast (book/fast.md), section "Scaling out"
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistributedError", "World", "LAUNCH_VARIABLES", "world_from_env", "process_group", "wrap_model",
           "sync_gradients"]

# What torchrun (or any launcher) sets for each process it starts.
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A distributed run that cannot start or cannot go on: an incomplete launch environment, a
    rendezvous that failed, or another process that died or stopped answering."""


@dataclass(frozen=True)
class World:
    """This process's place in a run: ``rank`` of ``size`` processes, ``local_rank`` on its
    machine (which GPU it uses). Rank 0 writes every file of the run; ``timeout`` is how many
    seconds it waits for the others at any meeting point before giving up."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    timeout: float = 600.0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.size}"

    def device(self, device: str) -> str:
        """The device this rank trains on: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per
        process); a single process keeps ``device`` as given."""
        if not self.distributed:
            return device
        kind = torch.device(device)
        if kind.type == "cuda" and kind.index is None:
            return f"cuda:{self.local_rank}"
        if kind.type == "cpu":
            return device
        raise ValueError(
            f"device {device!r} cannot be shared by {self.size} processes: use 'cpu' (gloo) or 'cuda' "
            f"(NCCL; torchrun gives each process the GPU of its LOCAL_RANK)"
        )

    def micro_batches(self, batch_size: int, accum_steps: int) -> list[slice]:
        """The rows of a global batch this rank trains on, as ``accum_steps`` equal slices.

        Rank r owns the contiguous block ``[r * B/N, (r + 1) * B/N)``; every row of the batch
        belongs to exactly one (rank, micro-step).
        """
        parts = self.size * accum_steps
        if batch_size % parts:
            raise ValueError(
                f"batch_size {batch_size} (the global batch of one step) does not split evenly over {self.size} "
                f"process(es) x {accum_steps} accumulation step(s): it must be a multiple of {parts}"
            )
        micro = batch_size // parts
        first = self.rank * accum_steps * micro
        return [slice(first + i * micro, first + (i + 1) * micro) for i in range(accum_steps)]

    # ---------------------------------------------------------------- meeting points
    @contextlib.contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """Run a block that talks to the other ranks; a failure there (a peer died, hung past the
        timeout, or the connection broke) becomes a DistributedError that says so."""
        try:
            yield
        except (DistributedError, torch.OutOfMemoryError):
            raise
        except RuntimeError as exc:
            if not self.distributed:
                raise
            detail = " ".join(str(exc).split())[:300]
            raise DistributedError(
                f"{self}: {what} failed: another process died, hung for longer than the timeout "
                f"({self.timeout:g} s), or the connection broke ({type(exc).__name__}: {detail})"
            ) from exc

    def sum(self, values: list[float], what: str) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (``values`` itself in one process)."""
        if not self.distributed:
            return values
        device = f"cuda:{self.local_rank}" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        with self.collective(what):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def everywhere(self, fn: Callable, what: str):
        """Call ``fn()`` on every rank and share failures: if it raises on any rank, it raises on
        all of them (the failing rank its own error), so no rank waits for one that gave up."""
        error, result = None, None
        try:
            result = fn()
        except Exception as exc:  # any failure must reach the other ranks before it propagates
            error = exc
        if self.distributed:
            report = None if error is None else f"{type(error).__name__}: {error}"
            reports = [None] * self.size
            with self.collective(what):
                dist.all_gather_object(reports, report)
            failed = [(rank, r) for rank, r in enumerate(reports) if r is not None]
            if error is None and failed:
                rank, message = failed[0]
                raise DistributedError(f"{self}: rank {rank} failed while {what}: {message}")
        if error is not None:
            raise error
        return result

    def on_main(self, fn: Callable, what: str):
        """``fn()`` on rank 0 only (writing the run's files); every rank learns if it failed."""
        return self.everywhere(fn if self.is_main else (lambda: None), what)


def _integer(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise DistributedError(f"the launch variable {name}={environ[name]!r} is not an integer") from None


def world_from_env(environ: Mapping[str, str] | None = None, timeout: float = 600.0) -> World:
    """The :class:`World` a launcher describes in the environment; ``World()`` (one process)
    without ``WORLD_SIZE``, or when a process group already exists, that group's."""
    environ = os.environ if environ is None else environ
    if dist.is_available() and dist.is_initialized():
        local = _integer(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else dist.get_rank()
        return World(dist.get_rank(), dist.get_world_size(), local, timeout)
    if "WORLD_SIZE" not in environ:
        return World(timeout=timeout)
    size = _integer(environ, "WORLD_SIZE")
    if size < 1:
        raise DistributedError(f"WORLD_SIZE must be >= 1, got {size}")
    if size == 1:
        return World(timeout=timeout)
    missing = [name for name in LAUNCH_VARIABLES if not environ.get(name)]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE={size} asks for a distributed run, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: start the processes with torchrun "
            f"(e.g. torchrun --standalone --nproc_per_node={size} -m tinyformer.train ...), which sets "
            f"{', '.join(LAUNCH_VARIABLES)} for each"
        )
    rank, local_rank = _integer(environ, "RANK"), _integer(environ, "LOCAL_RANK")
    if not 0 <= rank < size or local_rank < 0:
        raise DistributedError(f"RANK={rank} and LOCAL_RANK={local_rank} do not fit WORLD_SIZE={size}")
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed")
    return World(rank, size, local_rank, timeout)


def _wait_for_listener(address: str, port: int, timeout: float) -> None:
    """Return once something accepts connections at ``address:port``; OSError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address, port), timeout=max(0.1, min(1.0, deadline - time.monotonic()))).close()
            return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise OSError(f"nothing accepted a connection at {address}:{port} ({exc})") from None
            time.sleep(0.2)


@contextlib.contextmanager
def process_group(world: World, device: str) -> Iterator[World]:
    """Join the other ranks (gloo for CPU tensors, NCCL for CUDA) for the duration of the block,
    and leave the group afterwards. A group that already existed is used and left alone."""
    if not world.distributed or dist.is_initialized():
        yield world
        return
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise DistributedError(f"{world} has LOCAL_RANK {world.local_rank}, but this machine has "
                                   f"{torch.cuda.device_count()} CUDA device(s): start at most that many processes")
        torch.cuda.set_device(world.local_rank)
    address, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    where = f"{address}:{port}"
    try:
        if not world.is_main and port.isdigit():
            # Knock first: PyTorch's own retries print a C++ stack trace per attempt to stderr.
            _wait_for_listener(address, int(port), world.timeout)
        dist.init_process_group("nccl" if on_cuda else "gloo", rank=world.rank, world_size=world.size,
                                timeout=datetime.timedelta(seconds=world.timeout))
    except (RuntimeError, ValueError, OSError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise DistributedError(
            f"{world}: the rendezvous at {where} failed within the timeout ({world.timeout:g} s): not all "
            f"{world.size} processes arrived, or the address cannot be reached. Start every process with the same "
            f"torchrun command (on several machines, the same --rdzv-endpoint) ({type(exc).__name__}: {detail})"
        ) from exc
    try:
        yield world
    finally:
        dist.destroy_process_group()


def wrap_model(model: nn.Module, world: World, device: str) -> nn.Module:
    """DistributedDataParallel around ``model`` on several ranks (``model`` itself in one).

    DDP broadcasts rank 0's weights once, then averages the gradients of every backward pass
    across the ranks while earlier layers are still computing theirs. ``forward_sync_buffers=False``:
    the model's buffers (RoPE tables) are constants, so there is nothing to re-send each step.
    """
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
    with world.collective("wrapping the model in DistributedDataParallel (weights broadcast from rank 0)"):
        return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def sync_gradients(model: nn.Module, sync: bool):
    """Context for one micro-step's backward: DDP averages gradients only when ``sync`` (the last
    micro-step of a gradient-accumulation step); before that ``no_sync`` lets them pile up
    locally, so an accumulated step costs one all-reduce, not one per micro-batch."""
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()
