"""The course's chapter list, :data:`attnlab.chapters.CHAPTERS`, is the course: each chapter's notebook,
exercise checks, solutions, scene and poster exist under the names it gives, every numbered notebook in
``notebooks/`` is in it, and each notebook's title, video timestamp and animation are the ones it gives.

Everything else that lists chapters reads this list (chapter 0's map, ``animations/scenes.py``,
:mod:`attnlab.media`, the scripts); README's table is checked against it in ``tests/test_readme.py``.
Parsed, not imported: nothing here needs manim.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from attnlab import chapters
from attnlab.chapters import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def test_numbers_run_from_zero_in_order():
    assert [c.number for c in CHAPTERS] == list(range(len(CHAPTERS)))
    assert len({c.slug for c in CHAPTERS}) == len(CHAPTERS)
    for c in CHAPTERS:
        assert re.fullmatch(rf"{c.number:02d}_[a-z0-9_]+", c.slug), c.slug
        assert c.title and c.topic and c.builds and c.short, c.slug
        assert c.video is None or re.fullmatch(r"\d\d:\d\d", c.video), c.video
        assert (c.scene is None) == (c.animation is None), c.slug
    stamps = [c.video for c in CHAPTERS if c.video is not None]
    assert stamps == sorted(stamps), "the video chapters come in the video's order"


def test_every_numbered_notebook_is_a_chapter():
    on_disk = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    assert on_disk == [c.slug for c in CHAPTERS]
    assert sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) == on_disk


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.slug)
def test_chapter_files_exist(chapter):
    assert (NOTEBOOKS / chapter.source).is_file() and (NOTEBOOKS / chapter.notebook).is_file()
    assert importlib.util.find_spec(f"attnlab.exercises.{chapter.exercises}"), chapter.exercises
    assert (NOTEBOOKS / "solutions" / f"{chapter.exercises}.py").is_file()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.slug)
def test_notebook_states_its_number_video_and_scene(chapter):
    source = (NOTEBOOKS / chapter.source).read_text(encoding="utf-8")
    assert re.search(rf"^# # Chapter {chapter.number} · ", source, re.M), "its title names its number"
    said = re.search(r"\*Video chapter at (\d\d:\d\d)\.\*", source)
    assert (said.group(1) if said else None) == chapter.video
    shown = re.findall(r'show_animation\("(\w+)"\)', source)
    assert shown == ([chapter.scene] if chapter.scene else []), "the notebook shows its own chapter's scene"


@pytest.mark.parametrize("chapter", chapters.with_scenes(), ids=lambda c: c.slug)
def test_scene_module_defines_the_scene_and_its_poster_is_committed(chapter):
    module = ROOT / "animations" / f"{chapter.animation}.py"
    assert module.is_file(), module
    classes = {node.name for node in ast.parse(module.read_text(encoding="utf-8")).body
               if isinstance(node, ast.ClassDef)}
    assert chapter.scene in classes, f"{module.name} does not define {chapter.scene}"
    assert (ROOT / "animations" / "posters" / f"{chapter.scene}.png").is_file()


def test_lookups():
    eight = chapters.by_number(8)
    assert eight is CHAPTERS[8] and eight.slug == "08_mla_at_inference" and eight.video == "15:37"
    assert chapters.by_slug("08_mla_at_inference") is eight
    assert chapters.by_slug("08_mla_at_inference.ipynb") is eight and chapters.by_slug(eight.source) is eight
    assert chapters.by_scene("AbsorptionScene") is eight
    assert (eight.notebook, eight.source, eight.exercises, eight.video_label) == (
        "08_mla_at_inference.ipynb", "08_mla_at_inference.py", "ch08", "15:37")
    assert chapters.by_number(13).video_label == "course" and chapters.by_number(13).scene is None
    assert chapters.numbers() == list(range(len(CHAPTERS)))
    assert [c.scene for c in chapters.with_scenes()] == [c.scene for c in CHAPTERS if c.scene]


@pytest.mark.parametrize("call, arg", [
    (lambda: chapters.by_number(len(CHAPTERS)), "number"),
    (lambda: chapters.by_number("8"), "number"),
    (lambda: chapters.by_number(True), "number"),
    (lambda: chapters.by_slug("08_mla"), "slug"),
    (lambda: chapters.by_slug(8), "slug"),
    (lambda: chapters.by_scene("NoSuchScene"), "scene"),
    (lambda: chapters.by_scene(None), "scene"),
])
def test_lookups_reject_what_is_not_a_chapter(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()


def test_chapters_are_frozen():
    with pytest.raises(AttributeError):
        CHAPTERS[0].title = "changed"
