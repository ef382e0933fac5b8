"""The course animations: every registered scene renders its last frame, its text is readable when
projected and stays inside the frame, three last frames match their references, the numbers the scenes
show come from attnlab, and ``attnlab.media.show_animation`` displays them in a notebook.

The scenes are rendered once per session, in this process, at low quality with ``save_last_frame``
(what ``manim -s -ql --disable_caching`` does), into a temporary media folder. Reference frames are
regenerated deliberately with ``python scripts/render_animations.py --posters``.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab import attention, media, sizing, tokenization
from attnlab.chapters import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

registry = importlib.import_module("animations.scenes")

REFERENCE_DIR = ROOT / "tests" / "reference_frames"
REGENERATE = "python scripts/render_animations.py --posters --no-video"
# Last-frame comparison, on absolute differences 0..255: their mean over the whole frame, and their
# mean inside each TILE x TILE block. Antialiasing differences are small and spread out, so both stay
# low; a changed digit or a moved label concentrates in a few blocks and fails the second.
MEAN_TOLERANCE = 1.5
TILE = 16
TILE_TOLERANCE = 12.0
HAS_LATEX = shutil.which("latex") is not None and shutil.which("dvisvgm") is not None
needs_latex = pytest.mark.skipif(not HAS_LATEX, reason="the scenes typeset formulas with LaTeX (latex, dvisvgm)")


def _module(name: str):
    return importlib.import_module(f"animations.{name}")


# --------------------------------------------------------------------------------------------------
# rendering


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """Every registered scene rendered once: scene name -> (scene object, last frame (480, 854, 3) uint8)."""
    pytest.importorskip("manim")
    if not HAS_LATEX:
        pytest.skip("the scenes typeset formulas with LaTeX (latex, dvisvgm)")
    from manim import tempconfig

    media_dir = tmp_path_factory.mktemp("media")  # shared, so each formula is typeset once
    out = {}
    for name in registry.scene_names():
        scene_class = registry.load_scene(name)
        with tempconfig({"quality": "low_quality", "save_last_frame": True, "write_to_movie": False,
                         "disable_caching": True, "media_dir": str(media_dir), "progress_bar": "none",
                         "verbosity": "WARNING", "preview": False}):
            scene = scene_class()
            scene.render()
            out[name] = (scene, np.asarray(scene.renderer.get_frame())[..., :3].copy())
    return out


def test_registry_lists_every_chapter_module():
    chapters = [chapter for chapter, _, _ in registry.SCENES]
    assert chapters == sorted(set(chapters))  # in course order, one scene per chapter
    assert chapters[:13] == list(range(13))  # the video's chapters 0-12 each have one; later ones may
    assert registry.SCENES == tuple((c.number, c.animation, c.scene) for c in CHAPTERS if c.scene is not None)
    for _, module, name in registry.SCENES:
        assert (ROOT / "animations" / f"{module}.py").is_file()
        assert name.endswith("Scene")
    assert set(registry.REFERENCE_SCENES) <= set(registry.scene_names())
    with pytest.raises(ValueError, match="scene_name"):
        registry.entry("NoSuchScene")


@needs_latex
@pytest.mark.parametrize("name", registry.scene_names())
def test_scene_renders_its_last_frame(rendered, name):
    from manim import Scene

    scene, frame = rendered[name]
    assert isinstance(scene, Scene)
    assert frame.shape == (480, 854, 3) and frame.dtype == np.uint8
    drawn = (np.abs(frame.astype(int) - 255).max(axis=-1) > 40).mean()  # share of non-background pixels
    assert drawn > 0.04, f"{name}'s last frame is almost empty ({drawn:.1%} drawn)"


def _texts(scene):
    """The visible Text and MathTex objects of the scene's last frame (a glyph with some fill)."""
    from manim import MarkupText, SingleStringMathTex, Text

    for top in scene.mobjects:
        for mob in top.get_family():
            if isinstance(mob, (Text, MarkupText, SingleStringMathTex)) and any(
                    part.get_fill_opacity() > 0 for part in mob.family_members_with_points()):
                yield mob


