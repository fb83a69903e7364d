"""armorlake through psycopg 3 (libpq): the checks a Rust integration test runs.

Usage: psycopg_client.py CHECK --port PORT [--user U] [--password P] [--sslmode M]

Each check raises on failure (non-zero exit, traceback on stderr) and prints "ok CHECK"
when everything held.
"""

import argparse
import datetime
import sys
import threading
import time

import psycopg
from psycopg import errors

# A statement that runs for minutes unless it is stopped.
ENDLESS = (
    "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b"
)


def connect(args, **kwargs):
    return psycopg.connect(
        host="127.0.0.1",
        port=args.port,
        user=args.user,
        password=args.password,
        dbname="kubearmor",
        sslmode=args.sslmode,
        connect_timeout=10,
        **kwargs,
    )


def expect_error(kind, fn):
    try:
        fn()
    except kind as e:
        return e
    raise AssertionError(f"expected {kind.__name__}")


def check_queries(args):
    with connect(args, autocommit=True) as conn:
        # Simple protocol (libpq PQexec), several statements in one string.
        results = conn.pgconn.exec_(b"SELECT 1; SELECT 'two'")
        assert results.status == psycopg.pq.ExecStatus.TUPLES_OK, results.error_message
        assert results.get_value(0, 0) == b"two", results.get_value(0, 0)

        # Client-side binding, sent as a simple query.
        with psycopg.ClientCursor(conn) as cur:
            cur.execute("SELECT %s::int + 1, %s::text", (41, "x"))
            assert cur.fetchone() == (42, "x")

        # Extended protocol with server-side parameters.
        cur = conn.execute("SELECT %s::bigint * 2, %s::text || '!'", (21, "hi"))
        assert cur.fetchone() == (42, "hi!")
        n = conn.execute(
            "SELECT count(*) FROM alerts WHERE namespace_name <> %s", ("no-such-ns",)
        ).fetchone()[0]
        assert n > 0, n
        rows = conn.execute(
            "SELECT pod_name, pid FROM alerts WHERE pid > %s ORDER BY timestamp LIMIT %s",
            (0, 5),
        ).fetchall()
        assert 0 < len(rows) <= 5 and all(isinstance(p, int) for _, p in rows), rows

        # The same statement prepared once and executed many times.
        for i in range(3):
            v = conn.execute("SELECT %s::int", (i,), prepare=True).fetchone()[0]
            assert v == i, v

        # Errors keep their SQLSTATE and the session stays usable.
        e = expect_error(errors.UndefinedTable, lambda: conn.execute("SELECT * FROM nope"))
        assert e.sqlstate == "42P01"
        e = expect_error(errors.SyntaxError, lambda: conn.execute("SELEC 1"))
        assert e.diag.statement_position == "1", e.diag.statement_position
        e = expect_error(
            errors.ReadOnlySqlTransaction,
            lambda: conn.execute("INSERT INTO alerts (pid) VALUES (%s)", (1,)),
        )
        assert "cannot execute INSERT in a read-only transaction" in str(e), e
        assert conn.execute("SELECT 1").fetchone() == (1,)
    print("ok queries")


def check_binary(args):
    with connect(args, autocommit=True) as conn:
        cur = conn.cursor(binary=True)
        cur.execute(
            "SELECT 1::int4, 2::int8, 1.5::float8, true, 'x'::text, ARRAY['a', 'b']"
        )
        row = cur.fetchone()
        assert row == (1, 2, 1.5, True, "x", ["a", "b"]), row
        assert [cur.pgresult.fformat(i) for i in range(6)] == [1] * 6

        cur.execute(
            "SELECT timestamp, host_name, pid, atags FROM alerts ORDER BY timestamp LIMIT 20"
        )
        rows = cur.fetchall()
        assert rows, "no alerts"
        assert [cur.pgresult.fformat(i) for i in range(4)] == [1] * 4
        assert [d.type_code for d in cur.description] == [1184, 25, 23, 1009], cur.description
        for ts, host, pid, atags in rows:
            assert isinstance(ts, datetime.datetime) and ts.tzinfo is not None, ts
            assert isinstance(host, str) and isinstance(pid, int), (host, pid)
            assert atags is None or isinstance(atags, list), atags
    print("ok binary")


def check_cursors(args):
    with connect(args) as conn:
        total = conn.execute("SELECT count(*) FROM (SELECT 1 FROM logs LIMIT 250) t").fetchone()[0]
        assert total == 250, total
        conn.rollback()
        with conn.cursor(name="events") as cur:
            cur.itersize = 40
            cur.execute("SELECT timestamp, process_name FROM logs LIMIT 250")
            first = cur.fetchmany(7)
            assert len(first) == 7, first
            rest = list(cur)
            assert len(first) + len(rest) == 250, len(rest)
        conn.commit()
    print("ok cursors")


def check_auth(args):
    try:
        with connect(args) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            outcome = "ok"
    except psycopg.OperationalError as e:
        # libpq keeps no SQLSTATE for a failed login (the Rust tests check 28P01 on the
        # wire); its message is PostgreSQL's.
        outcome = "denied" if "password authentication failed" in str(e) else str(e)
    assert outcome == args.expect, f"expected {args.expect}, got {outcome}"
    print("ok auth")


def check_cancel(args):
    with connect(args, autocommit=True) as conn:
        failure = []

        def run():
            try:
                conn.execute(ENDLESS)
                failure.append("the endless query finished")
            except errors.QueryCanceled as e:
                failure.append(None if "user request" in str(e) else str(e))
            except Exception as e:  # noqa: BLE001 - reported below
                failure.append(repr(e))

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 30
        # A cancel that arrives before the query starts is ignored (as by PostgreSQL):
        # send one every 200 ms until the query stops.
        while worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
            conn.cancel_safe() if hasattr(conn, "cancel_safe") else conn.cancel()
        worker.join(5)
        assert not worker.is_alive(), "the query was not cancelled"
        assert failure == [None], failure
        assert conn.execute("SELECT 5").fetchone() == (5,)
    print("ok cancel")


def check_timeout(args):
    with connect(args, autocommit=True, options="-c statement_timeout=150ms") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] in ("150ms", "150")
        started = time.monotonic()
        e = expect_error(errors.QueryCanceled, lambda: conn.execute(ENDLESS))
        assert "statement timeout" in str(e), e
        assert time.monotonic() - started < 20
        # DISCARD ALL (Npgsql on every pooled close) resets the session's settings to
        # their values at startup, as PostgreSQL does.
        conn.execute("SET statement_timeout = '1min'")
        conn.execute("DISCARD ALL")
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "150ms"
        assert conn.execute("SELECT 6").fetchone() == (6,)
    print("ok timeout")


CHECKS = {
    "queries": check_queries,
    "binary": check_binary,
    "cursors": check_cursors,
    "auth": check_auth,
    "cancel": check_cancel,
    "timeout": check_timeout,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("check", choices=sorted(CHECKS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="armorlake")
    parser.add_argument("--password")
    parser.add_argument("--sslmode", default="prefer")
    parser.add_argument("--expect", default="ok", help="auth: ok or denied")
    args = parser.parse_args()
    CHECKS[args.check](args)


if __name__ == "__main__":
    sys.exit(main())
