#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: the real PostgreSQL
# client (psql) the integration tests drive, PostgreSQL 15's server programs (the
# reference database the sqllogictest files are also checked against), and a Python venv
# at .venv with the Python clients of tests/python/requirements.txt (ADBC Flight SQL,
# pyarrow). Idempotent; does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# The venv the integration tests run Python clients from (tests/integration/flight.rs finds
# it here). Reinstalled only when requirements.txt changes.
venv=.venv
requirements=tests/python/requirements.txt
stamp="$venv/.requirements"
if ! [ -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  echo "creating the Python venv $venv from $requirements"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