@needs_latex
@pytest.mark.parametrize("name", registry.scene_names())
def test_text_is_readable_and_inside_the_frame(rendered, name):
    """No text below the style's minimum (an em of ~24 px at 480p), none cut off by the frame's edge."""
    from manim import SingleStringMathTex, config

    style = _module("style")
    assert style.em_px(style.MIN_FONT_SIZE) >= 24 and style.em_px(style.MIN_MATH_FONT_SIZE, math=True) >= 24
    scene, _ = rendered[name]
    texts = list(_texts(scene))
    assert texts, f"{name} shows no text"
    half_w, half_h = config.frame_width / 2, config.frame_height / 2
    for mob in texts:
        minimum = style.MIN_MATH_FONT_SIZE if isinstance(mob, SingleStringMathTex) else style.MIN_FONT_SIZE
        assert mob.font_size >= minimum - 0.5, f"{name}: {mob!r} has font_size {mob.font_size:.1f} < {minimum}"
        (x0, y0, _), (x1, y1, _) = mob.get_corner([-1, -1, 0]), mob.get_corner([1, 1, 0])
        assert -half_w <= x0 and x1 <= half_w and -half_h <= y0 and y1 <= half_h, f"{name}: {mob!r} is clipped"


def _fonts_available() -> bool:
    try:
        import manimpango
    except ImportError:
        return False
    style = _module("style")
    fonts = set(manimpango.list_fonts())
    return style.FONT in fonts and style.MONO in fonts


@needs_latex
@pytest.mark.parametrize("name", registry.REFERENCE_SCENES)
def test_last_frame_matches_reference(rendered, name, tmp_path):
    if not _fonts_available():
        pytest.skip("the reference frames are drawn with DejaVu Sans and DejaVu Sans Mono, not installed here")
    from PIL import Image

    path = REFERENCE_DIR / f"{name}.png"
    assert path.is_file(), f"no reference frame {path}: run {REGENERATE} {name}"
    reference = np.asarray(Image.open(path).convert("RGB")).astype(int)
    _, frame = rendered[name]
    assert frame.shape == reference.shape
    diff = np.abs(frame.astype(int) - reference)
    mean, worst = diff.mean(), _tile_means(diff).max()
    if mean > MEAN_TOLERANCE or worst > TILE_TOLERANCE:
        Image.fromarray(frame).save(tmp_path / f"{name}.png")
        Image.fromarray((255 - diff.max(axis=-1)).astype(np.uint8)).save(tmp_path / f"{name}_diff.png")
        pytest.fail(f"{name}'s last frame differs from {path.relative_to(ROOT)}: mean |diff| {mean:.2f} "
                    f"(tolerance {MEAN_TOLERANCE}), worst {TILE}x{TILE} block {worst:.1f} (tolerance "
                    f"{TILE_TOLERANCE}). New frame and diff in {tmp_path}; if the change is intended, run "
                    f"{REGENERATE} {name}")


