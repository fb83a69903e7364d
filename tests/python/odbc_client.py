"""armorlake through psqlODBC (Debian's odbc-postgresql) under unixODBC, driven by pyodbc,
the way PowerBI, Excel and other ODBC tools reach PostgreSQL.

Usage: odbc_client.py --port PORT --namespace NS --since RFC3339 [--driver NAME]

Prints one tab-separated line per fact, which tests/integration/pg_odbc.rs checks:
  table SCHEMA NAME TYPE        (SQLTables)
  column TABLE NAME TYPE_NAME   (SQLColumns of public.alerts)
  count N                       (alerts of NS at or after SINCE, as a parameter)
  ok
Any failure raises (non-zero exit, traceback on stderr).
"""

import argparse
import datetime

import pyodbc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--since", required=True)
    # The name Debian's odbc-postgresql registers with odbcinst; a path to the driver's .so
    # works too.
    parser.add_argument("--driver", default="PostgreSQL Unicode")
    args = parser.parse_args()

    # DSN-less: everything in the connection string.
    conn = pyodbc.connect(
        f"DRIVER={{{args.driver}}};SERVER=127.0.0.1;PORT={args.port};"
        "DATABASE=kubearmor;UID=armorlake;PWD=;SSLmode=disable",
        timeout=10,
        autocommit=True,
    )
    cur = conn.cursor()

    for row in cur.tables(schema="%").fetchall():
        print(f"table\t{row.table_schem}\t{row.table_name}\t{row.table_type}")

    for row in cur.columns(table="alerts", schema="public").fetchall():
        print(f"column\t{row.table_name}\t{row.column_name}\t{row.type_name}")

    since = datetime.datetime.fromisoformat(args.since.replace("Z", "+00:00"))
    n = cur.execute(
        "SELECT count(*) FROM alerts WHERE namespace_name = ? AND timestamp >= ?",
        args.namespace,
        since.strftime("%Y-%m-%d %H:%M:%S.%f+00"),
    ).fetchone()[0]
    print(f"count\t{n}")

    conn.close()
    print("ok")


if __name__ == "__main__":
    main()
