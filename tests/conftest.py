"""Shared fixtures: every test that takes ``device`` runs on each device present (CPU always)."""

from __future__ import annotations

import pytest
import torch

from attnlab.devices import available_devices


def pytest_generate_tests(metafunc):
    if "device" in metafunc.fixturenames:
        devices = available_devices()
        metafunc.parametrize("device", devices, ids=[d.type for d in devices])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
