"""The registry of the course's animations: one ``Scene`` per chapter.

:data:`SCENES` lists ``(chapter, module, scene class name)``; ``scripts/render_animations.py``, the tests
and :func:`attnlab.media.show_animation` read it. This file imports nothing heavy (no manim), so the
library can read it without rendering anything; :func:`load_scene` imports the scene class itself.
"""

from __future__ import annotations

import importlib
from pathlib import Path

#: (chapter, module in animations/, scene class), in course order.
SCENES: tuple[tuple[int, str, str], ...] = (
    (0, "ch00_introduction", "IntroductionScene"),
    (1, "ch01_tokenization", "TokenizationScene"),
    (2, "ch02_attention_vector", "AttentionVectorScene"),
    (3, "ch03_attention_matrix", "AttentionMatrixScene"),
    (4, "ch04_kv_cache", "KVCacheScene"),
    (5, "ch05_mqa", "MQAScene"),
    (6, "ch06_gqa", "GQAScene"),
    (7, "ch07_mla", "MLAScene"),
    (8, "ch08_absorption", "AbsorptionScene"),
    (9, "ch09_decoupled_rope", "DecoupledRoPEScene"),
    (10, "ch10_dsa", "DSAScene"),
    (11, "ch11_hadamard_fp8", "HadamardFP8Scene"),
    (12, "ch12_dsa_training", "DSATrainingScene"),
)

#: The scenes whose last frame the tests compare against ``tests/reference_frames/<Scene>.png``.
REFERENCE_SCENES: tuple[str, ...] = ("AttentionVectorScene", "KVCacheScene", "GQAScene")

ANIMATIONS_DIR = Path(__file__).resolve().parent
POSTERS_DIR = ANIMATIONS_DIR / "posters"


def scene_names() -> list[str]:
    """The registered scene class names, in course order."""
    return [name for _, _, name in SCENES]


def entry(scene_name: str) -> tuple[int, str, str]:
    """The ``(chapter, module, scene)`` entry of ``scene_name``; ValueError naming the argument if unknown."""
    for item in SCENES:
        if item[2] == scene_name:
            return item
    raise ValueError(f"scene_name={scene_name!r} is not a registered scene; choose one of {scene_names()}")


def module_path(scene_name: str) -> Path:
    """The file that defines ``scene_name``: ``animations/chNN_topic.py``."""
    return ANIMATIONS_DIR / f"{entry(scene_name)[1]}.py"


def load_scene(scene_name: str):
    """Import and return the scene class ``scene_name`` (needs manim and the repository root on sys.path)."""
    _, module, name = entry(scene_name)
    return getattr(importlib.import_module(f"animations.{module}"), name)
