"""ClickHouse's HTTP interface over the real engine (chdb), for the sink's network path.

No ClickHouse server recent enough for clickhouse-connect is packaged in the
registries this project reaches. chdb is the ClickHouse engine itself, but
clickhouse-connect's ``chdb://`` client skips everything between a client and a
server: HTTP, sessions, settings as URL parameters, compression, error
statuses. This front serves that interface from chdb in its own process (chdb
holds one data path per process), so the ClickHouse sink runs over
``http(s)://`` exactly as a user runs it against a server.

What it serves (ClickHouse's HTTP protocol, as clickhouse-connect uses it):

- ``GET``/``POST /`` with the query in the ``query`` parameter, the body, or
  both (the body is appended; for ``INSERT ... FORMAT f`` the body is the data,
  ingested by the engine in that format); ``GET /ping``;
- ``database``, ``session_id`` (each session its own engine connection, so its
  ``SET``s and temporary tables are its own, as on a server),
  ``session_timeout``, ``session_check``, ``query_id``, ``default_format``,
  ``param_<name>`` query parameters; every other parameter is a query setting
  (``insert_deduplication_token`` included), applied to that query only;
- user and password (``X-ClickHouse-User``/``X-ClickHouse-Key`` or basic
  authentication), checked against the front's one user;
- request bodies compressed with gzip, deflate or lz4 (``Content-Encoding``),
  responses compressed when ``enable_http_compression=1`` and the client
  accepts gzip, deflate or lz4;
- errors as ClickHouse sends them: the exception text (``Code: N.
  DB::Exception: ...``) with its code in ``X-ClickHouse-Exception-Code`` and a
  4xx/5xx status; ``X-ClickHouse-Summary``, ``-Query-Id``, ``-Format`` and
  ``-Timezone`` headers on success;
- optional TLS, with client certificates required and verified when a CA is given.

The query and its ``param_*`` values also come as ``multipart/form-data``
fields (clickhouse-connect sends long parameters so).

What it does not do (docs/sinks.md lists it): external data (multipart files), the
native-protocol compression of ``compress``/``decompress=1``, progress
headers, concurrent use of one session (it serializes them where a server
answers ``SESSION_IS_LOCKED``), and streaming (each answer is whole).

Run as ``python -m devservices.clickhouse_http --path DIR --port N``;
``running_clickhouse_http`` starts one for the duration of a block.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import email.parser
import email.policy
import gzip
import http.server
import json
import os
import re
import secrets
import ssl
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devservices.process import ManagedProcess, free_port

#: Parameters of the HTTP interface itself; every other parameter is a setting of the query.
TRANSPORT = frozenset(
    {
        "query",
        "database",
        "session_id",
        "session_timeout",
        "session_check",
        "query_id",
        "default_format",
        "user",
        "password",
        "quota_key",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "enable_http_compression",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "compress",
        "decompress",
        "role",
    }
)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\b", re.IGNORECASE)
_EMBEDDED_INSERT = re.compile(rb"(\s*INSERT\s+INTO\b.*?\bFORMAT\s+\w+)[ \t]*\r?\n", re.IGNORECASE | re.DOTALL)
_SET = re.compile(r"^\s*SET\s", re.IGNORECASE)
_SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CODE = re.compile(r"Code: (\d+)\.")
#: HTTP status of an exception code, as ClickHouse's server maps the common ones.
_STATUS = {
    62: 400,  # SYNTAX_ERROR
    47: 404,  # UNKNOWN_IDENTIFIER
    60: 404,  # UNKNOWN_TABLE
    81: 404,  # UNKNOWN_DATABASE
    115: 400,  # UNKNOWN_SETTING
    192: 403,  # UNKNOWN_USER
    193: 403,  # WRONG_PASSWORD
    516: 403,  # AUTHENTICATION_FAILED
    372: 404,  # SESSION_NOT_FOUND
}
ENGINE_ERROR = 1001  # STD_EXCEPTION: what the engine raised without a code


class QueryError(Exception):
    """An exception to answer with ClickHouse's text and code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def from_engine(cls, exc: BaseException) -> QueryError:
        text = str(exc)
        start = text.find("Code: ")
        message = text[start:].strip() if start >= 0 else f"Code: {ENGINE_ERROR}. DB::Exception: {text.strip()}"
        match = _CODE.search(message)
        return cls(int(match.group(1)) if match else ENGINE_ERROR, message)

    def body(self) -> bytes:
        text = str(self)
        if not text.startswith("Code: "):
            text = f"Code: {self.code}. DB::Exception: {text}"
        return (text + "\n").encode()


