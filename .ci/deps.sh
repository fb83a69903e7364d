#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: the real PostgreSQL
# client (psql) and a Python venv with the Python clients (tests/python/requirements.txt)
# that the integration tests drive, PostgreSQL 15's server programs (the reference
# database the sqllogictest files are also checked against), pgjdbc with a JDK to compile
# tests/java/, psqlODBC with unixODBC (pyodbc drives it), and etcd (the master's etcd store
# is tested against it). Idempotent; does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

root="$(cd "$(dirname "$0")/.." && pwd)"
# One venv for every Python client; the Makefile points the tests at it (ARMORLAKE_PYTHON).
venv="${ARMORLAKE_VENV:-$root/.venv}"
requirements="$root/tests/python/requirements.txt"

need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# A real etcd for the master's etcd metadata store test (tests/integration/meta_etcd.rs).
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
# pgjdbc and a JDK (javac) for the JDBC client test (tests/java/); psqlODBC under
# unixODBC's driver manager (pyodbc builds against unixodbc-dev where it has no wheel).
for pkg in libpostgresql-jdbc-java odbc-postgresql unixodbc unixodbc-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
# Debian's python3 makes venvs only with python3-venv (ensurepip).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# (Re)build the venv when it is missing or the requirements changed.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing Python clients into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" > "$stamp"
fi
