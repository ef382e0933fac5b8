"""The registry of the course's animations: one ``Scene`` per chapter that has one.

:data:`SCENES` lists ``(chapter, module, scene class name)``, read from the course's chapter list
:data:`attnlab.chapters.CHAPTERS` (each chapter's ``scene`` and ``animation`` module); add a scene there,
not here. ``scripts/render_animations.py`` and the tests read this registry, and
:func:`attnlab.media.show_animation` reads the same chapter list. This file does not import manim, so it
can be read without rendering anything; :func:`load_scene` imports the scene class itself.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from attnlab.chapters import with_scenes

#: (chapter, module in animations/, scene class), in course order: the chapters that have a scene.
SCENES: tuple[tuple[int, str, str], ...] = tuple((c.number, c.animation, c.scene) for c in with_scenes())

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