@dataclass
class Session:
    """One engine connection and its lock: a client's ``session_id``, or one request."""

    connection: Any
    timeout: float = 60.0
    #: Settings a request set on the connection, by name: (value now, the session's own value before).
    applied: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Engine:
    """The chdb engine of this process and its sessions."""

    path: Path
    user: str = "default"
    password: str = ""
    sessions: dict[str, Session] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._connect().close()  # the one engine path of this process, opened now

    def _connect(self) -> Any:
        import chdb  # noqa: PLC0415

        return chdb.connect(str(self.path))  # type: ignore[no-untyped-call]

    def session(self, session_id: str | None, timeout: float, check: bool) -> tuple[Session, bool]:
        """The named session (created unless ``check``), or a fresh one for this request (True: close it)."""
        if not session_id:
            return Session(self._connect()), True
        with self.guard:
            self._expire()
            found = self.sessions.get(session_id)
            if found is None:
                if check:
                    raise QueryError(372, f"Session {session_id} not found")
                found = self.sessions[session_id] = Session(self._connect(), timeout)
            found.timeout, found.used = timeout, time.monotonic()
            return found, False

    def _expire(self) -> None:
        now = time.monotonic()
        for name, session in list(self.sessions.items()):
            if now - session.used > session.timeout and not session.lock.locked():
                del self.sessions[name]
                session.connection.close()

    def authenticate(self, user: str, password: str) -> None:
        if user != self.user or not secrets.compare_digest(password, self.password):
            raise QueryError(
                516, f"{user}: Authentication failed: password is incorrect, or there is no user with such name."
            )


@dataclass
class Request:
    """One HTTP request, reduced to what the engine runs."""

    params: dict[str, str]
    body: bytes

    @property
    def settings(self) -> dict[str, str]:
        return {k: v for k, v in self.params.items() if k not in TRANSPORT and not k.startswith("param_")}

    @property
    def query_parameters(self) -> dict[str, str]:
        return {k.removeprefix("param_"): v for k, v in self.params.items() if k.startswith("param_")}


def decompress(body: bytes, encoding: str) -> bytes:
    """A request body as sent with ``Content-Encoding``."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame  # noqa: PLC0415

        return bytes(lz4.frame.decompress(body))
    raise QueryError(
        ENGINE_ERROR, f"Unknown Content-Encoding of HTTP request: {encoding} (this front decodes gzip, deflate, lz4)"
    )


def compress(body: bytes, accepted: str) -> tuple[bytes, str | None]:
    """A response body in the first encoding the client accepts that the front can make."""
    for encoding in (e.split(";")[0].strip().lower() for e in accepted.split(",")):
        if encoding == "lz4":
            import lz4.frame  # noqa: PLC0415

            return bytes(lz4.frame.compress(body)), "lz4"
        if encoding == "gzip":
            return gzip.compress(body, 1), "gzip"
        if encoding == "deflate":
            return zlib.compress(body, 1), "deflate"
    return body, None


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The fields of a ``multipart/form-data`` request: the query and ``param_*`` values.

    A part carrying a file is external data (a temporary table), which this
    front does not serve: refused with the engine's error, as before.
    """
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields = {}
    for part in message.iter_parts():
        if part.get_filename() is not None:
            raise QueryError(ENGINE_ERROR, "this front does not take external data (multipart files)")
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            raise QueryError(ENGINE_ERROR, "a multipart form field without a name or a value")
        fields[name] = payload.decode()
    return fields


def split_query(request: Request) -> tuple[str, bytes | None]:
    """The statement to run and, for an ``INSERT ... FORMAT`` with a body, the data it inserts."""
    query = request.params.get("query")
    if query is None:
        # ``INSERT ... FORMAT f`` then a newline and the data, all in the body.
        embedded = _EMBEDDED_INSERT.match(request.body)
        if embedded is not None:
            return embedded.group(1).decode(), request.body[embedded.end() :]
        return request.body.decode(), None
    if request.body and _INSERT.match(query) and _TRAILING_FORMAT.search(query):
        return query, request.body
    return (query + "\n" + request.body.decode()) if request.body else query, None


