"""Training in several processes at once (``torchrun``): the process group, each process's share
of the data, batch norm over the whole batch, and stopping every process together.

    torchrun --nproc_per_node=2 memc-train DATA ...

torchrun (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``) starts one process per device; :func:`init_distributed` joins them into one
process group: NCCL on CUDA, one GPU per process (``cuda:LOCAL_RANK``), gloo on the CPU. Without
that environment it returns a :class:`Distributed` for a single process and touches nothing.

The rules that make N processes with batch B train like one process with batch N x B:
- :class:`~torch.utils.data.DistributedSampler` (:func:`training_sampler`) deals each process a
  disjoint share of one permutation, drawn from the seed and the epoch;
- DistributedDataParallel averages the gradients of the processes' mean losses;
- batch norm takes its statistics over all processes' samples (:class:`SyncBatchNorm2d`);
- validation splits the samples without repeating any (:class:`ShardSampler`) and adds up the
  per-sample sums of every process (:func:`all_reduce_sums`).

When one process fails or is interrupted it posts a :class:`StopNotice` in the process group's
key-value store; every other process watches the store (:meth:`StopNotices.watch`) and stops
within a bounded time, even when it is blocked in a collective the failed process never joins.
"""

import _thread
import ctypes
import datetime
import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, List, NamedTuple, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset, DistributedSampler, Sampler

__all__ = [
    "Distributed",
    "DistributedError",
    "ShardSampler",
    "StopNotice",
    "StopNotices",
    "SyncBatchNorm2d",
    "all_reduce_sums",
    "bare_model",
    "close_distributed",
    "exit_within",
    "init_distributed",
    "launched_distributed",
    "training_sampler",
    "wrap_model",
]

#: The variables torchrun sets for each process that :func:`init_distributed` needs.
_ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A process group that cannot be set up (a wrong environment, too few GPUs)."""


class StopNotice(NamedTuple):
    """A process's notice that it stops: its rank, ``"failed"`` or ``"interrupted"``, and why."""

    rank: int
    reason: str
    message: str


class StopNotices:
    """The first stop notice of the run, held in the process group's store under one key.

    :meth:`post` writes a notice unless one is there already (the first cause is the one worth
    reporting: the others are its consequences); :meth:`read` returns it. :meth:`watch` starts a
    thread that, once another process has posted, interrupts this process's main thread
    (``KeyboardInterrupt``, so that it stops as on Ctrl-C, cleaning up) and ends the process
    ``grace`` seconds later if it has not ended by then (a main thread blocked in a collective
    does not see the interrupt).

    Every process that learns of a stop acknowledges it once (a counter in the store). The
    process holding the store's server (rank 0, unless torchrun's agent holds it) waits for them
    all, within a bound, before it ends (:meth:`wait_for_all`): the others read the cause from the
    store and stop quietly, rather than find the store gone.
    """

    _KEY = "stop"
    _ACKNOWLEDGED = "stopped"
    #: What a process concludes when the store no longer answers: the process holding it ended.
    STORE_GONE = StopNotice(-1, "failed", "the process holding the process group's store has ended")

    def __init__(self, store: "dist.Store", rank: int, world_size: int = 1, holds_store: bool = False):
        self.store = store
        self.rank, self.world_size, self.holds_store = rank, world_size, holds_store
        #: The notice of another process, once this process has seen one.
        self.peer_notice: Optional[StopNotice] = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._acknowledged = False

    def _acknowledge(self, store: "dist.Store") -> None:
        with self._lock:
            if self._acknowledged:
                return
            self._acknowledged = True
        try:
            store.add(self._ACKNOWLEDGED, 1)
        except Exception:  # the store is gone: nobody waits for the count
            pass

    def post(self, reason: str, message: str = "") -> Optional[StopNotice]:
        """Posts this process's notice unless another was first; returns that other notice (the
        cause this process stops for), or None when this one is the first."""
        self._stopping.set()
        if self.peer_notice is not None:  # known already (and the store may have gone since)
            return self.peer_notice
        value = f"{self.rank}\n{reason}\n{message}"
        try:
            stored = self.store.compare_set(self._KEY, "", value).decode()
        except Exception:
            return self.STORE_GONE
        self._acknowledge(self.store)
        if stored == value:
            return None
        self.peer_notice = _parse_notice(stored)
        return self.peer_notice

    def read(self, store: Optional["dist.Store"] = None) -> Optional[StopNotice]:
        """The first notice posted, None if there is none, or :attr:`STORE_GONE`."""
        store = self.store if store is None else store
        try:
            if not store.check([self._KEY]):
                return None
            return _parse_notice(store.get(self._KEY).decode())
        except Exception:
            return self.STORE_GONE

    def from_peer(self) -> Optional[StopNotice]:
        """The notice of another process, if one has been posted."""
        notice = self.peer_notice or self.read()
        return notice if notice is not None and notice.rank != self.rank else None

    def watch(self, interval: float = 0.5, grace: float = 30.0) -> None:
        # A clone: its own connection to the store, so that polling never interleaves with the
        # main thread's use of the store.
        store = self.store.clone()

        def run() -> None:
            while not self._stopping.wait(interval):
                notice = self.read(store)
                if notice is None or notice.rank == self.rank or self._stopping.is_set():
                    continue
                self.peer_notice = notice
                self._acknowledge(store)
                _interrupt_main_thread()
                time.sleep(grace)
                os._exit(1 if notice.reason == "failed" else 130)

        threading.Thread(target=run, name="memc-stop-watch", daemon=True).start()

    def stop_watching(self) -> None:
        """No more interrupts from the watcher: this process is stopping (or has finished)."""
        self._stopping.set()

    def wait_for_all(self, limit: float) -> None:
        """In the process holding the store: waits up to ``limit`` seconds until every process
        has acknowledged the stop. Elsewhere returns at once."""
        if not self.holds_store:
            return
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                if self.store.add(self._ACKNOWLEDGED, 0) >= self.world_size:
                    return
            except Exception:
                return
            time.sleep(0.05)


