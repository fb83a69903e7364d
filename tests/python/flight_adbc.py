"""armorlake's Flight SQL front end through ADBC's Flight SQL driver (the Go driver that
JDBC-like tools and dataframe libraries use): queries, prepared statements with parameters,
catalog metadata, Arrow types, and errors.

Usage: flight_adbc.py URI USER PASSWORD. Exits non-zero with a message on the first failure.
"""

import sys

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa

uri, user, password = sys.argv[1:4]


def connect(password):
    return flightsql.connect(uri, db_kwargs={"username": user, "password": password})


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAILED: {message}")


# Bad credentials are refused, with UNAUTHENTICATED.
try:
    with connect(password + "-wrong") as bad, bad.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchall()
    raise SystemExit("FAILED: a wrong password was accepted")
except adbc_driver_manager.Error as e:
    check(
        e.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHENTICATED,
        f"wrong password: expected UNAUTHENTICATED, got {e.status_code}: {e}",
    )
print("bad credentials refused")

with connect(password) as conn:
    # Server information (GetSqlInfo).
    info = conn.adbc_get_info()
    check(info.get("vendor_name") == "armorlake", f"vendor_name in {info}")

    with conn.cursor() as cur:
        # A statement query.
        cur.execute("SELECT count(*) AS n FROM logs")
        (n,) = cur.fetchone()
        check(n > 0, f"logs has rows, got {n}")
        print(f"logs: {n} rows")

        # The result as a pyarrow table with armorlake's types.
        cur.execute(
            "SELECT timestamp, atags, pod_name, severity FROM alerts ORDER BY timestamp LIMIT 20"
        )
        table = cur.fetch_arrow_table()
        check(table.num_rows > 0, "alerts has rows")
        ts = table.schema.field("timestamp").type
        check(pa.types.is_timestamp(ts) and ts.tz == "UTC", f"timestamp type {ts}")
        check(ts.unit == "us", f"timestamp unit {ts.unit}")
        atags = table.schema.field("atags").type
        check(
            pa.types.is_list(atags) and pa.types.is_string(atags.value_type),
            f"atags type {atags}",
        )
        check(table.schema.field("pod_name").type == pa.string(), "pod_name is utf8")
        check(table.schema.field("severity").type == pa.int32(), "severity is int32")
        stamps = table.column("timestamp").to_pylist()
        check(stamps == sorted(stamps), "ORDER BY timestamp holds")
        check(
            all(isinstance(tags, list) for tags in table.column("atags").to_pylist() if tags),
            "atags are lists",
        )
        print(f"types: timestamp {ts}, atags {atags}")

        # Parameterised queries (prepared statements: create, bind with DoPut, execute),
        # the same statement with different values.
        sql = "SELECT DISTINCT operation FROM logs WHERE operation = ?"
        cur.execute(sql, parameters=("File",))
        rows = cur.fetchall()
        check(rows == [("File",)], f"operation = 'File' gave {rows}")
        cur.execute(sql, parameters=("NoSuchOperation",))
        rows = cur.fetchall()
        check(rows == [], f"operation = 'NoSuchOperation' gave {rows}")
        cur.execute("SELECT pid FROM logs WHERE pid > ? ORDER BY pid LIMIT 50", parameters=(100,))
        pids = [r[0] for r in cur.fetchall()]
        check(pids and all(p > 100 for p in pids), f"pid > 100 gave {pids}")
        cur.execute("SELECT $2 || '-' || $1 AS s", parameters=("a", "b"))
        check(cur.fetchall() == [("b-a",)], "two positional parameters")
        print("parameters bound")

        # A bad query: INVALID_ARGUMENT with the planner's message.
        try:
            cur.execute("SELECT no_such_column FROM logs")
            cur.fetchall()
            raise SystemExit("FAILED: an unknown column was accepted")
        except adbc_driver_manager.Error as e:
            check(
                e.status_code == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT,
                f"unknown column: expected INVALID_ARGUMENT, got {e.status_code}: {e}",
            )
            check("no_such_column" in str(e), f"message names the column: {e}")
        # An unknown table: NOT_FOUND, in PostgreSQL's words.
        try:
            cur.execute("SELECT * FROM no_such_table")
            cur.fetchall()
            raise SystemExit("FAILED: an unknown table was accepted")
        except adbc_driver_manager.Error as e:
            check(
                e.status_code == adbc_driver_manager.AdbcStatusCode.NOT_FOUND,
                f"unknown table: expected NOT_FOUND, got {e.status_code}: {e}",
            )
            check('relation "no_such_table" does not exist' in str(e), f"message: {e}")
        # Read-only: no DDL.
        try:
            cur.execute("CREATE TABLE t (a int)")
            cur.fetchall()
            raise SystemExit("FAILED: DDL was accepted")
        except adbc_driver_manager.Error as e:
            check("DDL" in str(e), f"DDL refused: {e}")
        print("errors mapped")

    # Catalog metadata (GetCatalogs, GetDbSchemas, GetTables with schemas).
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    check("kubearmor" in catalogs, f"catalogs {list(catalogs)}")
    schemas = {s["db_schema_name"]: s for s in catalogs["kubearmor"]["catalog_db_schemas"]}
    check({"public", "armorlake"} <= set(schemas), f"schemas {list(schemas)}")
    check("pg_catalog" not in schemas, "pg_catalog is hidden")
    public = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
    check(set(public) == {"alerts", "logs", "messages"}, f"public tables {list(public)}")
    check(public["alerts"]["table_type"] == "TABLE", "alerts is a TABLE")
    columns = [c["column_name"] for c in public["alerts"]["table_columns"]]
    check(columns[0] == "timestamp" and "atags" in columns, f"alerts columns {columns}")
    system = {t["table_name"] for t in schemas["armorlake"]["db_schema_tables"]}
    check({"nodes", "partitions", "sources"} <= system, f"armorlake tables {system}")
    filtered = conn.adbc_get_objects(
        depth="tables", db_schema_filter="public", table_name_filter="al%"
    ).read_all().to_pylist()
    names = [
        t["table_name"]
        for c in filtered
        for s in c["catalog_db_schemas"]
        for t in s["db_schema_tables"]
    ]
    check(names == ["alerts"], f"filtered tables {names}")
    print(f"objects: schemas {sorted(schemas)}, public {sorted(public)}")

    # One table's Arrow schema.
    schema = conn.adbc_get_table_schema("alerts", db_schema_filter="public")
    check(schema.field("atags").type == pa.list_(pa.string()), f"atags {schema}")
    check(schema.field("timestamp").type == pa.timestamp("us", tz="UTC"), f"ts {schema}")
    check(
        "TABLE" in conn.adbc_get_table_types(),
        f"table types {conn.adbc_get_table_types()}",
    )
    print("table schema and types")

print("ok")
