"""Cassandra's variable-length integers (``utils/vint/VIntCoding.java``).

The number of leading 1-bits of the first byte is the number of extra bytes
(0 to 8); the rest of the first byte and the extra bytes are the value,
big-endian. Signed vints are zigzag-encoded. The tables below turn the
first byte into its extra-byte count and value mask with one index each,
because these functions run for nearly every field of every cell.
"""

from __future__ import annotations

from pipeline_runtime.errors import DecodeError

#: Extra bytes that follow each possible first byte.
EXTRA_BYTES: tuple[int, ...] = tuple(8 - (~b & 0xFF).bit_length() if b >= 0x80 else 0 for b in range(256))
#: Bits of the first byte that belong to the value.
FIRST_MASK: tuple[int, ...] = tuple((0xFF >> (n + 1)) if n < 8 else 0 for n in EXTRA_BYTES)

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_U64 = 2**64
_I64_MAX = 2**63 - 1


def read_uvint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned vint at ``pos``; return (value, next position).

    Raises IndexError when ``buf`` ends inside the vint (callers translate it).
    """
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    extra = EXTRA_BYTES[first]
    end = pos + 1 + extra
    if end > len(buf):
        raise IndexError("vint runs past the end of the buffer")
    value = ((first & FIRST_MASK[first]) << (8 * extra)) | int.from_bytes(buf[pos + 1 : end], "big")
    return value, end


def read_vint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a signed (zigzag) vint at ``pos``; return (value, next position)."""
    raw, pos = read_uvint(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def as_int32(raw: int) -> int:
    """Java's ``checkedCast`` of an unsigned vint read as a long: the value as a signed int.

    Cassandra writes negative ints sign-extended to 64 bits (9 bytes), so the
    raw value is first read back as a signed long.
    """
    if raw > _I64_MAX:
        raw -= _U64
    if raw < _INT32_MIN or raw > _INT32_MAX:
        raise DecodeError(f"vint {raw} does not fit in a 32-bit int")
    return raw


def wrap_int64(value: int) -> int:
    """Java long overflow: the sum of a long delta and a long base, wrapped to 64 bits."""
    if value > _I64_MAX or value < -(2**63):
        value = ((value + 2**63) % _U64) - 2**63
    return value


def write_uvint(value: int) -> bytes:
    """Encode ``value`` (0 <= value < 2**64) as an unsigned vint (used by tests and tools)."""
    if value < 0 or value >= _U64:
        raise ValueError(f"{value} is not an unsigned 64-bit value")
    if value < 0x80:
        return bytes((value,))
    size = min(9, (value.bit_length() + 6) // 7)
    extra = size - 1
    if extra == 8:
        return b"\xff" + value.to_bytes(8, "big")
    data = value.to_bytes(size, "big")
    prefix = (0xFF << (8 - extra)) & 0xFF
    return bytes((data[0] | prefix,)) + data[1:]


def write_vint(value: int) -> bytes:
    """Encode a signed value with zigzag (used by tests and tools)."""
    return write_uvint(((value << 1) ^ (value >> 63)) & (_U64 - 1))
