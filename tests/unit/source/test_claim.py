"""One runtime per cdc_raw: the second is refused with the holder's name, a dead holder frees it at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline_runtime.source.claim import CLAIM_FILE, CdcRawClaim, CdcRawClaimedError
from pipeline_runtime.source.tailer import CdcRawSource
from tests.unit.source.fixture_data import copy_recording, registry


def test_a_second_claim_is_refused_naming_the_holder_and_free_once_released(tmp_path: Path) -> None:
    first = CdcRawClaim(tmp_path, "shop", "node-0")
    assert first.take() and first.held
    second = CdcRawClaim(tmp_path, "orders", "node-0")
    with pytest.raises(CdcRawClaimedError, match=r"another runtime \(pipeline shop, node node-0, pid \d+") as caught:
        second.take()
    assert not caught.value.retryable
    assert not second.held
    first.release()
    assert second.take()
    assert '"pipeline": "orders"' in (tmp_path / CLAIM_FILE).read_text()


def test_no_claim_before_cdc_raw_exists(tmp_path: Path) -> None:
    claim = CdcRawClaim(tmp_path / "cdc_raw", "shop", "node-0")
    assert not claim.take()
    (tmp_path / "cdc_raw").mkdir()
    assert claim.take()


def test_a_killed_holder_leaves_no_stale_claim(tmp_path: Path) -> None:
    script = (
        "import sys, time; from pathlib import Path; from pipeline_runtime.source.claim import CdcRawClaim; "
        "CdcRawClaim(Path(sys.argv[1]), 'shop', 'node-0').take(); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(CdcRawClaimedError, match=f"pid {holder.pid}"):
            CdcRawClaim(tmp_path, "shop", "node-0").take()
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 5
    claim = CdcRawClaim(tmp_path, "shop", "node-0")
    while True:
        try:
            assert claim.take()
            break
        except CdcRawClaimedError:
            assert time.monotonic() < deadline, "the claim of a killed process was not freed"
            time.sleep(0.05)


async def test_a_source_reads_nothing_from_a_cdc_raw_another_runtime_holds(tmp_path: Path) -> None:
    folder = copy_recording("v7", tmp_path / "cdc_raw")
    holder = CdcRawClaim(folder, "shop", "node-0")
    assert holder.take()
    source = CdcRawSource(folder, "n0", registry("v7"), claim=CdcRawClaim(folder, "orders", "node-0"))
    read = source.read(None)
    with pytest.raises(CdcRawClaimedError, match="pipeline shop"):
        await asyncio.wait_for(anext(read), 5)
    holder.release()
    source = CdcRawSource(folder, "n0", registry("v7"), claim=CdcRawClaim(folder, "orders", "node-0"))
    first = await asyncio.wait_for(anext(source.read(None)), 5)
    assert first.events, "the recording's first chunk has events"
    assert source.claim is not None and source.claim.held