def _interrupt_main_thread() -> None:
    """Raises KeyboardInterrupt in the main thread, as Ctrl-C does: through the program's SIGINT
    handler when it has one (Python's default, memc-train's), directly when it has none.

    A process started with SIGINT ignored (a background job of a non-interactive shell, and the
    processes it starts) has no Python handler for it, and ``_thread.interrupt_main`` then does
    nothing: the process would run on until the watcher's grace ends it without cleaning up."""
    if callable(signal.getsignal(signal.SIGINT)):
        _thread.interrupt_main(signal.SIGINT)
        return
    # Delivered when the main thread next runs Python code, as interrupt_main's would be.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.main_thread().ident),
                                               ctypes.py_object(KeyboardInterrupt))


def _parse_notice(text: str) -> StopNotice:
    rank, reason, message = text.split("\n", 2)
    return StopNotice(int(rank), reason, message)


@dataclass
class Distributed:
    """Where this process stands in the run: its rank among ``world_size`` processes, the rank on
    its machine, its device and the process group's backend (None: a single plain process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: Optional[str] = None
    notices: Optional[StopNotices] = None

    @property
    def is_distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that alone writes files and prints progress."""
        return self.rank == 0

    def peer_stop(self) -> Optional[StopNotice]:
        """The stop notice of another process, if one has been posted (None in a plain run)."""
        return self.notices.from_peer() if self.notices is not None else None

    def announce_stop(self, reason: str, message: str = "", wait: float = 10.0) -> Optional[StopNotice]:
        """Tells the other processes that this one stops (``reason`` "failed" or "interrupted").
        Returns None when this process is the first to stop, so that it is the one to report
        why, or the first notice of another process, whose cause this stop is a consequence of.
        The process holding the store waits up to ``wait`` seconds for the others to learn of it."""
        if self.notices is None:
            return None
        cause = self.notices.post(reason, message)
        self.notices.wait_for_all(wait)
        return cause


def _environment_int(name: str) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        missing = [key for key in _ENVIRONMENT if not os.environ.get(key)]
        raise DistributedError(f"the environment sets {', '.join(k for k in _ENVIRONMENT if k not in missing)} "
                               f"but not {', '.join(missing)}: start the processes with torchrun, which sets all "
                               f"of {', '.join(_ENVIRONMENT)}")
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"the environment variable {name} must be a whole number; got {text!r}") from None