def run(engine: Engine, session: Session, request: Request, workdir: Path) -> tuple[bytes, str, dict[str, int]]:
    """Run one request on its session: the answer, its format and the summary."""
    statement, data = split_query(request)
    settings = request.settings
    for name in settings:
        if not _SETTING.match(name):
            raise QueryError(115, f"Setting {name!r} is not a valid setting name")
    fmt = request.params.get("default_format", "TabSeparated")
    match = _TRAILING_FORMAT.search(statement)
    if match and data is None:
        fmt, statement = match.group(1), statement[: match.start()]
    infile = None
    if data is not None:
        assert match is not None
        with tempfile.NamedTemporaryFile(dir=workdir, suffix=".data", delete=False) as handle:
            handle.write(data)
            infile = Path(handle.name)
        head = statement[: match.start()].rstrip()
        statement = f"{head} FROM INFILE '{infile}' FORMAT {match.group(1)}"
    conn = session.connection
    try:
        database = request.params.get("database")
        if database:
            _execute(conn, f"USE `{database.replace('`', '``')}`")
        apply_settings(session, settings)
        result = _execute(conn, statement, fmt, request.query_parameters or None)
        if _SET.match(statement):
            session.applied.clear()  # the session's own values now: nothing of a request's to take back
    finally:
        if infile is not None:
            infile.unlink(missing_ok=True)
    summary = {
        "read_rows": int(result.rows_read()),
        "read_bytes": int(result.bytes_read()),
        "written_rows": int(result.rows_written()) if hasattr(result, "rows_written") else 0,
        "written_bytes": int(result.bytes_written()) if hasattr(result, "bytes_written") else 0,
    }
    return bytes(result.bytes() or b""), fmt, summary


def apply_settings(session: Session, settings: dict[str, str]) -> None:
    """Give the connection this request's settings and take back the previous request's others.

    A setting holds for one query; a session's own ``SET`` holds for the session. Rather than set
    and restore around every query, the connection keeps what the last request set: a following
    request with the same settings (a client sends its settings with each one) costs nothing.
    """
    conn = session.connection
    for name in [n for n in session.applied if n not in settings]:
        _, own = session.applied.pop(name)
        if own is not None:
            _execute(conn, f"SET {name} = {_literal(own)}")
    for name, value in settings.items():
        now = session.applied.get(name)
        if now is not None and now[0] == value:
            continue
        own = now[1] if now is not None else _current(conn, name)
        _execute(conn, f"SET {name} = {_literal(value)}")
        session.applied[name] = (value, own)


def _execute(conn: Any, sql: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None) -> Any:
    try:
        return conn.query(sql, fmt, params=params) if params else conn.query(sql, fmt)
    except Exception as exc:
        raise QueryError.from_engine(exc) from exc


