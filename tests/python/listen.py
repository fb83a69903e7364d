"""LISTENs on a channel through psycopg 3 (libpq) and prints every notification.

Usage: listen.py --port PORT --channel CHANNEL --seconds N

Prints "listening" once the LISTEN is done, then one JSON line per notification:
{"channel": …, "payload": …, "received": <unix time, seconds>}, for N seconds.
"""

import argparse
import json
import time

import psycopg


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    conn = psycopg.connect(
        host="127.0.0.1",
        port=args.port,
        user="armorlake",
        dbname="kubearmor",
        autocommit=True,
    )
    conn.execute(f"LISTEN {args.channel}")
    print("listening", flush=True)
    deadline = time.time() + args.seconds
    while (left := deadline - time.time()) > 0:
        for n in conn.notifies(timeout=left):
            line = {"channel": n.channel, "payload": n.payload, "received": time.time()}
            print(json.dumps(line), flush=True)
    conn.close()


if __name__ == "__main__":
    main()
