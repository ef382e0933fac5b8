"""A fused CPU kernel for the lightning indexer's decode step, and what it is for.

A decode step of DSA (:mod:`attnlab.dsa`) scores one query against every cached index key,

    I_s = sum_j w_j ReLU(q_j · k_s) (d^I)^-1/2,   s = 1 .. T                     (DeepSeek-V3.2, eq. 1)

With PyTorch's own operations that is a matmul (T, d^I) x (d^I, H^I), a ReLU and a second matmul
(:func:`attnlab.dsa.index_scores`): the (T, H^I) logits are written and read again, and a matmul only
H^I = 4 columns wide runs at a small fraction of the CPU's matmul rate, so the step is bound by neither
the bytes nor the FLOPs. DeepSeek's indexer runs one fused kernel instead (``fp8_index_kernel`` in
DeepSeek-V3.2-Exp's ``inference/kernel.py``: FP8 products, ReLU, the weighted sum over the heads, one
score out per key). ``csrc/index_scores.c`` is the same loop for a CPU in float32: each key is read
once, its H^I dot products, ReLU and weighted sum are done in registers, one score is written.

The kernel is compiled from source with the system C compiler (``cc``, or ``$CC``) the first time it is
needed, cached under ``~/.cache/attnlab`` (or ``$ATTNLAB_KERNEL_CACHE``), and loaded with :mod:`ctypes`;
no PyTorch headers are involved. Where no compiler is found or compiling fails, or ``ATTNLAB_FUSED=0`` is
set, :func:`attnlab.dsa.index_scores` keeps its two matmuls and :func:`kernel_status` says why.
:func:`attnlab.dsa.index_scores` uses the kernel only where it is exact in intent and faster: one query
(a decode step) on a CPU in float32, no gradient wanted, d^I a multiple of 16. It agrees with the matmuls
up to float32 rounding (the sums run in another order), which the tests check against a float64 reference.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from attnlab._validate import check_floating, check_ndim, check_real

#: The kernel's source, shipped with the package.
SOURCE = Path(__file__).parent / "csrc" / "index_scores.c"
#: Compiler flags: optimised, position-independent, GNU C (vector extensions); no fast-math, so the sums run
#: in the order the source writes them.
FLAGS: tuple[str, ...] = ("-O3", "-std=gnu11", "-shared", "-fPIC", "-Wno-psabi")
#: Set to 0 to keep the matmul path everywhere (the kernel is then never compiled).
ENV_SWITCH = "ATTNLAB_FUSED"
#: Where compiled kernels are cached (default ``$XDG_CACHE_HOME/attnlab`` or ``~/.cache/attnlab``).
ENV_CACHE = "ATTNLAB_KERNEL_CACHE"
#: The vector width the kernel's inner loop reads: d^I must be a multiple of it.
LANES = 16
#: Heads are scored four at a time; others are padded with zero-weight heads, which add exactly 0.
HEAD_GROUP = 4


@dataclass(frozen=True)
class KernelStatus:
    """Whether the fused index-score kernel is in use: ``available``, ``reason`` (why not, or how it was
    built), the ``compiler`` and the cached ``library`` path, and the ``target`` the loader picked
    (for example "x86-64-v4 (AVX-512)")."""

    available: bool
    reason: str
    compiler: str | None = None
    library: str | None = None
    target: str | None = None


_lock = threading.Lock()
_loaded: tuple[KernelStatus, ctypes.CDLL | None] | None = None


def kernel_status() -> KernelStatus:
    """Compile and load the kernel if that has not been tried in this process; say whether it is in use."""
    return _load()[0]


def _compiler() -> str | None:
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attnlab"


def _compile(compiler: str, out: Path, extra: tuple[str, ...] = ()) -> str | None:
    """Compile SOURCE into the shared library ``out`` with FLAGS and ``extra``: None, or the compiler's last
    error line. ``-DATTNLAB_NO_CLONES`` builds one version for the compiler's default target;
    ``-DATTNLAB_GNU_SHUFFLE`` takes the shuffle builtin of GCC before 12 (the tests build both)."""
    run = subprocess.run([compiler, *FLAGS, *extra, str(SOURCE), "-o", str(out)], capture_output=True, text=True,
                         timeout=120)
    if run.returncode == 0:
        return None
    return run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"


def _build(compiler: str, cache: Path) -> tuple[Path, str]:
    """Compile SOURCE into cache (once per source, compiler and machine type) -> (library path, how)."""
    source = SOURCE.read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256(source + version.encode() + " ".join(FLAGS).encode() + platform.machine().encode())
    library = cache / f"index_scores-{key.hexdigest()[:16]}.so"
    if library.exists():
        return library, "cached"
    cache.mkdir(parents=True, exist_ok=True)
    errors = []
    for extra in ((), ("-DATTNLAB_NO_CLONES",)):  # a compiler without target_clones builds one version
        with tempfile.NamedTemporaryFile(dir=cache, suffix=".so", delete=False) as tmp:
            out = Path(tmp.name)
        error = _compile(compiler, out, extra)
        if error is None:
            os.replace(out, library)  # atomic: processes compiling at once each install a whole file
            return library, "compiled" + (" without target_clones" if extra else "")
        out.unlink(missing_ok=True)
        errors.append(error)
    raise RuntimeError("; ".join(errors))


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the library's two functions to ctypes (index_t is 64-bit, as c_longlong)."""
    P, N = ctypes.c_void_p, ctypes.c_longlong
    lib.index_scores_f32.argtypes = [P, N, N, N, N, P, P, N, P]
    lib.index_scores_f32.restype = None
    lib.index_scores_target.argtypes = []
    lib.index_scores_target.restype = ctypes.c_char_p
    return lib


