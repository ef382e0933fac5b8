"""The lock: requirements.txt pins every package the course installs, transitive ones included, and the
environment the tests run in is exactly that lock (a machine that installed earlier and kept an older
version fails here instead of passing with what a fresh clone would not get).

requirements.in holds the direct dependencies with their allowed ranges; ``./course lock`` resolves it
into requirements.txt. environment.yml installs the same lock.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from attnlab import huggingface

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.txt"
DIRECT = ROOT / "requirements.in"
# Not installed by the course: the venv brings pip; attnlab is the course's own package (pip install -e .).
NOT_LOCKED = {"pip", "attnlab"}


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def _lock() -> dict[str, Version]:
    pins = {}
    for req in _requirements(LOCK):
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{req} in requirements.txt is not pinned with =="
        pins[canonicalize_name(req.name)] = Version(specs[0].version)
    return pins


def _public(version: Version) -> Version:
    return Version(version.public)  # a local CPU build of torch reports 2.13.0+cpu


def test_every_line_of_the_lock_is_a_pin():
    pins = _lock()
    assert len(pins) > 100  # the direct dependencies and everything they pull in
    assert pins["torch"] == Version("2.13.0") and not pins["torch"].local


def test_the_lock_satisfies_the_direct_dependencies():
    pins = _lock()
    for req in _requirements(DIRECT):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (requirements.in) is missing from the lock: run ./course lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"the lock pins {req.name}=={pins[name]}, outside {req.specifier} asked for in requirements.in: "
            "run ./course lock")


def test_installed_environment_is_the_lock():
    """Every installed distribution is in the lock at its pinned version, and every pin is installed."""
    pins = _lock()
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    drift = [f"{name} {installed[name]} installed, {pins[name]} locked" for name in sorted(pins)
             if name in installed and _public(installed[name]) != pins[name]]
    missing = sorted(set(pins) - set(installed))
    extra = sorted(set(installed) - set(pins) - NOT_LOCKED)
    assert not drift, "installed versions differ from requirements.txt (./course setup reinstalls):\n" + \
        "\n".join(drift)
    assert not missing, f"locked but not installed: {missing}"
    assert not extra, f"installed but not in the lock (installed by hand? add it to requirements.in): {extra}"


def test_environment_yml_installs_the_lock():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*-r requirements\.txt\s*$", text, re.M), "environment.yml must pip-install the lock"
    pins = _lock()
    # conda-forge builds pycairo and manimpango (no compiler needed); they must be the locked versions, or
    # pip would rebuild them from source to match the lock
    for name in ("pycairo", "manimpango"):
        conda = re.search(rf"^\s*-\s*{name}\s*=\s*([\w.]+)\s*(#.*)?$", text, re.M)
        assert conda, f"environment.yml must pin {name} (conda-forge) to the locked version"
        assert Version(conda.group(1)) == pins[name], f"environment.yml pins {name}={conda.group(1)}, lock {pins[name]}"


def test_supported_transformers_range_is_stated_once():
    """attnlab.huggingface states the range its bridges handle; requirements.in asks for the same one."""
    (req,) = [r for r in _requirements(DIRECT) if canonicalize_name(r.name) == "transformers"]
    assert str(req.specifier) == str(Requirement(f"transformers{huggingface.SUPPORTED_TRANSFORMERS}").specifier)
    version = huggingface.transformers_version()
    if version is None:
        pytest.skip("transformers is not installed")
    assert req.specifier.contains(version)
