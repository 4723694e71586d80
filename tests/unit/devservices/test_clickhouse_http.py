"""The ClickHouse front's request rules: where a statement ends and data begins, and per-query settings."""

from __future__ import annotations

import gzip
from typing import Any

import lz4.frame
import pytest
from urllib3 import encode_multipart_formdata

from devservices.clickhouse_http import (
    QueryError,
    Request,
    Session,
    apply_settings,
    compress,
    decompress,
    form_fields,
    split_query,
)


def test_the_query_parameter_and_the_body_make_one_statement_unless_the_body_is_insert_data() -> None:
    assert split_query(Request({"query": "SELECT"}, b"1")) == ("SELECT\n1", None)
    assert split_query(Request({}, b"SELECT 1 FORMAT JSON")) == ("SELECT 1 FORMAT JSON", None)
    insert = "INSERT INTO t (`a`) FORMAT Native"
    assert split_query(Request({"query": insert}, b"\x00\x01")) == (insert, b"\x00\x01")
    # clickhouse-connect puts short inserts in the body: the statement, a newline, the data.
    assert split_query(Request({}, insert.encode() + b"\n\x00\nFORMAT x\n")) == (insert, b"\x00\nFORMAT x\n")
    assert split_query(Request({}, b"INSERT INTO t VALUES (1)")) == ("INSERT INTO t VALUES (1)", None)


def test_transport_parameters_settings_and_query_parameters_are_told_apart() -> None:
    request = Request({"query": "q", "session_id": "s", "param_x": "1", "insert_deduplication_token": "t"}, b"")
    assert request.settings == {"insert_deduplication_token": "t"}
    assert request.query_parameters == {"x": "1"}


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "lz4"])
def test_bodies_round_trip_through_each_encoding(encoding: str) -> None:
    body = b"Native block " * 100
    packed, used = compress(body, f"zstd, {encoding}")
    assert used == encoding and packed != body
    assert decompress(packed, encoding) == body
    assert decompress(gzip.compress(body), "gzip") == decompress(lz4.frame.compress(body), "lz4") == body


def test_an_encoding_it_cannot_read_is_an_error_and_one_it_cannot_make_is_plain() -> None:
    with pytest.raises(QueryError, match="Unknown Content-Encoding"):
        decompress(b"x", "br")
    assert compress(b"x", "br, zstd") == (b"x", None)


class _Connection:
    """Records statements; getSetting answers with the session's own value."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def query(self, sql: str, fmt: str = "CSV", params: Any = None) -> Any:
        self.sent.append(sql)
        return type("Result", (), {"bytes": lambda self: b"own\n"})()


def test_a_setting_holds_for_its_query_and_costs_nothing_when_repeated() -> None:
    conn = _Connection()
    session = Session(conn)
    apply_settings(session, {"a": "1"})
    assert conn.sent == ["SELECT toString(getSetting('a'))", "SET a = '1'"]
    conn.sent.clear()
    apply_settings(session, {"a": "1"})  # a client sends its settings with every request
    assert conn.sent == []
    apply_settings(session, {"b": "2"})  # a's request is over: the session's own value comes back
    assert conn.sent == ["SET a = 'own'", "SELECT toString(getSetting('b'))", "SET b = '2'"]


def test_a_form_request_carries_the_query_and_its_long_parameters() -> None:
    # clickhouse-connect sends bind parameters over 4 KiB as form fields (found by the e2e suite:
    # a runtime's first query on a new Cassandra pod).
    long_value = "x" * 10_000
    body, content_type = encode_multipart_formdata({"query": "SELECT {v:String}", "param_v": long_value})
    assert form_fields(body, content_type) == {"query": "SELECT {v:String}", "param_v": long_value}


def test_a_form_request_with_a_file_is_external_data_and_refused() -> None:
    body, content_type = encode_multipart_formdata({"query": "SELECT 1", "t": ("t.tsv", b"1\n", "text/plain")})
    with pytest.raises(QueryError, match="external data"):
        form_fields(body, content_type)