def _load(compiler: str | None = None, cache: Path | None = None,
          reload: bool = False) -> tuple[KernelStatus, ctypes.CDLL | None]:
    """The process's kernel (built on first use); ``compiler``, ``cache`` and ``reload`` are for tests. Where
    the cache directory cannot be written, the kernel is built in a fresh temporary one."""
    global _loaded
    with _lock:
        if _loaded is not None and not reload:
            return _loaded
        if os.environ.get(ENV_SWITCH, "1") == "0":
            _loaded = (KernelStatus(False, f"{ENV_SWITCH}=0 is set"), None)
            return _loaded
        compiler = compiler or _compiler()
        if compiler is None:
            _loaded = (KernelStatus(False, "no C compiler found (cc, gcc, clang or $CC)"), None)
            return _loaded
        try:
            try:
                library, how = _build(compiler, cache or _cache_dir())
            except PermissionError:  # a read-only home: build where this process may write
                library, how = _build(compiler, Path(tempfile.mkdtemp(prefix="attnlab-")))
            lib = _bind(ctypes.CDLL(str(library)))
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            _loaded = (KernelStatus(False, f"building the kernel with {compiler} failed: {error}", compiler), None)
            return _loaded
        target = lib.index_scores_target().decode()
        _loaded = (KernelStatus(True, f"{how} with {compiler}", compiler, str(library), target), lib)
        return _loaded


def _refusal(q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor) -> str | None:
    """Why the kernel cannot take (q, weights, k), shaped as :func:`index_scores_fused` documents, or None:
    the one list of its rules, which :func:`_fusable` asks and :func:`index_scores_fused` raises."""
    s, d = q.shape[1], q.shape[-1]
    if s != 1:
        return (f"q has seq={s} queries: the fused kernel scores one query per sequence (a decode step); prefill "
                "scores go through attnlab.dsa.index_scores' matmuls")
    for name, t in (("q", q), ("weights", weights), ("k", k)):
        if t.dtype != torch.float32 or t.device.type != "cpu":
            return f"{name} is {t.dtype} on {t.device}: the fused kernel takes float32 tensors on a CPU"
    if d % LANES:
        return f"index_head_dim={d} must be a multiple of {LANES}: the kernel reads {LANES} floats at once"
    if k.stride(-1) != 1 or k.stride(1) != d:
        return f"k has strides {k.stride()}: each key's {d} numbers must be contiguous (rows of a cache)"
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, weights, k)):
        return ("q, weights or k requires grad: the fused kernel has no backward pass (the indexer's KL loss "
                "trains through attnlab.dsa.index_scores' matmuls)")
    return None


def _fusable(q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether :func:`attnlab.dsa.index_scores` hands its checked (q, weights, k) to the kernel: one query on a
    CPU in float32, no gradient wanted, key rows contiguous with d^I a multiple of 16 (:func:`_refusal`), and
    the kernel built."""
    return _refusal(q, weights, k) is None and _load()[0].available


def index_scores_fused(q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor, softmax_scale: float) -> torch.Tensor:
    """I_s = sum_j w_j ReLU(q_j · k_s) * softmax_scale by the fused kernel, for one query per sequence.

    q (b, 1, H^I, d^I), weights (b, 1, H^I), k (b, n, d^I) in float32 on a CPU, d^I a multiple of 16 ->
    I (b, 1, n). Raises ValueError when the kernel cannot take them (or is not built: see
    :func:`kernel_status`); :func:`attnlab.dsa.index_scores` falls back to matmuls instead."""
    check_ndim("q", q, 4, "(batch, 1, index_n_heads, index_head_dim)")
    check_ndim("weights", weights, 3, "(batch, 1, index_n_heads)")
    check_ndim("k", k, 3, "(batch, keys, index_head_dim)")
    check_floating("q", q)
    b, s, h, d = q.shape
    if tuple(weights.shape) != (b, s, h) or k.shape[0] != b or k.shape[2] != d:
        raise ValueError(f"q {tuple(q.shape)}, weights {tuple(weights.shape)} and k {tuple(k.shape)} must be "
                         "(b, 1, H^I, d^I), (b, 1, H^I) and (b, n, d^I)")
    refusal = _refusal(q, weights, k)
    if refusal is not None:
        raise ValueError(refusal)
    check_real("softmax_scale", softmax_scale, 0.0, strict=True)
    status = _load()[0]
    if not status.available:
        raise ValueError(f"the fused kernel is not available: {status.reason}")
    return _index_scores_fused(q, weights * softmax_scale, k)


def _index_scores_fused(q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor,
                        lib: ctypes.CDLL | None = None) -> torch.Tensor:
    """The kernel call on checked inputs, ``weights`` already scaled; ``lib``: another build (tests), else the
    process's kernel (loaded)."""
    lib = lib or _load()[1]
    b, _, h, d = q.shape
    n = k.shape[1]
    pad = -h % HEAD_GROUP  # zero-weight heads: w_j ReLU(.) = 0 exactly
    q = q.reshape(b, h, d)
    weights = weights.reshape(b, h)
    if pad:
        q = torch.cat([q, q.new_zeros(b, pad, d)], dim=1)
        weights = torch.cat([weights, weights.new_zeros(b, pad)], dim=1)
    q, weights = q.contiguous(), weights.contiguous()
    out = torch.empty(b, 1, n, dtype=torch.float32)
    lib.index_scores_f32(k.data_ptr(), k.stride(0), b, n, d, q.data_ptr(), weights.data_ptr(), h + pad,
                         out.data_ptr())
    return out
