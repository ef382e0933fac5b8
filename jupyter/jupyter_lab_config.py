"""JupyterLab as `./course lab` opens it: the course's view of the folder, its settings and its workspace.

Loaded with ``jupyter lab --config jupyter/jupyter_lab_config.py`` from the course folder (``./course lab``
does this); paths are relative to that folder.
"""

# The file browser lists each chapter once: NN_topic.ipynb. Its jupytext source NN_topic.py (the file
# authors edit, which JupyterLab would also open as a notebook) stays on disk and in git, hidden here;
# the worked solutions (notebooks/solutions/chNN.py) stay visible. The first five are Jupyter's defaults.
c.ContentsManager.hide_globs = ["__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*~", "[0-9][0-9]_*.py"]  # noqa: F821

# Settings the course changes (jupyter/settings/overrides.json): no "Jupyter news?" pop-up on the first visit.
c.LabApp.app_settings_dir = "jupyter/settings"  # noqa: F821

# The course's workspace (jupyter/workspace.json: file browser in notebooks/, the table of contents open on
# the chapter's sections) is imported by ./course lab into the git-ignored .jupyter_runtime/workspaces.
