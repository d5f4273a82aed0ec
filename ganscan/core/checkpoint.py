"""Checkpoints: safetensors tensors plus JSON metadata, and model cards for shipped weights.

A checkpoint is one ``.safetensors`` file whose header metadata holds ``{"ganscan": "<json>"}``.
Shipped weights live in ``weights/NAME.safetensors`` with a card ``weights/NAME.json`` whose ``sha256``
is verified every time the weights are loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from ganscan import __version__
from ganscan.errors import CheckpointError

META_KEY = "ganscan"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_file_mode() -> int:
    """0o666 less the process umask: what a plain ``open(..., 'w')`` would have given."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, default_file_mode())
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, state_dict: dict, meta: dict) -> str:
    """Write tensors and metadata atomically; returns the file's sha256."""
    from safetensors.torch import save

    meta = {"ganscan_version": __version__, **meta}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items() if torch.is_tensor(v)}
    blob = save(tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    atomic_write_bytes(path, blob)
    return hashlib.sha256(blob).hexdigest()


def read_metadata(path: str | os.PathLike) -> dict:
    """Metadata only (no tensors read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(META_KEY)
    except Exception as exc:  # safetensors raises several types on a damaged header
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({_short(exc)})") from None
    if raw is None:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON") from None


def read_card(path: str | os.PathLike) -> dict | None:
    """The model card next to a checkpoint (NAME.json beside NAME.safetensors), or None."""
    cp = Path(path).with_suffix(".json")
    if not cp.exists():
        return None
    try:
        return json.loads(cp.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cp}: model card is unreadable ({_short(exc)})") from None


def load_checkpoint(path: str | os.PathLike, verify: bool = True) -> tuple[dict, dict]:
    """(state_dict, metadata). When a model card sits next to the file, its sha256 must match."""
    from safetensors.torch import load

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror})") from None
    card = read_card(path) if verify else None
    if card and card.get("sha256"):
        actual = hashlib.sha256(blob).hexdigest()
        if actual != card["sha256"]:
            raise CheckpointError(
                f"{path}: sha256 {actual[:12]}... does not match its model card ({card['sha256'][:12]}...)",
                hint="the file is damaged or was replaced; restore it from the repository",
            )
    meta = read_metadata(path)
    try:
        tensors = load(blob)
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint ({_short(exc)})") from None
    return tensors, meta


def load_strict(module: torch.nn.Module, state: dict, where: str, what: str, hint: str | None = None) -> None:
    """``module.load_state_dict(state, strict=True)``, or a one-line CheckpointError ``{where}: {what} (...)``."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: {what} ({str(exc).splitlines()[0][:160]})", hint=hint) from None


def load_foreign_state_dict(path: str | os.PathLike) -> dict:
    """Read a PyTorch ``.pth``/``.pt`` file without running code (``weights_only=True``).

    Accepts a bare state dict or the common wrappers ``{'model': ...}`` / ``{'state_dict': ...}``.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path}: corrupt safetensors file ({_short(exc)})") from None
    if _is_torchscript(path):
        return _torchscript_tensors(path)
    try:
        with warnings.catch_warnings():  # e.g. torch's note on pickle protocols: the outcome is told below
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for code, RuntimeError/EOFError for damage
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text or "UnpicklingError" in type(exc).__name__:
            raise CheckpointError(
                f"{path}: refused: the file contains pickled objects that would run code when loaded",
                hint="only plain tensors are accepted; re-save it as a state dict or safetensors",
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_short(exc)})") from None
    for key in ("model", "state_dict", "model_state_dict", "net"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not any(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path}: no state dict of tensors found in the checkpoint")
    state = {k: v for k, v in obj.items() if torch.is_tensor(v)}
    # DataParallel / DDP prefixes
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


_STORAGE_DTYPES = {f"{k}Storage": v for k, v in (
    ("Float", torch.float32), ("Half", torch.float16), ("BFloat16", torch.bfloat16),
    ("Double", torch.float64), ("Long", torch.int64), ("Int", torch.int32), ("Short", torch.int16),
    ("Char", torch.int8), ("Byte", torch.uint8), ("Bool", torch.bool))}


def _torchscript_tensors(path: Path) -> dict:
    """The tensors of a TorchScript archive (e.g. OpenAI's CLIP ``ViT-L-14.pt``) by their module path, read
    without loading its code: the unpickler knows tensors, ordered dicts and plain module objects only."""
    import io
    import pickle
    import zipfile
    from collections import OrderedDict

    class Module(dict):
        def __setstate__(self, state):
            self.update(state)

    def rebuild(flat, offset, size, stride, *_):
        return flat.as_strided(size, stride, offset).clone()

    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        root = pkl[: -len("data.pkl")]

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if module.startswith("__torch__"):
                    return Module
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return rebuild
                if (module, name) == ("collections", "OrderedDict"):
                    return OrderedDict
                if module == "torch" and name in _STORAGE_DTYPES:
                    return _STORAGE_DTYPES[name]
                raise pickle.UnpicklingError(f"{module}.{name}")

            def persistent_load(self, pid):  # ('storage', storage type, key, location, numel)
                return torch.frombuffer(bytearray(z.read(f"{root}data/{pid[2]}")), dtype=pid[1])

        try:
            tree = Unpickler(io.BytesIO(z.read(pkl))).load()
        except Exception as exc:
            raise CheckpointError(f"{path}: refused: a TorchScript archive with objects other than tensors "
                                  f"({_short(exc)})") from None
    out = {}

    def walk(obj, prefix):
        for k, v in obj.items():
            if torch.is_tensor(v):
                out[prefix + k] = v
            elif isinstance(v, Module):
                walk(v, f"{prefix}{k}.")

    walk(tree, "")
    if not out:
        raise CheckpointError(f"{path}: no tensors found in the TorchScript archive")
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
