from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline_runtime.config.loader import load_pipeline, parse_pipeline
from pipeline_runtime.config.model import MaskStrategy, SinkType
from pipeline_runtime.errors import ConfigError

SPEC = {
    "source": {"cassandra": {"podSelector": {"app": "cassandra"}}, "tables": [{"keyspace": "shop", "table": "*"}]},
    "sinks": [{"name": "pg", "type": "postgres", "connectionSecret": {"name": "pg-conn", "key": "dsn"}}],
    "transforms": {
        "masking": [{"table": "shop.users", "column": "email", "strategy": "hash"}],
        "hashKeySecret": {"name": "mask", "key": "hmac"},
    },
}


def test_manifest_and_bare_spec_load_the_same_model(tmp_path: Path) -> None:
    manifest = {
        "apiVersion": "headrace.io/v1alpha1",
        "kind": "CDCPipeline",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": SPEC,
    }
    loaded = parse_pipeline(manifest)
    assert (loaded.name, loaded.namespace) == ("orders", "shop")
    assert loaded.spec.sinks[0].type is SinkType.POSTGRES
    assert loaded.spec.transforms.masking[0].strategy is MaskStrategy.HASH
    assert loaded.spec.sinks[0].batch_size == 10_000

    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    bare = load_pipeline(path)
    assert bare.name == "local"
    assert bare.spec == loaded.spec


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"sinks": []}, "spec.sinks: List should have at least 1 item"),
        ({"sinks": [SPEC["sinks"][0], SPEC["sinks"][0]]}, "sink names must be unique; repeated: pg"),
        (
            {"sinks": [{"name": "ts", "type": "timescaledb", "connectionSecret": {"name": "a", "key": "b"}}]},
            "type timescaledb needs timescale.timeColumn",
        ),
        (
            {"transforms": {"masking": [{"table": "a.b", "column": "c", "strategy": "hash"}]}},
            "masking strategy hash needs transforms.hashKeySecret",
        ),
        (
            {"sinks": [{"name": "Bad_Name", "type": "postgres", "connectionSecret": {"name": "a", "key": "b"}}]},
            "spec.sinks[0].name",
        ),
        ({"surprise": 1}, "spec.surprise: Extra inputs are not permitted"),
        ({"runtime": {"image": "UPPER CASE:tag"}}, "spec.runtime.image: String should match pattern"),
        ({"runtime": {"resources": {"requests": {"cpu": "lots"}}}}, "spec.runtime.resources.requests.cpu"),
        ({"runtime": {"resources": {"limits": {"gpu": "1"}}}}, "gpu is not one of cpu, memory, ephemeral-storage"),
        ({"runtime": {"env": [{"name": "HEADRACE_NODE", "value": "x"}]}}, "names starting HEADRACE_ are set by"),
        ({"runtime": {"deadLetters": {"maxSize": "lots"}}}, "spec.runtime.deadLetters.maxSize: String should match"),
        ({"runtime": {"deadLetters": {"maxSize": "1e9"}}}, "spec.runtime.deadLetters.maxSize: String should match"),
        ({"runtime": {"deadLetters": {"maxSize": "512Ki"}}}, "runtime.deadLetters.maxSize 512Ki is less than 1Mi"),
        (
            {"runtime": {"deadLetters": {"volumeClaim": {"size": "1e99999"}}}},
            "runtime.deadLetters.volumeClaim.size: '1e99999' is out of range",
        ),
        (
            {"runtime": {"deadLetters": {"maxSize": "2Gi", "volumeClaim": {"size": "1Gi"}}}},
            "runtime.deadLetters.maxSize 2Gi is more than its volumeClaim.size 1Gi",
        ),
        (
            {"sinks": [{**SPEC["sinks"][0], "timescale": {"timeColumn": "at"}}]},
            "timescale applies to type timescaledb only",
        ),
        (
            {
                "sinks": [
                    {
                        **SPEC["sinks"][0],
                        "type": "timescaledb",
                        "writeMode": "append",
                        "timescale": {"timeColumn": "at"},
                    }
                ]
            },
            "with writeMode append the history hypertables are partitioned by each change's writetime",
        ),
        (
            {"sinks": [{**SPEC["sinks"][0], "tableMapping": {"users": "people"}}]},
            "tableMapping key 'users' is not 'keyspace.table'",
        ),
        (
            {"sinks": [{**SPEC["sinks"][0], "tableMapping": {"shop.*": "everything"}}]},
            "tableMapping key 'shop.*' is not 'keyspace.table' (no wildcards)",
        ),
        (
            {"sinks": [{**SPEC["sinks"][0], "tableMapping": {"shop.users": "t", "shop.orders": "t"}}]},
            "tableMapping maps several tables onto shop.t",
        ),
        (
            {"sinks": [{**SPEC["sinks"][0], "tableMapping": {"shop.users": " "}}]},
            "tableMapping maps shop.users to an empty name",
        ),
        (
            {"sinks": [{**SPEC["sinks"][0], "tableMapping": {"other.users": "people"}}]},
            "tableMapping names other.users, a table this sink does not receive",
        ),
        (
            {
                "sinks": [
                    {
                        **SPEC["sinks"][0],
                        "tables": [{"keyspace": "shop", "table": "orders"}],
                        "tableMapping": {"shop.users": "people"},
                    }
                ]
            },
            "tableMapping names shop.users, a table this sink does not receive",
        ),
    ],
)
def test_invalid_specs_say_what_to_fix(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_pipeline({**SPEC, **patch}, default_name="p")
    assert message in str(caught.value)


def test_unreadable_or_broken_files_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read pipeline config"):
        load_pipeline(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("source: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_pipeline(scalar)
