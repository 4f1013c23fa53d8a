"""Device and dtype resolution shared by the NTK engine and the regimes."""
from __future__ import annotations

import torch
from .errors import InputError

__all__ = ["resolve_device", "resolve_dtype"]


def resolve_device(device="auto") -> torch.device:
    """'auto' (or None) -> CUDA when available, else CPU; anything else is passed to torch.device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} was asked for, but CUDA is not available here; use 'auto' or 'cpu'")
    return dev


def resolve_dtype(dtype="float64") -> torch.dtype:
    """'float64' (default, also None) or 'float32', as a name or a torch.dtype."""
    if dtype is None:
        return torch.float64
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float64, torch.float32):
            raise InputError(f"dtype must be float64 or float32, got dtype={dtype}")
        return dtype
    table = {"float64": torch.float64, "double": torch.float64, "float32": torch.float32, "float": torch.float32}
    if dtype not in table:
        raise InputError(f"dtype must be 'float64' or 'float32', got dtype={dtype!r}")
    return table[dtype]
