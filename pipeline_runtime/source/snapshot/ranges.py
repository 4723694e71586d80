"""The Murmur3 token ring cut into ranges a snapshot reads one at a time.

A range is ``(start, end]``, as Cassandra's own token ranges are. Murmur3
never gives a key the token ``-2**63`` (it maps that hash to ``2**63 - 1``),
so ``(MIN_TOKEN, MAX_TOKEN]`` is the whole ring.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

MIN_TOKEN = -(2**63)
MAX_TOKEN = 2**63 - 1


@dataclass(frozen=True, slots=True, order=True)
class TokenRange:
    """Tokens ``t`` with ``start < t <= end``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not MIN_TOKEN <= self.start < self.end <= MAX_TOKEN:
            raise ValueError(f"not a token range: ({self.start}, {self.end}]")

    def __str__(self) -> str:
        return f"({self.start}, {self.end}]"


def split_ring(count: int) -> tuple[TokenRange, ...]:
    """The whole ring in ``count`` contiguous ranges of (nearly) equal width."""
    if count < 1:
        raise ValueError(f"split the ring into at least one range, not {count}")
    width = MAX_TOKEN - MIN_TOKEN
    bounds = [MIN_TOKEN + width * i // count for i in range(count)] + [MAX_TOKEN]
    return tuple(TokenRange(a, b) for a, b in itertools.pairwise(bounds))


def primary_ranges(ring: list[tuple[int, bool]]) -> tuple[TokenRange, ...]:
    """The ranges a node is primary replica for, from the ring's (token, owned by this node) pairs.

    A token owns ``(previous token, token]``; the first token also owns the wrap-around, which
    becomes ``(last token, MAX_TOKEN]`` and ``(MIN_TOKEN, first token]``. An empty ring (no token
    metadata) means a single node: the whole ring.
    """
    if not ring:
        return (TokenRange(MIN_TOKEN, MAX_TOKEN),)
    ordered = sorted(ring)
    out: list[TokenRange] = []
    for index, (token, local) in enumerate(ordered):
        if not local:
            continue
        if index > 0:
            out.append(TokenRange(ordered[index - 1][0], token))
            continue
        last = ordered[-1][0]
        if last < MAX_TOKEN and len(ordered) > 1:
            out.append(TokenRange(last, MAX_TOKEN))
        elif len(ordered) == 1 and token < MAX_TOKEN:
            out.append(TokenRange(token, MAX_TOKEN))
        if token > MIN_TOKEN:
            out.append(TokenRange(MIN_TOKEN, token))
    return tuple(sorted(out))
