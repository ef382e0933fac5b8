"""Show a chapter's animation inside a notebook.

The course's Manim scenes live in ``animations/`` at the repository root; the chapter list
:data:`attnlab.chapters.CHAPTERS` names each chapter's scene. ``./course animations`` (``python
scripts/render_animations.py``) renders each one to ``media/videos/<SceneName>.mp4``; a still of its
last frame, the poster, is committed as ``animations/posters/<SceneName>.png`` so that a notebook shows
something before anything is rendered.

    >>> from attnlab.media import show_animation
    >>> show_animation("KVCacheScene")  # doctest: +SKIP

Notebooks are checked by re-running them and comparing their outputs, so what a notebook stores must
not depend on whether this machine has rendered the videos: the object :func:`show_animation` returns
has the same text, HTML and PNG forms either way. Its HTML is a ``<video>`` element whose poster is the
committed PNG and whose source is the rendered video: in JupyterLab it plays once the video exists and
shows the poster before that, with a caption saying how to render it.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from attnlab.chapters import with_scenes

#: The repository root: this file is ``<root>/lib/attnlab/media.py``.
ROOT = Path(__file__).resolve().parents[2]
ANIMATIONS_DIR = ROOT / "animations"
POSTERS_DIR = ANIMATIONS_DIR / "posters"
VIDEOS_DIR = ROOT / "media" / "videos"
NOTEBOOKS_DIR = ROOT / "notebooks"  # where the chapters live: the video's URL is relative to it
RENDER_COMMAND = "./course animations"


def registered_scenes() -> dict[str, int]:
    """Scene class name -> chapter, in course order, from the chapter list :data:`attnlab.chapters.CHAPTERS`
    (neither manim nor the scenes are loaded)."""
    return {c.scene: c.number for c in with_scenes()}


def video_path(scene_name: str) -> Path:
    """Where the render command puts the video of ``scene_name``: ``media/videos/<SceneName>.mp4``."""
    return VIDEOS_DIR / f"{scene_name}.mp4"


def poster_path(scene_name: str) -> Path:
    """The committed poster (last frame, 480p) of ``scene_name``: ``animations/posters/<SceneName>.png``."""
    return POSTERS_DIR / f"{scene_name}.png"


class Animation:
    """A chapter's animation as a notebook displays it.

    ``_repr_html_``: a ``<video>`` (poster: the committed PNG, source: the rendered MP4, relative to
    ``notebooks/``) and a caption; ``_repr_png_``: the poster, for viewers without
    HTML; ``repr``: one fixed line. All three are the same whether or not the video has been rendered;
    :attr:`rendered` says whether it has.
    """

    def __init__(self, scene_name: str, chapter: int) -> None:
        self.scene_name = scene_name
        self.chapter = chapter
        self.video = video_path(scene_name)
        self.poster = poster_path(scene_name)

    @property
    def rendered(self) -> bool:
        """Whether ``media/videos/<SceneName>.mp4`` exists on this machine."""
        return self.video.is_file()

    def video_url(self) -> str:
        """The video's URL relative to ``notebooks/``, where the chapters are (Jupyter resolves relative
        URLs in an output against the notebook's folder): ``../media/videos/<SceneName>.mp4``."""
        return Path(os.path.relpath(self.video, NOTEBOOKS_DIR)).as_posix()

    def poster_png(self) -> bytes:
        """The committed poster's bytes."""
        return self.poster.read_bytes()

    def caption(self) -> str:
        """The line under the video."""
        return (f"Chapter {self.chapter} animation ({self.scene_name}). If it does not play, render the videos "
                f"with {RENDER_COMMAND} from the course folder and run this cell again.")

    def _repr_html_(self) -> str:
        poster = base64.b64encode(self.poster_png()).decode("ascii")
        src = html.escape(self.video_url(), quote=True)
        return (f'<figure style="margin:0">'
                f'<video controls preload="none" width="640" poster="data:image/png;base64,{poster}">'
                f'<source src="{src}" type="video/mp4"></video>'
                f'<figcaption style="font-size:0.9em;color:#555">{html.escape(self.caption())}</figcaption>'
                f"</figure>")

    def _repr_png_(self) -> bytes:
        return self.poster_png()

    def __repr__(self) -> str:
        return f"Animation({self.scene_name!r}, chapter {self.chapter}: {self.video.name}, poster {self.poster.name})"


def show_animation(scene_name: str) -> Animation:
    """The animation ``scene_name`` (a chapter's scene in :mod:`attnlab.chapters`, e.g. "KVCacheScene") as a
    notebook display object: it plays ``media/videos/<SceneName>.mp4`` once rendered (``./course
    animations``) with the committed poster ``animations/posters/<SceneName>.png`` shown before, and its
    text form is the same either way (see :class:`Animation`).

    Raises ``ValueError`` naming ``scene_name`` when it is not a registered scene, and
    ``FileNotFoundError`` when its committed poster is missing.
    """
    scenes = registered_scenes()
    if not isinstance(scene_name, str) or scene_name not in scenes:
        raise ValueError(f"scene_name={scene_name!r} is not a registered animation; choose one of {sorted(scenes)}")
    animation = Animation(scene_name, scenes[scene_name])
    if not animation.poster.is_file():
        raise FileNotFoundError(f"the poster {animation.poster} of scene_name={scene_name!r} is missing: "
                                "run python scripts/render_animations.py --posters")
    return animation
