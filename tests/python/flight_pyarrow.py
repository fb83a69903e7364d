"""armorlake's Flight SQL front end through pyarrow's plain Flight client: a statement query
as GetFlightInfo + DoGet, with the Flight SQL command encoded by hand, basic-auth handshake,
and errors as gRPC statuses.

Usage: flight_pyarrow.py URI USER PASSWORD   (USER empty: no users are configured, and calls
without credentials must work). Exits non-zero with a message on the first failure.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight

from flight_common import check, run

uri, user, password = sys.argv[1:4]
# Optional: the CA (PEM file) to trust for a grpc+tls:// URI.
ca = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else None

client = flight.FlightClient(uri, tls_root_certs=ca) if ca else flight.FlightClient(uri)

if user:
    # Wrong password: the handshake is refused.
    try:
        client.authenticate_basic_token(user, password + "-wrong")
        raise SystemExit("FAILED: a wrong password was accepted")
    except flight.FlightUnauthenticatedError as e:
        print(f"bad credentials refused: {e}")
    # No credentials at all: refused too.
    try:
        run(client, flight.FlightCallOptions(), "SELECT 1")
        raise SystemExit("FAILED: a call without credentials was accepted")
    except flight.FlightUnauthenticatedError:
        print("no credentials refused")
    # A forged token: refused.
    forged = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer forged")])
    try:
        run(client, forged, "SELECT 1")
        raise SystemExit("FAILED: a forged token was accepted")
    except flight.FlightUnauthenticatedError:
        print("forged token refused")
    header = client.authenticate_basic_token(user, password)
    check(header[0] == b"authorization" and header[1].startswith(b"Bearer "), f"{header}")
    options = flight.FlightCallOptions(headers=[header])
else:
    options = flight.FlightCallOptions()

# A statement: GetFlightInfo, then DoGet of its ticket.
table = run(
    client,
    options,
    "SELECT timestamp, namespace_name, atags FROM alerts ORDER BY timestamp DESC LIMIT 10",
)
check(table.num_rows > 0, "alerts rows")
check(table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC"), f"{table.schema}")
check(table.schema.field("atags").type == pa.list_(pa.string()), f"{table.schema}")
print(f"DoGet: {table.num_rows} rows, schema {table.schema.names}")

# Many batches arrive as a stream.
table = run(client, options, "SELECT pid, process_name FROM logs")
check(table.num_rows > 0, "logs rows")
print(f"DoGet: {table.num_rows} logs rows in {len(table.to_batches())} batches")

# A bad query: INVALID_ARGUMENT carrying the planner's message.
try:
    run(client, options, "SELEC 1")
    raise SystemExit("FAILED: a syntax error was accepted")
except pa.ArrowInvalid as e:
    check("Expected" in str(e) and "SELEC" in str(e), f"planner's message: {e}")
    check("invalid argument" in str(e).lower(), f"InvalidArgument: {e}")
    print(f"bad query: {e}")

print("ok")
