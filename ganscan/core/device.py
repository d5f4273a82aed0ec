"""Devices, dtypes and thread counts, chosen in one place."""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist

from ganscan.errors import GanscanError


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` / ``cuda:N`` / ``cpu`` are checked."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise GanscanError(f"unknown device {spec!r}", hint="use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GanscanError("CUDA was requested but no CUDA device is available", hint="use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise GanscanError(f"no CUDA device {dev.index}: {torch.cuda.device_count()} present")
    elif dev.type != "cpu":
        raise GanscanError(f"unsupported device {spec!r}", hint="use auto, cpu, cuda or cuda:N")
    return dev


@dataclass(frozen=True)
class Precision:
    """How a forward pass runs on a device: autocast dtype (or None for fp32) and memory format."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool = True

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def choose_precision(device: torch.device, precision: str = "auto") -> Precision:
    """``auto``: AMP fp16 on CUDA, bf16 on a CPU that has native bf16, fp32 otherwise."""
    precision = precision.lower()
    if precision not in {"auto", "fp32", "bf16", "fp16"}:
        raise GanscanError(f"unknown precision {precision!r}", hint="use auto, fp32, bf16 or fp16")
    if precision == "auto":
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif cpu_has_fast_bf16():
            dtype = torch.bfloat16
        else:
            dtype = None
    else:
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        if device.type == "cpu" and dtype is torch.float16:
            raise GanscanError("fp16 is not supported on the CPU", hint="use bf16 or fp32")
    return Precision(device=device, autocast_dtype=dtype, channels_last=True)


def training_precision(device: torch.device, precision: str = "auto",
                       channels_last: bool = True) -> tuple[Precision, str]:
    """Training's rule, and how the training log names it: as choose_precision, except that ``auto`` trains
    in fp32 on the CPU, native bf16 or not (bf16 there is for scoring)."""
    cpu_auto = device.type == "cpu" and precision.lower() == "auto"
    chosen = replace(choose_precision(device, "fp32" if cpu_auto else precision), channels_last=channels_last)
    return chosen, chosen.name + ("; --precision auto trains in fp32 on the CPU" if cpu_auto else "")


def cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(processes: int = 1, share: int = 1) -> int:
    """Decoding workers: the cores left to each of ``processes`` processes (divided by ``share``), 1 to 8."""
    return max(1, min(8, cores() // max(1, processes) // max(1, share)))


def configure_threads(num_threads: int | None = None) -> int:
    """Intra-op threads for the main process: all cores unless told otherwise."""
    n = max(1, int(num_threads or cores()))
    torch.set_num_threads(n)
    return n


def worker_init(_worker_id: int) -> None:
    """DataLoader workers decode images; one thread each so they do not fight the model for cores."""
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def data_loader(dataset, batch_size: int, workers: int, collate, **kwargs):
    """A DataLoader whose ``workers`` decoding processes (forked on POSIX) run one thread each."""
    from torch.utils.data import DataLoader

    if workers > 0:
        kwargs.update(worker_init_fn=worker_init, multiprocessing_context="fork" if os.name == "posix" else None)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate, **kwargs)


def distributed_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) when not distributed."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def init_distributed(device: torch.device, local_rank: int) -> None:
    """Join torchrun's process group: NCCL between GPUs, gloo otherwise."""
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo")


def leave_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def gather(obj, world: int) -> list:
    """``obj`` of every process (rank order), or ``[obj]`` when not distributed."""
    out = [obj] if world <= 1 else [None] * world
    if world > 1:
        dist.all_gather_object(out, obj)
    return out


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
