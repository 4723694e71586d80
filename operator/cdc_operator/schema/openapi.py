"""Turn a pydantic JSON Schema into a Kubernetes structural OpenAPI v3 schema.

The API server accepts only *structural* schemas for CRDs: every node has a
``type``, there are no ``$ref``s, ``anyOf`` may only restate constraints, and
``properties`` never sits beside ``additionalProperties``. Pydantic's JSON
Schema breaks each of these rules in ordinary ways (references to ``$defs``,
``anyOf [X, null]`` for optional fields, ``additionalProperties: false`` for
``extra="forbid"``). This module rewrites those patterns and nothing else, so
the CRD says exactly what the model says.

Defaults: scalar and empty-collection defaults are kept; a model-valued default
becomes ``{}``, because the API server then fills the nested fields from their
own defaults (a full default object would duplicate every nested default and
drift from it). ``null`` defaults are dropped: an absent field means the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

JSONSchema = dict[str, Any]

#: Called with a ``$defs`` name and the converted schema; returns it with extra keywords (CEL rules).
DefHook = Callable[[str, JSONSchema], JSONSchema]

#: JSON Schema keywords the API server's structural schemas accept and that we carry over.
_KEPT = (
    "type",
    "format",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
)


def structural(schema: Mapping[str, Any], on_def: DefHook | None = None) -> JSONSchema:
    """Inline and rewrite ``schema`` (a pydantic ``model_json_schema()``) into a structural schema."""
    defs: Mapping[str, Any] = schema.get("$defs", {})
    converted = _convert(schema, defs, on_def)
    return on_def(str(schema.get("title", "")), converted) if on_def else converted


def _convert(node: Mapping[str, Any], defs: Mapping[str, Any], on_def: DefHook | None) -> JSONSchema:
    ref = _ref_name(node)
    if ref is not None:
        return _referenced(ref, node, defs, on_def)
    if "anyOf" in node:
        return _optional(node, defs, on_def)
    out: JSONSchema = {}
    _describe(node, out)
    out.update({key: node[key] for key in _KEPT if key in node})
    _numeric_bounds(node, out)
    if "properties" in node:
        out["properties"] = {name: _convert(sub, defs, on_def) for name, sub in node["properties"].items()}
        out["type"] = "object"
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping) and "properties" not in node:
        out["additionalProperties"] = _convert(extra, defs, on_def)
        out["type"] = "object"
    elif extra is True or (node.get("type") == "object" and "properties" not in node and extra is None):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        out["items"] = _convert(node["items"], defs, on_def)
    _set_default(node, out)
    return out


def _describe(node: Mapping[str, Any], out: JSONSchema) -> None:
    """Copy a description as one line: docstrings wrap where the source does, ``kubectl explain`` wraps itself."""
    if "description" in node:
        out["description"] = " ".join(str(node["description"]).split())


def _ref_name(node: Mapping[str, Any]) -> str | None:
    """The ``$defs`` name a node points at, bare or as pydantic's one-item ``allOf``."""
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    all_of = node.get("allOf", [])
    if len(all_of) == 1 and "$ref" in all_of[0]:
        return str(all_of[0]["$ref"]).rsplit("/", 1)[-1]
    return None


def _referenced(name: str, node: Mapping[str, Any], defs: Mapping[str, Any], on_def: DefHook | None) -> JSONSchema:
    """Inline a definition; the field's own description says more about this use than the class docstring."""
    out = _convert(defs[name], defs, on_def)
    if on_def:
        out = on_def(name, out)
    _describe(node, out)
    _set_default(node, out)
    return out


def _optional(node: Mapping[str, Any], defs: Mapping[str, Any], on_def: DefHook | None) -> JSONSchema:
    """``anyOf [X, null]`` is how pydantic says ``X | None``: absent is the structural way to say null."""
    variants = [v for v in node["anyOf"] if v.get("type") != "null"]
    if len(variants) != 1:
        raise ValueError(f"only X | None unions can become a structural schema, got {node['anyOf']}")
    inner = {**variants[0], **{k: v for k, v in node.items() if k != "anyOf"}}
    return _convert(inner, defs, on_def)


def _numeric_bounds(node: Mapping[str, Any], out: JSONSchema) -> None:
    """JSON Schema 2020-12 exclusive bounds are numbers; OpenAPI 3.0 wants a number plus a flag."""
    if "exclusiveMinimum" in node:
        out["minimum"] = node["exclusiveMinimum"]
        out["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node:
        out["maximum"] = node["exclusiveMaximum"]
        out["exclusiveMaximum"] = True


def _set_default(node: Mapping[str, Any], out: JSONSchema) -> None:
    if "default" not in node or node["default"] is None:
        return
    default = node["default"]
    if isinstance(default, Mapping) and "properties" in out:
        # A model default: the API server fills the nested fields from their own defaults.
        default = {}
    out["default"] = default
