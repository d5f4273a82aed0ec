"""Run folders, shared by the detector and the GAN trainers: the folder guard, the resume state (safetensors
tensors plus a JSON skeleton), RNG capture and restore, CSV logs, and the Ctrl-C / SIGTERM stop flag."""

from __future__ import annotations

import csv
import io
import random
import signal
import threading
from pathlib import Path

import numpy as np
import torch

from ganscan.core.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from ganscan.errors import CheckpointError, GanscanError


def guard_run(out: Path, marker: str, resume: bool, force: bool | None = None) -> None:
    """--resume needs a run in ``out`` (its ``marker`` file); a new run needs a folder without one, or --force.
    ``force`` None: the command has no --force."""
    if out.exists() and not out.is_dir():
        raise GanscanError(f"{out} exists and is not a folder")
    held = (out / marker).exists()
    if resume and not held:
        raise GanscanError(f"nothing to resume in {out}: no {marker}", hint="start the run without --resume first")
    if held and not resume and not force:
        raise GanscanError(f"{out} already holds a training run", hint="pass --resume to continue it, "
                           + ("" if force is None else "--force to start over, ") + "or another -o")


# --- the resume state --------------------------------------------------------------------------------

def pack(obj, prefix: str, tensors: dict):
    """A JSON skeleton of ``obj`` (nested dicts, lists, tuples, tensors, numpy values); its tensors go into
    ``tensors`` under names that start with ``prefix``."""
    if torch.is_tensor(obj):
        tensors[prefix] = obj
        return {"__t": prefix}
    if isinstance(obj, np.ndarray):
        return {"__np": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        return {"__d": [[k, pack(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__l" if isinstance(obj, list) else "__tu": [pack(v, f"{prefix}.{i}", tensors)
                                                             for i, v in enumerate(obj)]}
    return obj.item() if isinstance(obj, np.generic) else obj


def unpack(obj, tensors: dict):
    """The inverse of pack. A plain JSON object is unpacked field by field (the first detector resume
    files held one at the top of their skeleton)."""
    if not isinstance(obj, dict):
        return obj
    if "__t" in obj:
        return tensors[obj["__t"]]
    if "__np" in obj:
        return np.asarray(obj["__np"], dtype=obj["dtype"])
    if "__d" in obj:
        return {k: unpack(v, tensors) for k, v in obj["__d"]}
    if "__l" in obj:
        return [unpack(v, tensors) for v in obj["__l"]]
    if "__tu" in obj:
        return tuple(unpack(v, tensors) for v in obj["__tu"])
    return {k: unpack(v, tensors) for k, v in obj.items()}


def save_state(path: Path, weights: dict, state: dict, meta: dict) -> None:
    """One safetensors file: ``weights`` (named tensors) as they are, ``state`` (optimiser states, RNG,
    counters: anything pack takes) with its tensors under ``state.`` names and its skeleton in the metadata."""
    tensors = dict(weights)
    save_checkpoint(path, tensors, {**meta, "skeleton": pack(state, "state", tensors)})


def load_state(path: Path, kind: str) -> tuple[dict, dict | None, dict]:
    """(tensors, state, metadata) of a file written by save_state whose metadata says ``kind``; the state is
    None where the file holds no skeleton."""
    tensors, meta = load_checkpoint(path, verify=False)
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path}: not a ganscan training state")
    return tensors, unpack(meta.get("skeleton"), tensors), meta


def rng_state() -> dict:
    """Every global RNG a training step may draw from (CUDA's only once CUDA is in use)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if "numpy" in rng:
        np.random.set_state(rng["numpy"])
    if "python" in rng:
        random.setstate(rng["python"])


# --- logs and signals --------------------------------------------------------------------------------

def read_csv(path: Path) -> list[dict]:
    """The rows of a CSV log (none when there is no file)."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class CsvLog:
    """A CSV log of dict rows (absent and None values left empty): rewritten whole and atomically with
    ``write``, or, inside ``with``, appended row by row (``add``) and flushed when asked."""

    def __init__(self, path: Path, fields):
        self.path, self.fields = Path(path), list(fields)

    def _writer(self, fh) -> csv.DictWriter:
        return csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore", lineterminator="\n")

    def write(self, rows) -> None:
        buf = io.StringIO()
        self._writer(buf).writeheader()
        self._writer(buf).writerows(rows)
        atomic_write_bytes(self.path, buf.getvalue().encode())

    def __enter__(self) -> CsvLog:
        self._fh = open(self.path, "a", newline="")
        self._appender = self._writer(self._fh)
        return self

    def add(self, row: dict) -> None:
        self._appender.writerow(row)

    def flush(self) -> None:
        self._fh.flush()

    def __exit__(self, *exc) -> None:
        self._fh.close()


class StopFlag:
    """Ctrl-C / SIGTERM during training: the loop finishes the step in flight, saves its resume state and
    returns (a second Ctrl-C aborts at once). Only installed in the main thread."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
