"""Chapter widgets, one module per idea; :mod:`attnlab.widgets` re-exports them all.

Every widget's callbacks only set widget values (HTML, Image, sliders); none prints.
"""
