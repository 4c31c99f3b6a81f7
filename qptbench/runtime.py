"""Settings shared by every command: the device (``auto`` means CUDA when torch sees a GPU)
and sizes in GB given as an option or an environment variable."""

from __future__ import annotations

import os

import torch

from qptbench.errors import InputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    name = name.lower()
    if name not in DEVICES:
        raise InputError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA GPU here")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def digest(parts) -> str:
    """A digest of strings and the exact bytes of tensors, in order: equal only for equal input
    (the evaluator's prediction fingerprint, the predictor's weights digest)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, torch.Tensor):
            h.update(part.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
                     .tobytes())
        else:
            h.update(str(part).encode())
    return h.hexdigest()


def gb_setting(value: float | None, option: str, env: str, zero: str = ""
               ) -> tuple[float | None, str]:
    """(GB, where it came from): ``value`` (the command's ``option``), else the environment
    variable ``env`` when set and not empty, else (None, ``option``).  One-line InputError for
    a non-number in ``env`` or a negative size (``zero`` says what 0 means, in that message)."""
    source = option
    if value is None:
        text = os.environ.get(env, "").strip()
        if not text:
            return None, source
        source = env
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{env} must be a number of GB, got {text!r}") from None
    if not value >= 0:
        raise InputError(f"{source} must be >= 0 (GB{zero}), got {value}")
    return float(value), source
