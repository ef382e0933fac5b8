"""Chapter widgets, one module per idea (``attention``, ``kv_cache``, ``gqa``, ``mla``, ...).

The KV-cache calculator that several chapters share lives in :mod:`attnlab.widgets`. Each module here
keeps what a widget displays in pure functions (testable without a browser) and wires them to
ipywidgets; every callback only sets widget values (HTML, Image, sliders) and never prints.
"""
