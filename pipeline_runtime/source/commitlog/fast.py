"""Choosing the mutation decoder: the compiled core (``headrace_native``) when it is built, else the reference.

The pure-Python ``MutationDecoder`` is about 7x short of the 100,000 mutations/s a
node's commitlog needs, so ``native/`` holds a Rust decoder (PyO3) that walks the
bytes and builds the very same ``ChangeEvent`` objects. It takes the reference's
plans as they are (table ids, column headers and uncommon value types are still
resolved by the Python plans) and raises the same exception types; the
equivalence tests hold it to that on every recorded segment and on mutated input.

``mutation_decoder`` returns the native decoder when the module imports and
accepts the event classes, and the reference otherwise (with one log line saying
why). ``HEADRACE_PURE_PYTHON=1`` forces the reference.
"""

from __future__ import annotations

import functools
import logging
import struct
import uuid
from typing import Any, Protocol

from pipeline_runtime.events import (
    Bound,
    Cell,
    ChangeEvent,
    CollectionChange,
    Deletion,
    ElementCell,
    Liveness,
    Op,
    SourcePosition,
)
from pipeline_runtime.native import native_module
from pipeline_runtime.source.commitlog import values
from pipeline_runtime.source.commitlog.mutation import DecodeStats, MutationDecoder, PlanLookup
from pipeline_runtime.source.errors import DecodeError, SchemaError

log = logging.getLogger(__name__)


class Decoder(Protocol):
    """What the tailer needs from a decoder (``MutationDecoder`` and the native one)."""

    @property
    def stats(self) -> DecodeStats: ...

    def decode(self, body: bytes, source: SourcePosition) -> list[ChangeEvent]: ...


#: The reference's direct value decoders, which the native core reproduces for their ordinary inputs.
_DIRECT_DECODERS: dict[str, values.ValueDecoder] = {
    "signed": values._signed,
    "text": values._text,
    "ascii": values._ascii,
    "boolean": values._boolean,
    "double": values._double,
    "float": values._float,
    "uuid": values._uuid,
    "blob": values._blob,
    "timestamp": values._timestamp,
}


def event_classes() -> dict[str, object]:
    """What the native core builds events from (it checks each class can be built without ``__init__``)."""
    return {
        "change_event": ChangeEvent,
        "cell": Cell,
        "element_cell": ElementCell,
        "collection_change": CollectionChange,
        "deletion": Deletion,
        "liveness": Liveness,
        "bound": Bound,
        "uuid": uuid.UUID,
        "safe_uuid_unknown": uuid.SafeUUID.unknown,
        "ops": (Op.UPSERT, Op.DELETE_ROW, Op.DELETE_PARTITION, Op.DELETE_RANGE),
    }


def direct_decoders() -> dict[values.ValueDecoder, str]:
    """Reference decoder function -> the name of the direct kind the native core decodes it as."""
    return {function: kind for kind, function in _DIRECT_DECODERS.items()}


def error_classes() -> dict[str, object]:
    """The reference's exception classes, and the Python errors of malformed bytes it turns into DecodeError."""
    return {
        "decode_error": DecodeError,
        "schema_error": SchemaError,
        "translated": (IndexError, ValueError, struct.error, OverflowError, UnicodeDecodeError),
    }


@functools.cache
def native_runtime() -> Any | None:
    """The native module's shared state, or None (logged once) when it cannot be used."""
    module = native_module()
    if module is None:
        return None
    try:
        return module.Runtime(event_classes(), error_classes(), direct_decoders())
    except (TypeError, KeyError, AttributeError) as exc:
        # The event classes changed in a way the compiled core does not know: stay correct, be slow.
        log.warning("headrace_native does not match the event classes (%s): decoding in pure Python", exc)
        return None


def native_available() -> bool:
    """Whether ``mutation_decoder`` returns the compiled decoder."""
    return native_runtime() is not None


def mutation_decoder(plans: PlanLookup, messaging_version: int, stats: DecodeStats | None = None) -> Decoder:
    """A decoder of mutation bodies of ``messaging_version``: native when available, else the reference."""
    runtime = native_runtime()
    if runtime is None:
        return MutationDecoder(plans, messaging_version, stats)
    module = native_module()
    assert module is not None  # native_runtime() is not None
    decoder: Decoder = module.MutationDecoder(plans, messaging_version, stats or DecodeStats(), runtime)
    return decoder
