"""What the pyarrow Flight scripts share: Flight SQL commands encoded by hand (protobuf) for
pyarrow's plain Flight client, and running a statement as GetFlightInfo + DoGet."""

import pyarrow.flight as flight


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def statement_query(sql):
    """A google.protobuf.Any holding arrow.flight.protocol.sql.CommandStatementQuery."""
    command = field(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return field(1, type_url) + field(2, command)


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAILED: {message}")


def run(client, options, sql):
    info = client.get_flight_info(flight.FlightDescriptor.for_command(statement_query(sql)), options)
    check(len(info.endpoints) == 1, f"one endpoint, got {len(info.endpoints)}")
    reader = client.do_get(info.endpoints[0].ticket, options)
    table = reader.read_all()
    check(table.schema == info.schema, f"DoGet schema {table.schema} != {info.schema}")
    return table
