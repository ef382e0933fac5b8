"""Which devices and dtypes this machine can run the course on.

The same library code runs on a laptop CPU, a CUDA GPU, or Apple's MPS. Tests and benchmarks loop over
:func:`available_devices`, so a GPU run needs no other change.
"""

from __future__ import annotations

import torch

from attnlab._validate import check_device, check_sized_dtype, check_type

#: dtypes every module supports; MPS has no float64, so :func:`supported_dtypes` drops it there.
DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float64)


def available_devices() -> list[torch.device]:
    """Return every device present: always ``cpu``, then ``cuda`` and ``mps`` when torch can use them."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(torch.device("mps"))
    return devices


def default_device() -> torch.device:
    """Return the fastest device present (CUDA, then MPS, then CPU)."""
    return available_devices()[-1]


def supported_dtypes(device: torch.device | str) -> list[torch.dtype]:
    """Return the dtypes of :data:`DTYPES` that ``device`` supports (MPS lacks float64)."""
    check_type("device", device, (str, torch.device), "a torch.device or a device string such as 'cpu'")
    check_device("device", device, present=False)
    device = torch.device(device)
    return [d for d in DTYPES if not (device.type == "mps" and d == torch.float64)]


def dtype_bytes(dtype: torch.dtype) -> int:
    """Return bytes per element of ``dtype`` (2 for bfloat16, 1 for float8), via ``torch.finfo``/``iinfo``."""
    check_sized_dtype("dtype", dtype)
    if dtype.is_floating_point:
        return torch.finfo(dtype).bits // 8
    return torch.iinfo(dtype).bits // 8
