"""The course's Manim animations, one scene per chapter (see :mod:`animations.scenes` for the list).

Render them with ``python scripts/render_animations.py``; a notebook shows one with
``attnlab.media.show_animation("KVCacheScene")``.
"""
