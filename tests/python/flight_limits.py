"""The Flight SQL front end's limits through pyarrow: the server's --statement-timeout and
the caller's own deadline stop a statement (DEADLINE_EXCEEDED, PostgreSQL's message), and
--max-connections bounds how many statements stream at once (RESOURCE_EXHAUSTED).

Usage: flight_limits.py URI   (the server runs with --max-connections 1 --statement-timeout 2s,
no users). Exits non-zero with a message on the first failure.
"""

import sys
import time

import pyarrow as pa
import pyarrow.flight as flight

from flight_common import check, run, statement_query

ENDLESS = "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b"

client = flight.FlightClient(sys.argv[1])
options = flight.FlightCallOptions()


def eventually_runs(what):
    """A statement runs again within 2 s: the slot of the last one was given back."""
    deadline = time.monotonic() + 2
    while True:
        try:
            check(run(client, options, "SELECT 1 AS one").num_rows == 1, "SELECT 1")
            return
        except pa.ArrowException as e:
            if time.monotonic() > deadline:
                raise SystemExit(f"FAILED: no statement runs after {what}: {e}")
            time.sleep(0.05)


# The server's statement timeout ends an endless statement after about 2 s.
start = time.monotonic()
try:
    run(client, options, ENDLESS)
    raise SystemExit("FAILED: the endless statement finished")
except flight.FlightTimedOutError as e:
    message = str(e)
check("canceling statement due to statement timeout" in message, f"message: {message}")
elapsed = time.monotonic() - start
check(1.5 < elapsed < 15, f"stopped after {elapsed:.1f} s, want about 2 s")
print(f"server statement timeout: stopped after {elapsed:.1f} s: {message}")
eventually_runs("the server's timeout")

# One slot: while the endless statement streams, another is refused.
info = client.get_flight_info(flight.FlightDescriptor.for_command(statement_query(ENDLESS)), options)
reader = client.do_get(info.endpoints[0].ticket, options)
reader.schema  # the server has started it
try:
    run(client, options, "SELECT 1")
    raise SystemExit("FAILED: a second statement ran beside the first with one slot")
except pa.ArrowException as e:  # pyarrow reports RESOURCE_EXHAUSTED as ArrowInvalid
    check("too many queries" in str(e) and "--max-connections" in str(e), f"message: {e}")
    print(f"second statement refused: {e}")
try:
    reader.read_all()
    raise SystemExit("FAILED: the endless statement finished")
except flight.FlightTimedOutError:
    pass
eventually_runs("the first statement's timeout")

# The caller's shorter deadline stops the statement too, and frees its slot.
start = time.monotonic()
try:
    run(client, flight.FlightCallOptions(timeout=0.5), ENDLESS)
    raise SystemExit("FAILED: the endless statement finished")
except flight.FlightTimedOutError as e:
    elapsed = time.monotonic() - start
    check(elapsed < 1.5, f"stopped after {elapsed:.1f} s, want about 0.5 s")
    print(f"client deadline: stopped after {elapsed:.1f} s")
eventually_runs("the client's deadline")

print("ok")