def _current(conn: Any, name: str) -> str | None:
    """The session's value of a setting, to restore after a query that set it (None: not a setting)."""
    try:
        result = conn.query(f"SELECT toString(getSetting('{name}'))", "TabSeparatedRaw")
    except Exception:  # an unknown setting: SET will say so
        return None
    return bytes(result.bytes()).decode().rstrip("\n")


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers ClickHouse's HTTP interface from the process's engine."""

    engine: Engine
    workdir: Path
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no delayed-ACK stall
    server_version = "ClickHouse-front-chdb"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path.rstrip("/") in ("/ping", ""):
            params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            if url.path.rstrip("/") == "/ping" or ("query" not in params and self.command == "GET"):
                self._answer(200, b"Ok.\n", {})
                return
        else:
            self._answer(404, b"There is no handle " + url.path.encode() + b"\n", {})
            return
        raw = self._body()
        query_id = params.get("query_id") or str(time.time_ns())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": "UTC"}
        try:
            content_type = self.headers.get("Content-Type") or ""
            if "multipart/form-data" in content_type:
                # The query and its parameters as form fields (clickhouse-connect sends long ones so).
                params = {**params, **form_fields(raw, content_type)}
                raw = b""
            user, password = self._credentials(params)
            self.engine.authenticate(user, password)
            body = decompress(raw, self.headers.get("Content-Encoding") or "")
            request = Request(params, body)
            session, once = self.engine.session(
                params.get("session_id"),
                float(params.get("session_timeout") or 60),
                params.get("session_check") == "1",
            )
            try:
                with session.lock:
                    answer, fmt, summary = run(self.engine, session, request, self.workdir)
            finally:
                if once:
                    session.connection.close()
        except Exception as exc:  # the front's own failure: answered as the engine's, logged whole
            error = exc if isinstance(exc, QueryError) else QueryError(ENGINE_ERROR, f"{type(exc).__name__}: {exc}")
            if not isinstance(exc, QueryError):
                traceback.print_exc()
            headers["X-ClickHouse-Exception-Code"] = str(error.code)
            self._answer(_STATUS.get(error.code, 500), error.body(), headers)
            return
        headers["X-ClickHouse-Format"] = fmt
        headers["X-ClickHouse-Summary"] = json.dumps({k: str(v) for k, v in summary.items()})
        if params.get("enable_http_compression") == "1":
            answer, encoding = compress(answer, self.headers.get("Accept-Encoding") or "")
            if encoding is not None:
                headers["Content-Encoding"] = encoding
        self._answer(200, answer, headers)

    def _body(self) -> bytes:
        """The request body, sent whole (``Content-Length``) or in chunks (a streamed insert)."""
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _credentials(self, params: dict[str, str]) -> tuple[str, str]:
        basic = self.headers.get("Authorization") or ""
        if basic.startswith("Basic "):
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            return user, password
        user = self.headers.get("X-ClickHouse-User") or params.get("user") or "default"
        return user, self.headers.get("X-ClickHouse-Key") or params.get("password") or ""

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=UTF-8" if status != 200 else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(path: Path, host: str, port: int, password: str, tls: tuple[str, str, str | None] | None) -> None:
    """Serve until terminated; prints ``listening on`` when ready."""
    engine = Engine(path, password=password)
    workdir = path / "front-requests"
    workdir.mkdir(parents=True, exist_ok=True)
    handler = type("FrontHandler", (Handler,), {"engine": engine, "workdir": workdir})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    if tls is not None:
        cert, key, ca = tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        if ca:  # a client certificate signed by this CA is required, as with verificationMode strict
            context.load_verify_locations(ca)
            context.verify_mode = ssl.CERT_REQUIRED
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--path", type=Path, required=True, help="the chdb data folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--key", help="the certificate's key")
    parser.add_argument("--client-ca", help="require client certificates signed by this CA")
    args = parser.parse_args(argv)
    password = os.environ.get("CLICKHOUSE_PASSWORD", "")
    tls = (args.cert, args.key, args.client_ca) if args.cert else None
    serve(args.path, args.host, args.port, password, tls)


@dataclass
class ClickHouseFront:
    """A running front and how a client reaches it."""

    workdir: Path
    password: str = field(default_factory=lambda: secrets.token_hex(8))
    #: (certificate, key, CA of client certificates or None): serve HTTPS.
    tls: tuple[Path, Path, Path | None] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    process: ManagedProcess | None = None

    @property
    def dsn(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://default:{self.password}@{self.host}:{self.port}/"

    @property
    def log_file(self) -> Path:
        return self.workdir / "clickhouse-front.log"

    def start(self, timeout: float = 60.0) -> None:
        self.port = self.port or free_port(self.host)
        command = [sys.executable, "-m", "devservices.clickhouse_http", "--path", str(self.workdir / "data")]
        command += ["--host", self.host, "--port", str(self.port)]
        if self.tls is not None:
            cert, key, ca = self.tls
            command += ["--cert", str(cert), "--key", str(key)] + (["--client-ca", str(ca)] if ca else [])
        root = Path(__file__).resolve().parent.parent
        env = {"CLICKHOUSE_PASSWORD": self.password, "PYTHONPATH": os.pathsep.join([str(root), *sys.path[1:]])}
        self.process = ManagedProcess("clickhouse-front", command, self.log_file, env=env, cwd=root)
        seen = self.log_file.stat().st_size if self.log_file.exists() else 0  # a restart appends to the log
        self.process.start()
        self.process.wait_until(lambda: b"listening on" in self.log_file.read_bytes()[seen:], timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@contextlib.contextmanager
def running_clickhouse_front(
    workdir: Path, tls: tuple[Path, Path, Path | None] | None = None
) -> Iterator[ClickHouseFront]:
    """A started front for the duration of the block."""
    front = ClickHouseFront(workdir, tls=tls)
    try:
        front.start()
        yield front
    finally:
        front.stop()


if __name__ == "__main__":
    main()
