from __future__ import annotations

from pathlib import Path

from pipeline_runtime.config.reference import main, render

REPO = Path(__file__).resolve().parents[3]


def test_reference_lists_every_model_with_camel_case_fields() -> None:
    text = render()
    for heading in ("## PipelineSpec", "## SinkSpec", "## MaskRule", "## CassandraSource"):
        assert heading in text
    assert "| `connectionSecret` | [SecretRef](#secretref) | required |" in text
    assert "`hash` \\| `redact` \\| `null` \\| `truncate` \\| `partial`" in text


def test_committed_reference_matches_the_model(tmp_path: Path) -> None:
    assert main(["x", "--check", str(REPO / "docs" / "configuration.md")]) == 0
    stale = tmp_path / "configuration.md"
    stale.write_text("old")
    assert main(["x", "--check", str(stale)]) == 1
