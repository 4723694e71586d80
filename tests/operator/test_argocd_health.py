"""The Argo CD health check (Lua) against its upstream-style health_test.yaml, run with lupa."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from devservices.pytest_require import require_module

lupa = require_module("lupa", "it runs the Lua health check (`make dev` installs it)")

HEALTH = Path(__file__).resolve().parents[2] / "argocd" / "headrace.io" / "CDCPipeline"
CASES = yaml.safe_load((HEALTH / "health_test.yaml").read_text())["tests"]


def to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> dict[str, str]:
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = to_lua(runtime, obj)
    result = runtime.execute((HEALTH / "health.lua").read_text())
    return {"status": result["status"], "message": result["message"]}


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((HEALTH / case["inputPath"]).read_text())
    assert health(obj) == case["healthStatus"]


def test_every_phase_is_covered() -> None:
    statuses = {c["healthStatus"]["status"] for c in CASES}
    assert statuses == {"Healthy", "Progressing", "Degraded", "Suspended"}
