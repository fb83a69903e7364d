#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: the real PostgreSQL
# client (psql) the integration tests drive, and PostgreSQL 15's server programs (the
# reference database the sqllogictest files are also checked against). Idempotent; does
# nothing when all is there.
set -euo pipefail

need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