def _tile_means(diff: np.ndarray, tile: int = TILE) -> np.ndarray:
    """Mean of ``diff`` (h, w, channels) over each tile x tile block (the frame zero-padded to whole blocks)."""
    h, w = diff.shape[:2]
    padded = np.zeros((-(-h // tile) * tile, -(-w // tile) * tile), dtype=float)
    padded[:h, :w] = diff.max(axis=-1)
    return padded.reshape(padded.shape[0] // tile, tile, padded.shape[1] // tile, tile).mean(axis=(1, 3))


def _passes(a: np.ndarray, b: np.ndarray) -> bool:
    diff = np.abs(a.astype(int) - b.astype(int))
    return diff.mean() <= MEAN_TOLERANCE and _tile_means(diff).max() <= TILE_TOLERANCE


def test_frame_comparison_allows_antialiasing_but_not_a_changed_label():
    from PIL import Image, ImageDraw

    reference = Image.open(REFERENCE_DIR / "GQAScene.png").convert("RGB")
    ref = np.asarray(reference).astype(int)
    edges = np.zeros(ref.shape[:2], dtype=bool)  # pixels next to a change of colour: where antialiasing acts
    edges[:, 1:] |= np.abs(np.diff(ref, axis=1)).max(axis=-1) > 0
    edges[1:, :] |= np.abs(np.diff(ref, axis=0)).max(axis=-1) > 0
    noisy = ref + np.where(edges[..., None], np.random.default_rng(0).integers(-16, 17, size=ref.shape), 0)
    assert _passes(np.clip(noisy, 0, 255), ref)
    assert not _passes(np.roll(ref, 1, axis=1), ref), "a layout shifted by one pixel must fail"
    changed = reference.copy()
    ImageDraw.Draw(changed).rectangle([345, 392, 375, 408], fill="white")  # wipe one number of a bar label
    assert not _passes(np.asarray(changed).astype(int), ref)


def test_scene_modules_import_no_other_scene_module():
    """A piece two chapters' scenes share lives in ``animations/components.py``; a scene module imports
    ``animations.style`` and ``animations.components`` only, and those two import no scene module."""
    import ast

    shared = {"animations.style", "animations.components"}
    for path in sorted((ROOT / "animations").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        ours = {name for name in imported if name == "animations" or name.startswith("animations.")}
        allowed = {"animations.style"} if path.stem == "components" else set() if path.stem == "style" else shared
        assert ours <= allowed, f"{path.name} imports {sorted(ours - allowed)}: move the shared piece to components.py"


# --------------------------------------------------------------------------------------------------
# the numbers the scenes show come from attnlab


def test_introduction_bars_are_sizing_numbers():
    ch00 = _module("ch00_introduction")
    v3 = sizing.MODELS["deepseek-v3"]
    bars = {b.name: b for b in ch00.headline_bars()}
    assert list(bars) == ["MHA", "MQA", f"GQA-{ch00.GQA_KV_HEADS}", "MLA"]
    for b in bars.values():
        assert b.bytes_per_token == sizing.cache_bytes_per_token(v3, scheme=b.scheme, n_kv_heads=b.n_kv_heads)
        assert b.ratio == pytest.approx(bars["MHA"].bytes_per_token / b.bytes_per_token)
    d_c, d_h_rope = sizing.mla_dims(v3)
    assert bars["MQA"].ratio == v3.n_heads
    assert bars[f"GQA-{ch00.GQA_KV_HEADS}"].ratio == v3.n_heads / ch00.GQA_KV_HEADS
    assert bars["MLA"].ratio == pytest.approx(2 * v3.n_heads * v3.head_dim / (d_c + d_h_rope))
    assert bars["MLA"].value_label() == (f"{sizing.format_bytes(bars['MLA'].bytes_per_token)} · "
                                         f"{sizing.format_ratio(bars['MLA'].ratio)}× less")
    assert [(n, name) for n, name, _ in ch00.COURSE_MAP] == [(c.number, c.short) for c in CHAPTERS]


def test_tokenization_replays_the_real_merges():
    ch01 = _module("ch01_tokenization")
    tok = tokenization.load_tokenizer()
    steps = ch01.merge_steps(tok)
    assert steps, "the phrase should show at least one merge"
    assert [p.id for p in steps[-1].pieces] == tok.encode(ch01.PHRASE)
    ranks = [s.new_id - 256 for s in steps]
    assert ranks == sorted(ranks), "merges are applied lowest rank first"
    for step in steps:
        assert tok.merges[step.pair] == step.new_id
        assert sum(p.n_bytes for p in step.pieces) == len(ch01.PHRASE.encode("utf-8"))
    assert [p.id for p in ch01.initial_pieces()] == list(ch01.PHRASE.encode("utf-8"))


def test_vector_attention_numbers_come_from_attnlab():
    ch02 = _module("ch02_attention_vector")
    data = ch02.attention_data()
    output, weights = attention.attention_vector(data.q, data.keys, data.values)
    torch.testing.assert_close(data.weights, weights)
    torch.testing.assert_close(data.output, output)
    torch.testing.assert_close(data.weights, attention.softmax(data.keys @ data.q / data.q.shape[0] ** 0.5))
    assert float(data.weights.sum()) == pytest.approx(1.0)


def test_matrix_attention_is_the_vector_form_in_its_last_row():
    ch02, ch03 = _module("ch02_attention_vector"), _module("ch03_attention_matrix")
    data, vec = ch03.matrix_data(), ch02.attention_data()
    n = data.q.shape[0]
    torch.testing.assert_close(data.weights[-1], vec.weights)
    torch.testing.assert_close(data.weights.sum(-1), torch.ones(n, dtype=data.weights.dtype))
    assert torch.all(data.weights[~data.allowed] == 0)
    assert torch.equal(data.allowed, torch.ones(n, n, dtype=torch.bool).tril())


def test_kv_cache_counter_comes_from_sizing():
    ch04 = _module("ch04_kv_cache")
    spec = sizing.get_model(ch04.MODEL)
    counts = ch04.cache_counts()
    assert [c.tokens for c in counts] == list(range(1, len(ch04.PROMPT) + len(ch04.GENERATED) + 1))
    assert ch04.layer_config().cache_elements_per_token() == sizing.kv_elements_per_token(spec, per_layer=True)
    for c in counts:
        assert c.bytes_per_token == sizing.cache_bytes_per_token(spec)
        assert c.total == sizing.kv_cache_bytes(spec, seq_len=c.tokens)
        assert sizing.format_bytes(c.total) in c.label()


@pytest.mark.parametrize("module, schemes", [("ch05_mqa", ("mha", "mqa")), ("ch06_gqa", ("mha", "gqa", "mqa"))])
def test_head_sharing_bars_come_from_sizing(module, schemes):
    mod = _module(module)
    spec = sizing.get_model(mod.MODEL)
    bars = mod.gqa_bars() if module == "ch06_gqa" else _module("components").cache_bars(mod.MODEL, ("mha", "mqa"))
    assert [b.scheme for b in bars] == list(schemes)
    for b in bars:
        n_kv = spec.n_kv_heads if b.scheme == "gqa" else None
        assert b.bytes_per_token == sizing.cache_bytes_per_token(spec, scheme=b.scheme, n_kv_heads=n_kv)
        assert b.ratio == sizing.reduction_vs_mha(spec, scheme=b.scheme, n_kv_heads=n_kv)
    if module == "ch06_gqa":
        assert bars[1].name == f"GQA-{spec.n_kv_heads}" and bars[1].ratio == spec.group_size


# --------------------------------------------------------------------------------------------------
# attnlab.media.show_animation


def test_every_scene_has_a_small_committed_poster():
    from PIL import Image

    for name in registry.scene_names():
        path = media.poster_path(name)
        assert path.is_file(), f"missing poster {path}: run {REGENERATE}"
        assert path.stat().st_size < 60_000
        assert Image.open(path).size == (854, 480)


def test_show_animation_falls_back_to_the_poster(monkeypatch, tmp_path):
    monkeypatch.setattr(media, "VIDEOS_DIR", tmp_path / "videos")  # nothing rendered here
    shown = media.show_animation("KVCacheScene")
    assert not shown.rendered
    assert repr(shown) == "Animation('KVCacheScene', chapter 4: KVCacheScene.mp4, poster KVCacheScene.png)"
    assert shown._repr_png_() == media.poster_path("KVCacheScene").read_bytes()
    page = shown._repr_html_()
    assert 'poster="data:image/png;base64,' in page and "./course animations" in page
    assert "KVCacheScene.mp4" in page


def test_show_animation_output_does_not_depend_on_the_video(monkeypatch, tmp_path):
    """Notebooks store this output and nbval compares it: rendering the videos must not change it."""
    from IPython.core.formatters import DisplayFormatter

    monkeypatch.setattr(media, "VIDEOS_DIR", tmp_path)
    before, _ = DisplayFormatter().format(media.show_animation("GQAScene"))
    (tmp_path / "GQAScene.mp4").write_bytes(b"not really a video")
    shown = media.show_animation("GQAScene")
    after, _ = DisplayFormatter().format(shown)
    assert shown.rendered
    assert before == after
    assert set(after) == {"text/plain", "text/html", "image/png"}
    assert after["text/plain"] == repr(shown)


def test_show_animation_video_url_is_relative_to_the_notebooks():
    shown = media.show_animation("AttentionVectorScene")
    assert shown.video_url() == "../media/videos/AttentionVectorScene.mp4"
    assert shown.video == ROOT / "media" / "videos" / "AttentionVectorScene.mp4"


@pytest.mark.parametrize("bad", ["NoSuchScene", "kvcachescene", 4, None])
def test_show_animation_rejects_an_unknown_scene(bad):
    with pytest.raises(ValueError, match="scene_name"):
        media.show_animation(bad)


def test_media_reads_the_same_registry():
    assert list(media.registered_scenes()) == registry.scene_names()
    assert media.registered_scenes() == {name: chapter for chapter, _, name in registry.SCENES}
