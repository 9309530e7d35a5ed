"""Saving a model and its optimiser to one file, and reading it back with every check.

A checkpoint holds the model's weights, the optimiser's state, the step, the model config, the
caller's ``extra`` entries, a sha256 of every tensor (``checksum``) and a sha256 of everything
else too (``payload_sha256``: every entry but itself, so a changed step or log is caught as
surely as a flipped weight); it is written atomically (:func:`tinyformer.files.atomic_write_bytes`)
and read with ``weights_only=True``. A missing, truncated, corrupt or foreign file, or one that
does not fit the model, raises :class:`CheckpointError` naming the file and the problem.

Taught in: Training (book/training.md)
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from .files import atomic_write_bytes

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "restore_checkpoint",
    "tensor_checksum",
    "payload_checksum",
    "config_differences",
]


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read, or does not fit the model it is loaded into."""


# v3: payload_sha256 covers the whole payload (v2's checksum covered the tensors only).
_CHECKPOINT_FORMAT = "tinyformer-checkpoint-v3"


def _tensors_in(obj, prefix: str = ""):
    """Every tensor in a nested dict/list, with a path name, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield from _tensors_in(obj[key], f"{prefix}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _tensors_in(item, f"{prefix}/{i}")


def tensor_checksum(obj) -> str:
    """sha256 over every tensor in ``obj`` (name, dtype, shape and raw bytes): stored in each
    checkpoint, so a flipped byte in the weights is caught when it is read."""
    digest = hashlib.sha256()
    for name, t in _tensors_in(obj):
        t = t.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def payload_checksum(payload: dict) -> str:
    """sha256 over every entry of a checkpoint payload but ``payload_sha256`` itself: each value with
    its place and type (tensors by dtype, shape and bytes, other values by ``repr``, each length
    prefixed), so any change to the step, the config, the log or a weight changes it."""
    digest = hashlib.sha256()

    def feed(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(f"{len(data)}:".encode() + data)

    def walk(obj, where: str) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            feed(where, "tensor", str(t.dtype), repr(tuple(t.shape)),
                 t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, dict):
            feed(where, "dict", str(len(obj)))
            for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
                walk(obj[key], f"{where}/{type(key).__name__}:{key!r}")
        elif isinstance(obj, (list, tuple)):
            feed(where, type(obj).__name__, str(len(obj)))
            for i, item in enumerate(obj):
                walk(item, f"{where}/{i}")
        else:
            feed(where, type(obj).__name__, repr(obj))

    walk({k: v for k, v in payload.items() if k != "payload_sha256"}, "")
    return digest.hexdigest()


def _describe(target) -> str:
    return str(target) if isinstance(target, (str, os.PathLike)) else getattr(target, "name", "<file object>")


def config_differences(saved: dict, current: dict) -> list[str]:
    """``"field: saved_value vs current_value"`` for each field that differs."""
    return [
        f"{k}: {saved.get(k, '(absent)')!r} vs {current.get(k, '(absent)')!r}"
        for k in sorted(set(saved) | set(current), key=str)
        if saved.get(k, "(absent)") != current.get(k, "(absent)")
    ]


def save_checkpoint(
    path: str | os.PathLike | BinaryIO,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    config: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write model, optimiser, iteration, model config, ``extra`` and two checksums: of the tensors,
    and of the whole payload (:func:`payload_checksum`).

    ``path`` is a file name or a binary file object (``io.BytesIO``, an open file), as for
    ``torch.save``. A file name is written atomically: the bytes go to a temporary file in
    the same folder, which is then renamed over ``path``, so a crash mid-write leaves the
    previous checkpoint intact, never a half-written one. ``config`` defaults to
    ``model.config.to_dict()`` when the model has one, so a loader can check the fit.
    """
    if config is None and hasattr(getattr(model, "config", None), "to_dict"):
        config = model.config.to_dict()
    state = model.state_dict()
    opt_state = optimizer.state_dict() if optimizer is not None else None
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "model": state,
        "optimizer": opt_state,
        "iteration": int(iteration),
        "config": config,
        "extra": extra or {},
        "checksum": tensor_checksum({"model": state, "optimizer": opt_state}),
    }
    payload["payload_sha256"] = payload_checksum(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    if hasattr(path, "write"):
        path.write(buffer.getvalue())
        return
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: str | os.PathLike | BinaryIO,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``:
    no arbitrary code runs), restore ``model`` and ``optimizer`` if given, and
    return the payload dict (``iteration``, ``config``, ``extra`` ...).

    ``path`` is a file name or a binary file object. Raises CheckpointError naming the file
    and the problem for a missing, truncated, corrupt (either checksum differs: any changed byte
    of the payload) or foreign file, one written by an older tinyformer (format v2 and before),
    one saved from a model with a different config (each differing field is named), or one
    whose tensors do not fit ``model``.
    """
    name = _describe(path)
    if hasattr(path, "read"):
        data = path.read()
    else:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"no checkpoint at {path}")
        data = path.read_bytes()
    try:
        with warnings.catch_warnings():  # a damaged file can make torch warn before it fails
            warnings.simplefilter("ignore")
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise CheckpointError(f"{name} is not a readable checkpoint (corrupt or truncated?): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        hint = " (written by an older tinyformer: retrain it)" if isinstance(found, str) and found.startswith("tinyformer") else ""
        raise CheckpointError(
            f"{name} is not a tinyformer checkpoint (format {found!r}, expected {_CHECKPOINT_FORMAT!r}){hint}"
        )
    for key, kind in (("model", dict), ("iteration", int), ("extra", dict), ("checksum", str),
                      ("payload_sha256", str)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{name} is damaged: its {key!r} entry is missing or not a {kind.__name__}")
    if tensor_checksum({"model": payload["model"], "optimizer": payload.get("optimizer")}) != payload["checksum"]:
        raise CheckpointError(f"{name} is corrupt: its tensors do not match the checksum stored with them")
    if payload_checksum(payload) != payload["payload_sha256"]:
        raise CheckpointError(f"{name} is corrupt: its contents (step, config, log or other entries) do not match "
                              f"the checksum stored with them")
    restore_checkpoint(payload, model, optimizer, name)
    return payload


def restore_checkpoint(payload: dict, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                       name: str = "the checkpoint") -> None:
    """Load a payload returned by :func:`load_checkpoint` into ``model`` and ``optimizer``
    (without reading the file again), with the same checks and messages."""
    if model is not None:
        saved_config = payload.get("config")
        model_config = getattr(model, "config", None)
        if isinstance(saved_config, dict) and hasattr(model_config, "to_dict"):
            diffs = config_differences(saved_config, model_config.to_dict())
            if diffs:
                raise CheckpointError(
                    f"{name} does not fit this model: it was saved from a model with a different config "
                    f"(checkpoint vs model) - " + "; ".join(diffs)
                )
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{name} does not fit this model (saved with config {saved_config}): {exc}") from exc
    if optimizer is not None:
        if payload.get("optimizer") is None:
            raise CheckpointError(f"{name} holds no optimizer state to resume from")
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{name}: optimizer state does not fit this optimizer: {exc}") from exc
