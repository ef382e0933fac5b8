"""The bridge to Hugging Face ``transformers``: which versions the course supports, in one place, and the
API differences inside that range, so every caller (the ``from_transformers`` converters' users, the
benchmark's peer, chapters 8 and 10, the parity tests) works on any version the range admits.

The one difference so far: the attention layers' cache argument. Up to 5.24 it is ``past_key_values``;
5.25 renamed it ``cache`` (the old name still works there, with a deprecation warning, until 5.40).
:func:`attention_forward` passes the cache under whichever name the installed version declares.
"""

from __future__ import annotations

import inspect
from importlib import metadata

import torch
from torch import nn

# The range requirements.in asks for (a test keeps the two equal); the lock pins one version inside it.
SUPPORTED_TRANSFORMERS = ">=5.20,<6"


def transformers_version() -> str | None:
    """The installed transformers version, or None when it is not installed."""
    try:
        return metadata.version("transformers")
    except metadata.PackageNotFoundError:
        return None


def cache_keyword(module: nn.Module) -> str:
    """The name under which ``module.forward`` takes its KV cache: ``"cache"`` (transformers >= 5.25) or
    ``"past_key_values"`` (earlier 5.x)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    parameters = inspect.signature(module.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise ValueError(f"{type(module).__name__}.forward takes neither 'cache' nor 'past_key_values': "
                     f"not a transformers attention layer of a supported version ({SUPPORTED_TRANSFORMERS})")


def attention_forward(module: nn.Module, hidden_states: torch.Tensor,
                      position_embeddings: tuple[torch.Tensor, torch.Tensor],
                      attention_mask: torch.Tensor | None, cache=None, **kwargs):
    """``module(hidden_states, position_embeddings, attention_mask=..., <cache keyword>=cache, **kwargs)`` for a
    transformers attention layer (``DeepseekV3Attention``, ``DeepseekV32Attention``, ...); returns what the
    layer returns, (output, attention weights). The mask goes by name: ``DeepseekV4Attention`` takes
    ``position_ids`` third, where a positional mask would land."""
    if cache is not None:
        kwargs[cache_keyword(module)] = cache
    return module(hidden_states, position_embeddings, attention_mask=attention_mask, **kwargs)
