"""Every module on every device present (CPU always; CUDA, MPS when there) in float32, bfloat16, float64.

Each result is compared with the same computation in float64 on the CPU, with a tolerance for the dtype.
"""

from __future__ import annotations

import copy

import pytest
import torch

from attnlab.attention import attention_matrix
from attnlab.devices import DTYPES, available_devices, default_device, dtype_bytes, supported_dtypes
from attnlab.gqa import AttentionConfig, GroupedQueryAttention, grouped_attention
from attnlab.kv_cache import LayerCache
from attnlab.model import TinyLM, TinyLMConfig
from attnlab.rope import apply_rope

F64 = torch.float64
CPU = torch.device("cpu")
#: max |result - float64 reference|, relative to max(1, max |reference|)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2}


@pytest.fixture(params=DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def dtype(request, device):
    if request.param not in supported_dtypes(device):
        pytest.skip(f"{device.type} does not support {request.param}")
    return request.param


def to(x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return x.to(device=device, dtype=dtype)


def check(result: torch.Tensor, reference: torch.Tensor, device: torch.device, dtype: torch.dtype,
          tolerance: float | None = None) -> None:
    tolerance = TOLERANCE[dtype] if tolerance is None else tolerance
    assert result.dtype == dtype
    assert result.device.type == device.type
    assert result.shape == reference.shape
    assert torch.isfinite(result).all()
    err = (result.to(CPU, F64) - reference).abs().max().item()
    assert err <= tolerance * max(1.0, reference.abs().max().item()), f"error {err:.3g} in {dtype}"


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_attention_matrix(device, dtype):
    q, k, v = randn(2, 3, 5, 8, seed=1), randn(2, 3, 7, 8, seed=2), randn(2, 3, 7, 4, seed=3)
    mask = torch.rand(5, 7, generator=torch.Generator().manual_seed(4)) < 0.7
    mask[:, -1] = True
    ref_out, ref_w = attention_matrix(q, k, v, causal=True, mask=mask)
    out, w = attention_matrix(to(q, device, dtype), to(k, device, dtype), to(v, device, dtype), causal=True,
                              mask=mask.to(device))
    check(out, ref_out, device, dtype)
    check(w, ref_w, device, dtype)


def test_grouped_attention(device, dtype):
    q, k, v = randn(2, 6, 3, 8, seed=1), randn(2, 2, 5, 8, seed=2), randn(2, 2, 5, 8, seed=3)
    ref_out, ref_w = grouped_attention(q, k, v)
    out, w = grouped_attention(to(q, device, dtype), to(k, device, dtype), to(v, device, dtype))
    check(out, ref_out, device, dtype)
    check(w, ref_w, device, dtype)


@pytest.mark.parametrize("interleaved", [False, True])
def test_apply_rope(device, dtype, interleaved):
    x = randn(2, 4, 6, 16)
    positions = torch.arange(100, 106)
    ref = apply_rope(x, positions, interleaved=interleaved)
    out = apply_rope(to(x, device, dtype), positions.to(device), interleaved=interleaved)
    check(out, ref, device, dtype)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_grouped_query_attention_module_with_cache(device, dtype, n_kv_heads):
    torch.manual_seed(0)
    ref_layer = GroupedQueryAttention(AttentionConfig(d_model=16, n_heads=4, n_kv_heads=n_kv_heads)).to(F64)
    layer = copy.deepcopy(ref_layer).to(device=device, dtype=dtype)
    x = randn(2, 7, 16)
    with torch.no_grad():
        ref = ref_layer(x).output
        full = layer(to(x, device, dtype)).output
        cache = LayerCache()
        steps = [layer(to(x[:, :4], device, dtype), cache=cache).output]
        steps += [layer(to(x[:, t : t + 1], device, dtype), cache=cache).output for t in range(4, 7)]
    check(full, ref, device, dtype)
    check(torch.cat(steps, dim=1), ref, device, dtype)
    for t in cache.tensors.values():
        assert t.dtype == dtype and t.device.type == device.type
    assert cache.nbytes == 2 * 7 * 2 * n_kv_heads * 4 * dtype_bytes(dtype)


@pytest.mark.parametrize("attention", ["mha", "mqa", "gqa"])
def test_tiny_lm_forward_with_cache(device, dtype, attention):
    torch.manual_seed(0)
    config = TinyLMConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48,
                          max_seq_len=16, attention=attention)
    ref_model = TinyLM(config).to(F64).eval()
    model = copy.deepcopy(ref_model).to(device=device, dtype=dtype)
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = ref_model(ids)
        full = model(ids.to(device))
        cache = model.new_cache()
        steps = [model(ids[:, :5].to(device), cache=cache)]
        steps += [model(ids[:, t : t + 1].to(device), cache=cache) for t in range(5, 9)]
    # nn.RMSNorm's default eps is finfo(dtype).eps, so float32 differs from float64 by ~1e-4 by design
    tolerance = 1e-3 if dtype == torch.float32 else None
    check(full, ref, device, dtype, tolerance)
    check(torch.cat(steps, dim=1), ref, device, dtype, tolerance)
    n_kv = config.attention_config().n_kv_heads
    assert cache.nbytes == 2 * 2 * 9 * 2 * n_kv * 8 * dtype_bytes(dtype)  # layers, batch, seq, K/V, heads, d


# --- attnlab.devices ------------------------------------------------------------------------------------


def test_available_devices():
    devices = available_devices()
    assert devices[0] == torch.device("cpu")
    assert len(set(devices)) == len(devices)
    assert (torch.device("cuda") in devices) == torch.cuda.is_available()
    assert default_device() == devices[-1]


def test_supported_dtypes():
    assert supported_dtypes("cpu") == [torch.float32, torch.bfloat16, torch.float64]
    assert supported_dtypes(torch.device("cuda")) == list(DTYPES)
    assert supported_dtypes("mps") == [torch.float32, torch.bfloat16]


@pytest.mark.parametrize(
    ("dtype", "size"),
    [
        (torch.float64, 8), (torch.float32, 4), (torch.bfloat16, 2), (torch.float16, 2),
        (torch.float8_e4m3fn, 1), (torch.float8_e5m2, 1),
        (torch.int64, 8), (torch.int32, 4), (torch.int16, 2), (torch.int8, 1), (torch.uint8, 1),
    ],
)
def test_dtype_bytes(dtype, size):
    assert dtype_bytes(dtype) == size
    assert dtype_bytes(dtype) == torch.empty(0, dtype=dtype).element_size()
