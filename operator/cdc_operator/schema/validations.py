"""What the CRD checks at admission beyond the model's field types: CEL rules and size bounds.

Each entry mirrors a pydantic ``model_validator`` (so ``kubectl apply`` rejects
what the runtime would reject, with the same advice), or states something only
the operator needs (it must be able to find the Cassandra pods).

Rules guard optional fields with ``has()`` even where the schema defaults them:
the API server also checks each ``default`` against the rules, before nested
defaults are filled in (``transforms: {}`` has no ``masking`` yet).

The size bounds exist for CEL's cost budget: the API server refuses a rule whose
worst case over an unbounded list or string is too expensive, so every list and
string a rule walks gets a generous ``maxItems`` / ``maxLength``.
"""

from __future__ import annotations

from typing import Any

from cdc_operator.schema.openapi import JSONSchema

#: ``$defs`` name (the pydantic class) -> its CEL rules.
RULES: dict[str, list[dict[str, str]]] = {
    "PipelineSpec": [
        {
            "rule": "self.sinks.all(s, self.sinks.exists_one(t, t.name == s.name))",
            "message": "sink names must be unique: give every spec.sinks[] entry its own name",
            "fieldPath": ".sinks",
        },
        {
            "rule": "!has(self.transforms) || !has(self.transforms.masking) || "
            "self.transforms.masking.all(r, r.table.split('.')[0].matches('[*?]') || "
            "self.source.tables.exists(t, t.keyspace.matches('[*?]') || t.keyspace == r.table.split('.')[0]))",
            "message": "every transforms.masking[].table must name a keyspace selected by source.tables "
            "(a rule on an unselected table masks nothing)",
            "fieldPath": ".transforms.masking",
        },
    ],
    "SourceSpec": [
        {
            "rule": "self.tables.all(t, self.tables.exists_one(u, u.keyspace == t.keyspace && u.table == t.table))",
            "message": "source.tables lists a table more than once: keep one entry per keyspace and table",
            "fieldPath": ".tables",
        },
    ],
    "RuntimeSpec": [
        {
            "rule": "!has(self.env) || self.env.all(e, !e.name.startsWith('HEADRACE_'))",
            "message": "runtime.env: names starting HEADRACE_ are set by the operator; choose another name",
            "fieldPath": ".env",
        },
    ],
    "Resources": [
        {
            "rule": "(!has(self.requests) || self.requests.all(k, k in ['cpu', 'memory', 'ephemeral-storage'])) && "
            "(!has(self.limits) || self.limits.all(k, k in ['cpu', 'memory', 'ephemeral-storage']))",
            "message": "runtime.resources: requests and limits take cpu, memory and ephemeral-storage",
        },
    ],
    "CassandraSource": [
        {
            "rule": "!(has(self.podSelector) && has(self.workload))",
            "message": "set either podSelector or workload, not both",
        },
        {
            "rule": "has(self.podSelector) || has(self.workload)",
            "message": "set podSelector (the Cassandra pods' labels) or workload (their StatefulSet or "
            "CassandraDatacenter) so the operator can find the Cassandra pods",
        },
    ],
    "SinkSpec": [
        {
            "rule": "self.type == 'timescaledb' || !has(self.timescale)",
            "message": "timescale applies to sinks of type timescaledb only: remove it or change the type",
        },
        {
            "rule": "self.type != 'timescaledb' || (has(self.writeMode) && self.writeMode == 'append') || "
            "(has(self.timescale) && has(self.timescale.timeColumn))",
            "message": "a timescaledb sink needs timescale.timeColumn, the column that partitions the hypertable",
        },
        {
            "rule": "!has(self.writeMode) || self.writeMode != 'append' || !has(self.timescale) || "
            "!has(self.timescale.timeColumn)",
            "message": "with writeMode append the history hypertables are partitioned by each change's writetime: "
            "remove timescale.timeColumn",
        },
    ],
    "TransformSpec": [
        {
            "rule": "!has(self.masking) || !self.masking.exists(r, r.strategy == 'hash') || has(self.hashKeySecret)",
            "message": "masking strategy hash needs transforms.hashKeySecret, a Secret key holding the HMAC key",
        },
    ],
    "MaskRule": [
        {
            "rule": "!(self.strategy in ['truncate', 'partial']) || has(self.length)",
            "message": "masking strategies truncate and partial need length, the number of characters kept",
        },
    ],
}

#: (``$defs`` name, property) -> bounds added for CEL's cost estimate.
BOUNDS: dict[tuple[str, str], dict[str, int]] = {
    ("PipelineSpec", "sinks"): {"maxItems": 32},
    ("SourceSpec", "tables"): {"maxItems": 64},
    ("TransformSpec", "masking"): {"maxItems": 256},
    # Cassandra names have at most 48 characters; patterns a few more.
    ("TableSelector", "keyspace"): {"maxLength": 64},
    ("TableSelector", "table"): {"maxLength": 64},
    ("Resources", "requests"): {"maxProperties": 8},
    ("Resources", "limits"): {"maxProperties": 8},
    ("MaskRule", "table"): {"maxLength": 130},
}

#: (``$defs`` name, property) -> Kubernetes list semantics.
LIST_TYPES: dict[tuple[str, str], dict[str, Any]] = {
    ("PipelineStatus", "conditions"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
}


def annotate(name: str, schema: JSONSchema) -> JSONSchema:
    """The ``on_def`` hook of :func:`cdc_operator.schema.openapi.structural`."""
    if name in RULES:
        schema["x-kubernetes-validations"] = [dict(rule) for rule in RULES[name]]
    properties = schema.get("properties", {})
    for table in (BOUNDS, LIST_TYPES):
        for (owner, prop), extra in table.items():
            if owner == name and prop in properties:
                properties[prop].update(extra)
    return schema
