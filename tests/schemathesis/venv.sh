#!/usr/bin/env bash
# Makes (or keeps) the virtualenv of the schemathesis run: .venv-schemathesis
# with the pinned requirements. Idempotent and quiet.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SCHEMATHESIS_VENV:-$here/../../.venv-schemathesis}"
requirements="$here/requirements.txt"
stamp="$venv/.requirements"
if [ -x "$venv/bin/schemathesis" ] && cmp -s "$requirements" "$stamp"; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
