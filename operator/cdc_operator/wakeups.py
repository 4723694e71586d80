"""Which pipelines a change in the cluster concerns, and the signal that wakes their reconcile loop.

The operator watches Pods, runtime Deployments and runtime ConfigMaps (see
``handlers/watch.py``). Each watched change is mapped here to the pipelines it
concerns, and each of those pipelines' loops is woken to run a pass now rather
than at its next periodic pass:

- an object carrying the ``headrace.io/pipeline`` label (a runtime Deployment,
  Pod or ConfigMap) concerns that pipeline;
- any other Pod concerns the pipelines of its namespace whose Cassandra pod
  selector, as their last pass resolved it, matches the Pod's labels.

Pure bookkeeping on one event loop: no API calls, nothing to lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from cdc_operator import naming

#: (namespace, pipeline name)
Key = tuple[str, str]


@dataclass(frozen=True)
class Interest:
    """What a pipeline's last pass found it depends on."""

    cassandra_selector: Mapping[str, str] | None = None
    """The labels of its Cassandra pods; None until a pass has resolved them (or when it could not)."""
    waiting_on_unwatched: bool = False
    """Blocked on something no watch reports (a missing Secret or workload): check again soon."""


class Wakeups:
    """One per operator: the pipelines whose loops run, what each depends on, and their wake signals."""

    def __init__(self) -> None:
        self._signals: dict[Key, asyncio.Event] = {}
        self._interests: dict[Key, Interest] = {}

    def enrol(self, key: Key) -> asyncio.Event:
        """The wake signal of ``key``'s loop (the same one for as long as the loop runs)."""
        return self._signals.setdefault(key, asyncio.Event())

    def leave(self, key: Key) -> None:
        self._signals.pop(key, None)
        self._interests.pop(key, None)

    def note(self, key: Key, interest: Interest) -> None:
        """Also before the loop enrols (a new pipeline's first pass comes from its create handler): the
        signal exists from then on, so a change between that pass and the loop's start is not lost."""
        self._signals.setdefault(key, asyncio.Event())
        self._interests[key] = interest

    def interest(self, key: Key) -> Interest:
        return self._interests.get(key, Interest())

    def concerned(self, namespace: str, labels: Mapping[str, str], *, pod: bool) -> list[Key]:
        """The enrolled pipelines a change of an object in ``namespace`` with ``labels`` concerns."""
        owner = labels.get(naming.LABEL_PIPELINE)
        if owner is not None:
            # The label holds the name fitted to 63 characters: compare fitted names.
            return [key for key in self._signals if key[0] == namespace and naming.fit(key[1]) == owner]
        if not pod:
            return []
        return [
            key
            for key in self._signals
            if key[0] == namespace
            and (selector := self.interest(key).cassandra_selector)
            and all(labels.get(label) == value for label, value in selector.items())
        ]

    def in_namespace(self, namespace: str) -> list[Key]:
        """Every enrolled pipeline of ``namespace`` (another pipeline there was deleted: pods it held are free)."""
        return [key for key in self._signals if key[0] == namespace]

    def wake(self, keys: list[Key]) -> None:
        for key in keys:
            signal = self._signals.get(key)
            if signal is not None:
                signal.set()