def launched_distributed() -> bool:
    """Whether this process was started by torchrun (or a launcher setting its variables)."""
    return any(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def init_distributed(device: torch.device, timeout: float = 600.0, watch_interval: float = 0.5,
                     stop_grace: float = 30.0) -> Distributed:
    """Joins the process group torchrun's environment describes, or returns a plain
    :class:`Distributed` (rank 0 of 1 on ``device``) when there is none.

    ``device`` is the kind of device to train on: with CUDA, process ``LOCAL_RANK`` takes
    ``cuda:LOCAL_RANK`` and NCCL; on the CPU, gloo. ``timeout`` (seconds) bounds the wait for
    the other processes to join and every collective operation (where the backend honours it).
    Starts watching for other processes' stop notices (``watch_interval``, ``stop_grace``: see
    :meth:`StopNotices.watch`).
    """
    if not launched_distributed():
        return Distributed(device=device)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            _environment_int(name)  # raises, naming what is missing
    rank, world_size, local_rank = (_environment_int(name) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if not (0 <= rank < world_size):
        raise DistributedError(f"RANK {rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE {world_size})")
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if local_rank >= visible:
            raise DistributedError(f"process LOCAL_RANK {local_rank} needs cuda:{local_rank}, but this machine shows "
                                   f"{visible} GPU(s): start at most {visible} processes per machine "
                                   f"(torchrun --nproc_per_node={visible})")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    wait = datetime.timedelta(seconds=timeout)
    # The store of the rendezvous is kept: besides the process group, it carries stop notices.
    store, rank, world_size = next(dist.rendezvous("env://", rank=rank, world_size=world_size, timeout=wait))
    store.set_timeout(wait)
    dist.init_process_group(backend, store=dist.PrefixStore("default_pg", store), rank=rank,
                            world_size=world_size, timeout=wait,
                            device_id=device if device.type == "cuda" else None)
    # env:// puts the store's server in rank 0, unless torchrun's agent holds it.
    holds_store = rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != str(True)
    notices = StopNotices(dist.PrefixStore("memc/", store), rank, world_size, holds_store)
    notices.watch(watch_interval, stop_grace)
    return Distributed(rank, world_size, local_rank, device, backend, notices)


def close_distributed(run: Distributed, finished: bool = True) -> None:
    """Leaves the process group. ``finished``: every process got here (a barrier first, so that
    no process takes the store away from one still using it)."""
    if not run.is_distributed or not dist.is_initialized():
        return
    if finished:
        dist.barrier()  # a process failing meanwhile still stops this one (its watcher is on)
    if run.notices is not None:
        run.notices.stop_watching()
    dist.destroy_process_group()


def exit_within(seconds: float, code: int) -> None:
    """Ends the process with ``code`` if it is still alive ``seconds`` from now: the bound on
    cleaning up after a failure (leaving a process group whose peers are gone can block)."""
    timer = threading.Timer(seconds, os._exit, args=(code,))
    timer.daemon = True
    timer.start()


# ----------------------------------------------------------------------------------------------
# Data


def training_sampler(dataset: Dataset, run: Distributed, seed: int) -> DistributedSampler:
    """Each process's share of a permutation of ``dataset`` drawn from ``seed`` and the epoch
    (call ``set_epoch`` before each epoch). The permutation is the same in every process and
    for any number of processes; the share of process r is every world_size-th sample from r.
    When the processes do not divide the dataset evenly, the first few samples of the
    permutation are used twice, so that every process takes the same number of steps."""
    return DistributedSampler(dataset, num_replicas=run.world_size, rank=run.rank, shuffle=True, seed=seed,
                              drop_last=False)


class ShardSampler(Sampler[int]):
    """Samples ``rank``, ``rank + world_size``, ... of ``length``: the shares of all processes
    together hold each sample exactly once (validation must not count any twice)."""

    def __init__(self, length: int, rank: int, world_size: int):
        if not (0 <= rank < world_size):
            raise ValueError(f"rank must be in 0..{world_size - 1}; got {rank}")
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


def all_reduce_sums(values: Sequence[float], run: Distributed) -> List[float]:
    """``values`` added up over all processes (in float64), e.g. (loss sum, PSNR sum, count): the
    means computed from them equal those of one process that saw every sample."""
    if not run.is_distributed:
        return [float(value) for value in values]
    total = torch.tensor([float(value) for value in values], dtype=torch.float64, device=run.device)
    dist.all_reduce(total)
    return total.tolist()


# ----------------------------------------------------------------------------------------------
# Model


class _SyncBatchNormFunction(torch.autograd.Function):
    """Batch norm of (N, C, H, W) with the statistics of every process's batch together."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float, group):
        dims = (0, 2, 3)
        # Two passes (mean, then the squared deviations from it) rather than E[x^2] - E[x]^2,
        # which cancels badly for large means.
        count = x.new_tensor([x.numel() / x.shape[1]], dtype=torch.float32)
        sums = torch.cat([x.sum(dims, dtype=torch.float32), count])
        dist.all_reduce(sums, group=group)
        count = sums[-1]
        mean = sums[:-1] / count
        centred = x.float() - mean.view(1, -1, 1, 1)
        square_sum = (centred * centred).sum(dims)
        dist.all_reduce(square_sum, group=group)
        variance = square_sum / count
        inverse_std = torch.rsqrt(variance + eps)
        normalised = centred * inverse_std.view(1, -1, 1, 1)
        ctx.save_for_backward(normalised, inverse_std, weight)
        ctx.count, ctx.group = count, group
        ctx.input_dtype = x.dtype
        ctx.has_bias = bias is not None
        output = normalised
        if weight is not None:
            output = output * weight.float().view(1, -1, 1, 1)
        if bias is not None:
            output = output + bias.float().view(1, -1, 1, 1)
        # The statistics go back for the running averages (unbiased variance, as batch norm's).
        unbiased = variance * count / max(float(count) - 1.0, 1.0)
        ctx.mark_non_differentiable(mean, unbiased)
        return output.to(x.dtype), mean, unbiased

    @staticmethod
    def backward(ctx, grad_output: Tensor, _grad_mean, _grad_variance):
        normalised, inverse_std, weight = ctx.saved_tensors
        dims = (0, 2, 3)
        grad = grad_output.float()
        grad_weight = (grad * normalised).sum(dims) if weight is not None else None
        grad_bias = grad.sum(dims) if ctx.has_bias else None
        scaled = grad * weight.float().view(1, -1, 1, 1) if weight is not None else grad
        # The output of every process depends on this process's input through the shared
        # statistics: the means of the gradient terms run over all processes' samples.
        sums = torch.cat([scaled.sum(dims), (scaled * normalised).sum(dims)])
        dist.all_reduce(sums, group=ctx.group)
        channels = normalised.shape[1]
        mean_scaled = (sums[:channels] / ctx.count).view(1, -1, 1, 1)
        mean_scaled_normalised = (sums[channels:] / ctx.count).view(1, -1, 1, 1)
        grad_input = (scaled - mean_scaled - normalised * mean_scaled_normalised) * inverse_std.view(1, -1, 1, 1)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        if grad_bias is not None:
            grad_bias = grad_bias.to(weight.dtype if weight is not None else grad_bias.dtype)
        return grad_input.to(ctx.input_dtype), grad_weight, grad_bias, None, None


class SyncBatchNorm2d(nn.BatchNorm2d):
    """:class:`~torch.nn.BatchNorm2d` whose training-mode statistics cover the batches of all
    processes of ``group``, so N processes with batch B normalise as one process with batch N x B.
    Its state dict is batch norm's. torch's own SyncBatchNorm runs on GPUs only; this one runs on
    any device the process group's backend serves (gloo on the CPU, NCCL on CUDA)."""

    def __init__(self, *args, group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.group = group

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size(self.group) > 1):
            return super().forward(x)
        self._check_input_dim(x)
        output, mean, variance = _SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps, self.group)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(variance.to(self.running_var.dtype), momentum)
        return output


def sync_batch_norm(model: nn.Module, group=None) -> nn.Module:
    """Replaces every :class:`~torch.nn.BatchNorm2d` of ``model`` (in place) by a
    :class:`SyncBatchNorm2d` holding the same weights and running statistics."""
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm2d:
            synced = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats, group=group)
            synced.load_state_dict(child.state_dict())
            for tensor in itertools.chain(child.parameters(), child.buffers()):
                synced.to(tensor.device)
                break
            synced.train(child.training)
            setattr(model, name, synced)
        else:
            sync_batch_norm(child, group)
    return model


def wrap_model(model: nn.Module, run: Distributed) -> nn.Module:
    """``model`` (already on ``run.device``) ready to train in this run: in several processes,
    with batch norm over the whole batch and DistributedDataParallel (which starts every process
    from rank 0's weights and averages the gradients); in one, ``model`` itself."""
    if not run.is_distributed:
        return model
    # Batch norm's collectives get a group of their own, apart from DDP's gradient buckets.
    sync_batch_norm(model, dist.new_group(backend=run.backend))
    # find_unused_parameters: which parameters take part depends on the frames (SPyNet uses
    # fewer pyramid levels on small frames; MEMC-Net*'s context network gets no gradient), and
    # DDP must not wait for gradients that never come.
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[run.device.index] if run.device.type == "cuda" else None, find_unused_parameters=True)


def bare_model(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (whose state dict would prefix every
    name with ``module.``), or ``model`` itself: what checkpoints hold."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
