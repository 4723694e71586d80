"""One rule for tests that need something the machine may lack.

Outside CI a missing tool, module or binary skips the test with a reason that
names it and says how to get it; under CI (``CI=true``) the same condition
fails the test, because CI installs and builds everything the suite needs
(``.ci/run``, ``make deps``) and a skip there would hide a broken set-up.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it under CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: everything the suite needs must be installed and built first)", pytrace=False)
    pytest.skip(reason)


def require_tool(tool: str, why: str) -> str:
    """The path of ``tool`` on PATH, after skipping (failing under CI) when it is missing."""
    found = shutil.which(tool)
    if found is None:
        unavailable(f"{tool} is not installed: {why}")
    return found


def require_binary(path: Path, how: str) -> Path:
    """``path`` when it is an executable file, else skip (fail under CI) naming it and ``how`` to build it."""
    if not os.access(path, os.X_OK):
        unavailable(f"{path.name} is not built in {path.parent}: {how}")
    return path


def require_module(name: str, why: str) -> ModuleType:
    """The imported module ``name``, after skipping (failing under CI) when it cannot be imported."""
    try:
        return importlib.import_module(name)
    except ImportError:
        unavailable(f"the Python module {name} is not installed: {why}")
