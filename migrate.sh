#!/usr/bin/env bash
# The deploy entrypoint: installs sqlmig into ./.venv on first use (or when pyproject.toml
# changes), then hands over to it. Arguments, stdout/stderr and the exit code pass through
# untouched, so pipelines can rely on sqlmig's documented exit codes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${SQLMIG_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.sqlmig-installed${SQLMIG_EXTRAS:-}"
want="$(sha256sum < "$here/pyproject.toml" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/sqlmig" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "migrate.sh: installing sqlmig into $venv (first run only)" >&2
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here${SQLMIG_EXTRAS:-}" >&2
    echo "$want" > "$stamp"
fi

# Run from the project so that migrations/ and rollbacks/ are found wherever the caller is.
cd "$here"
exec "$venv/bin/sqlmig" "$@"
