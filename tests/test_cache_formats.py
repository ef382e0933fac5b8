"""Byte layouts of a cached token: the published DeepSeek sizes, and the default one-dtype accounting."""

from __future__ import annotations

import pytest
import torch

from attnlab import cache_formats as cf


def test_published_layouts_add_up():
    assert (cf.DEEPSEEK_V32_FP8_MLA.bytes, cf.DEEPSEEK_V32_FP8_MLA.numbers) == (656, 512 + 64)
    assert (cf.DEEPSEEK_V32_FP8_INDEX_KEY.bytes, cf.DEEPSEEK_V32_FP8_INDEX_KEY.numbers) == (132, 128)
    assert (cf.DEEPSEEK_V4_FP8_ENTRY.bytes, cf.DEEPSEEK_V4_FP8_ENTRY.numbers) == (584, 512)
    assert (cf.DEEPSEEK_V4_FP4_INDEX_KEY.bytes, cf.DEEPSEEK_V4_FP4_INDEX_KEY.numbers) == (68, 128)
    assert set(cf.LAYOUTS) == {layout.name for layout in cf.LAYOUTS.values()} and len(cf.LAYOUTS) == 4


def test_formula_reads_as_the_sum():
    text = cf.DEEPSEEK_V4_FP4_INDEX_KEY.formula()
    assert text == "128 x 4 bit (index key, fp4 e2m1) + 4 x 1 B (scales, ue8m0, one per 32 values) = 68 B"


@pytest.mark.parametrize("dtype, size", [(torch.bfloat16, 2), (torch.float32, 4), (torch.float8_e4m3fn, 1)])
def test_uniform_layout_is_numbers_times_element_size(dtype, size):
    layout = cf.uniform_layout(576, dtype)
    assert layout.bytes == 576 * size and layout.numbers == 576


def test_scales_in_a_layout_are_not_model_numbers():
    layout = cf.ByteLayout("x", (cf.BytePart("values", 8, 8), cf.BytePart("scale", 1, 32), cf.BytePart("pad", 3, 8)),
                           "test")
    assert (layout.bytes, layout.numbers) == (8 + 4 + 3, 8)
