"""Render the course's Manim animations (``animations/scenes.py`` lists them, from ``attnlab.chapters``).

    python scripts/render_animations.py                        # every scene, low quality (480p, 15 fps)
    python scripts/render_animations.py KVCacheScene GQAScene  # only these
    python scripts/render_animations.py --quality high         # 1080p, 60 fps
    python scripts/render_animations.py --posters --no-video   # refresh the committed stills only
    python scripts/render_animations.py --no-video --media-dir /tmp/m MQAScene   # try it, outside media/

For each scene, manim renders into ``media/`` (git-ignored, its ``--media_dir``); the video is then
copied to the stable path ``media/videos/<SceneName>.mp4`` (what ``attnlab.media.show_animation``
plays) and the last frame, rendered at 480p (``-s -ql``), to ``media/videos/<SceneName>.png``.

``--posters`` also rewrites what is committed, deliberately: ``animations/posters/<SceneName>.png`` (the
last frame quantised to a small palette, under ~60 KB) and, for the scenes the tests compare,
``tests/reference_frames/<SceneName>.png`` (the exact 480p frame). Prints a table of the scenes, the
seconds each took and the files written.

Progress: a line when each scene starts ("[7/13] GQAScene (chapter 6) ...") and one when it is done, with its
seconds; while the video renders, manim's own progress bar (on stderr). The last-frame render stays quiet
(manim's output is shown only if it fails).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animations.scenes import REFERENCE_SCENES, SCENES, entry, scene_names  # noqa: E402

MEDIA = ROOT / "media"
VIDEOS = MEDIA / "videos"
POSTERS = ROOT / "animations" / "posters"
REFERENCE_FRAMES = ROOT / "tests" / "reference_frames"
QUALITY = {"low": ("l", "480p15"), "high": ("h", "1080p60")}
POSTER_MAX_BYTES = 60_000


def manim(module: str, scene: str, media_dir: Path, quality: str, still: bool) -> None:
    """Run ``python -m manim render`` on ``animations/<module>.py`` for ``scene`` (``still``: last frame only).

    The video render shows manim's progress bar and anything it prints straight on the terminal; the still
    render is quiet, its output captured and shown only if it fails."""
    cmd = [sys.executable, "-m", "manim", "render", f"-q{QUALITY[quality][0]}", "--disable_caching",
           "--media_dir", str(media_dir), "--progress_bar", "none" if still else "display", "-v", "WARNING"]
    if still:
        cmd.append("-s")
    cmd += [str(Path("animations") / f"{module}.py"), scene]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    sys.stdout.flush()
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=still, text=True)
    if result.returncode != 0:
        if still:
            sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"manim failed on {scene} (exit {result.returncode}): {' '.join(cmd)}")


def optimise_png(src: Path, dst: Path, max_bytes: int = POSTER_MAX_BYTES) -> int:
    """Save ``src`` to ``dst`` quantised to the largest palette (256, 128, 64, 32 colours, median cut, no
    dithering) that fits in ``max_bytes``; returns the size written."""
    from PIL import Image

    image = Image.open(src).convert("RGB")
    for colours in (256, 128, 64, 32):
        quantised = image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        quantised.save(dst, optimize=True)
        if dst.stat().st_size <= max_bytes:
            break
    return dst.stat().st_size


def save_exact_png(src: Path, dst: Path) -> int:
    """Save ``src`` losslessly as RGB to ``dst`` (for the tests' frame comparison); returns its size."""
    from PIL import Image

    Image.open(src).convert("RGB").save(dst, optimize=True)
    return dst.stat().st_size


def render(scene: str, quality: str, video: bool, posters: bool, media: Path = MEDIA) -> dict:
    """Render one scene into ``media`` (default ``media/``); returns the row of the summary table."""
    _, module, _ = entry(scene)
    start = time.perf_counter()
    videos = media / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    outputs = []
    if video:
        manim(module, scene, media, quality, still=False)
        rendered = media / "videos" / module / QUALITY[quality][1] / f"{scene}.mp4"
        shutil.copyfile(rendered, videos / f"{scene}.mp4")
        outputs.append(videos / f"{scene}.mp4")
    with tempfile.TemporaryDirectory() as tmp:  # the poster: always the 480p last frame
        manim(module, scene, Path(tmp), "low", still=True)
        frame = next(Path(tmp, "images").rglob(f"{scene}*.png"))
        shutil.copyfile(frame, videos / f"{scene}.png")
        outputs.append(videos / f"{scene}.png")
        if posters:
            POSTERS.mkdir(parents=True, exist_ok=True)
            size = optimise_png(frame, POSTERS / f"{scene}.png")
            outputs.append(f"{(POSTERS / f'{scene}.png').relative_to(ROOT)} ({size / 1000:.1f} kB)")
            if scene in REFERENCE_SCENES:
                REFERENCE_FRAMES.mkdir(parents=True, exist_ok=True)
                size = save_exact_png(frame, REFERENCE_FRAMES / f"{scene}.png")
                outputs.append(f"{(REFERENCE_FRAMES / f'{scene}.png').relative_to(ROOT)} ({size / 1000:.1f} kB)")
    seconds = time.perf_counter() - start
    shown = [(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)) if isinstance(p, Path) else p
             for p in outputs]
    return {"scene": scene, "seconds": seconds, "outputs": shown}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenes", nargs="*", metavar="SCENE",
                        help=f"scene class names (default: all of {scene_names()})")
    parser.add_argument("--quality", choices=sorted(QUALITY), default="low",
                        help="low: 480p15 (-ql), high: 1080p60 (-qh)")
    parser.add_argument("--posters", action="store_true",
                        help="also rewrite the committed posters and the tests' reference frames")
    parser.add_argument("--no-video", dest="video", action="store_false", help="render the last frames only")
    parser.add_argument("--media-dir", type=Path, default=MEDIA,
                        help="where manim renders and the videos and stills are copied (default media/, "
                             "which the notebooks play from)")
    args = parser.parse_args(argv)
    for scene in args.scenes:
        try:
            entry(scene)
        except ValueError as err:
            parser.error(str(err))
    chosen = args.scenes or [name for _, _, name in SCENES]

    rows = []
    for i, scene in enumerate(chosen, 1):
        chapter, _, _ = entry(scene)
        what = "video and last frame" if args.video else "last frame"
        print(f"[{i}/{len(chosen)}] {scene} (chapter {chapter}) ... {what}", flush=True)
        rows.append(render(scene, args.quality, args.video, args.posters, args.media_dir.resolve()))
        print(f"[{i}/{len(chosen)}] {scene} done in {rows[-1]['seconds']:.1f} s", flush=True)
    width = max(len(r["scene"]) for r in rows)
    print(f"\n{'scene':<{width}}  {'seconds':>7}  outputs")
    for r in rows:
        print(f"{r['scene']:<{width}}  {r['seconds']:7.1f}  {r['outputs'][0]}")
        for extra in r["outputs"][1:]:
            print(f"{'':<{width}}  {'':>7}  {extra}")
    print(f"{'total':<{width}}  {sum(r['seconds'] for r in rows):7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
