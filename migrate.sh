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

# With PYTHONDONTWRITEBYTECODE set (many CI and container images) Python never saves the
# bytecode of an editable install, so every run would compile sqlmig again (~30 ms of a no-op
# `up`): compile it here once after each change of its sources.
if [[ -n "${PYTHONDONTWRITEBYTECODE:-}" ]]; then
    compiled="$venv/.sqlmig-compiled"
    if [[ ! -f "$compiled" || -n "$(find "$here/sqlmig" -name '*.py' -newer "$compiled" -print -quit)" ]]; then
        touch "$compiled"  # before compiling: an edit made meanwhile is compiled next time
        "$venv/bin/python" -m compileall -q "$here/sqlmig" > /dev/null 2>&1 || true
    fi
fi

# Run from the project so that migrations/ and rollbacks/ are found wherever the caller is.
cd "$here"
export SQLMIG_COMMAND_NAME="${SQLMIG_COMMAND_NAME:-./migrate.sh}"  # what messages tell you to run
exec "$venv/bin/sqlmig" "$@"
