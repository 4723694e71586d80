"""Generate the configuration reference (``docs/configuration.md``) from the typed model.

``python -m pipeline_runtime.config.reference`` prints it; ``--check PATH``
exits 1 when the file differs, so the docs cannot drift from the model.
"""

from __future__ import annotations

import sys
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pipeline_runtime.config.model import PipelineSpec

HEADER = """# Configuration reference

Generated from `pipeline_runtime/config/model.py` by `python -m pipeline_runtime.config.reference`;
do not edit by hand. The same model is the `spec` of a `CDCPipeline` resource and the body of a
standalone runtime's YAML file (either the whole manifest or just the spec). Names are camelCase.
Secrets are never values here: a `SecretRef` (`name`, `key`) names a Kubernetes Secret key, which
the runtime reads from `/etc/headrace/secrets/<name>/<key>` (or `--secrets-dir`), or from the
environment variable `HEADRACE_SECRET_<NAME>_<KEY>`.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(names) + (" (optional)" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[0])} to {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default if info.default is not PydanticUndefined else None
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, BaseModel):
        return "see type"
    return f"`{value!r}`" if value not in (None, [], {}) else "—"


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for info in model.model_fields.values():
            for candidate in _walk(info.annotation):
                visit(candidate)

    visit(root)
    return seen


def _walk(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_walk(arg))
    return found


def render() -> str:
    """The whole reference as Markdown."""
    parts = [HEADER]
    for model in _models(PipelineSpec):
        parts.append(f"\n## {model.__name__}\n")
        if model.__doc__:
            parts.append(model.__doc__.strip().split("\n\n")[0].replace("\n", " ") + "\n")
        parts.append("\n| field | type | default | description |\n|---|---|---|---|")
        for name, info in model.model_fields.items():
            alias = info.alias or name
            doc = (info.description or "").replace("\n", " ")
            parts.append(f"| `{alias}` | {_type_name(info.annotation)} | {_default(info)} | {doc} |")
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if len(argv) > 2 and argv[1] == "--check":
        path = Path(argv[2])
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of date: run 'make docs'", file=sys.stderr)
            return 1
        return 0
    if len(argv) > 2 and argv[1] == "--write":
        Path(argv[2]).write_text(text)
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
