"""Asks an operator's fragment service (Arrow Flight DoGet) to run a plan, three ways:
without the cluster token, with a wrong one, and with the right one. Prints one line each:
`<case> refused <message>` or `<case> passed <message>`: a call that gets past the token check fails
in the service itself (the ticket is not a plan), which is not a refusal.

    worker_token.py ADDR TOKEN
"""

import sys

import pyarrow.flight as flight


def call(client, headers):
    options = flight.FlightCallOptions(headers=headers, timeout=10)
    try:
        client.do_get(flight.Ticket(b"not a plan"), options=options).read_all()
    except flight.FlightUnauthenticatedError as e:
        return f"refused {e}"
    except Exception as e:  # past the check: the service's own answer
        return f"passed {e}"
    return "passed"


def main():
    addr, token = sys.argv[1], sys.argv[2]
    client = flight.FlightClient(f"grpc://{addr}")
    bearer = lambda t: [(b"authorization", f"Bearer {t}".encode())]
    print("none", call(client, []), flush=True)
    print("wrong", call(client, bearer("not-" + token)), flush=True)
    print("right", call(client, bearer(token)), flush=True)


if __name__ == "__main__":
    main()
