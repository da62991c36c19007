#!/usr/bin/env bash
# Schemathesis (every check) against the real onboarding-server: a fresh
# temporary database, a free loopback port, the create limit off. Fails on any
# finding; prints how many test cases ran.
#
#   tests/schemathesis/run.sh              # after `cargo build -p onboarding-server`
#   SCHEMATHESIS_MAX_EXAMPLES=50 SCHEMATHESIS_MAX_TIME=60 tests/schemathesis/run.sh
#
# The virtualenv is .venv-schemathesis (tests/schemathesis/venv.sh makes it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SCHEMATHESIS_VENV:-$root/.venv-schemathesis}"
server="${ONBOARDING_SERVER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/onboarding-server}"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-30}"
max_time="${SCHEMATHESIS_MAX_TIME:-80}"

if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "schemathesis: $venv/bin/schemathesis is missing; run $here/venv.sh" >&2
    exit 1
fi
if [ ! -x "$server" ]; then
    echo "schemathesis: $server is missing; run cargo build -p onboarding-server" >&2
    exit 1
fi

work="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Port 0: the kernel picks a free port, and the server's "serving" line says
# which.
"$server" --listen 127.0.0.1:0 --db "$work/onboarding.db" --create-rate-limit 0 \
    --email-taken-per-ip 0 --email-taken-per-session 0 \
    --shutdown-grace-secs 1 --log-level info >"$work/server.log" 2>&1 &
pid=$!
address=""
for _ in $(seq 1 100); do
    address="$(grep -o -m1 'address=127\.0\.0\.1:[0-9]*' "$work/server.log" | cut -d= -f2 || true)"
    [ -n "$address" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$address" ]; then
    echo "schemathesis: the server did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
echo "schemathesis: onboarding-server on $address, database $work/onboarding.db"

started=$(date +%s)
status=0
# The wall-clock bound on top of --max-time: generation can overrun a little.
# One worker: the machine has two cores and the server needs one, and
# CPython 3.11 before 3.11.8 can raise "AST constructor recursion depth
# mismatch" when Hypothesis parses sources from two threads at once.
(
    cd "$work" # schemathesis keeps its cache (.schemathesis/) in the working directory
    PYTHONPATH="$here" SCHEMATHESIS_HOOKS=hooks timeout --kill-after=10 "$((max_time + 60))" \
        "$venv/bin/schemathesis" --config-file "$root/schemathesis.toml" run \
        "http://$address/openapi.json" \
        --url "http://$address" \
        --checks all \
        --max-examples "$max_examples" \
        --max-time "$max_time" \
        --request-timeout 10 \
        --workers 1 \
        --seed "${SCHEMATHESIS_SEED:-20261124}" \
        --generation-database none \
        --no-color
) 2>&1 | tee "$work/schemathesis.log" || status=$?
elapsed=$(( $(date +%s) - started ))

# What the server answered, per route and status (session ids folded).
echo "schemathesis: answers by route and status:"
sed -n 's/.* method=\([A-Z]*\) route="\([^"]*\)" status=\([0-9]*\).*/\1 \2 \3/p' "$work/server.log" |
    sed -E 's#(/api/v1/onboarding/session/)[^/ ]+#\1:id#' >"$work/answers"
grep -E '^(GET|POST) ' "$work/answers" | grep -v ' 405$' | sort | uniq -c | sed 's/^/  /' || true
echo "  $(grep -c ' 405$' "$work/answers" || true) answers 405 to methods a path does not list"
cases="$(grep -A1 '^Test cases:' "$work/schemathesis.log" | tail -n1 | grep -o '[0-9]* generated' | cut -d' ' -f1 || true)"
echo "schemathesis: ${cases:-?} test cases, exit $status, ${elapsed}s"
# A run that never reached a real session tested only the error paths: the
# stateful phase must follow the document's links (from a create's 201 to
# the steps), and every step must have been accepted at least once.
links="$(grep -o 'API Links: *[0-9]* covered' "$work/schemathesis.log" | grep -o '[0-9]*' | head -n1 || true)"
if [ "$status" -eq 0 ] && [ "${links:-0}" -eq 0 ]; then
    echo "schemathesis: the stateful phase followed no link (API Links: ${links:-none} covered)" >&2
    status=1
fi
for answer in "business 200" "channels 200" "vapi 200" "kb 200" "appointments 200" \
    "complete 200" "phone/verification 201"; do
    if [ "$status" -eq 0 ] && ! grep -q "^POST /api/v1/onboarding/session/:id/$answer\$" "$work/answers"; then
        echo "schemathesis: no POST …/:id/${answer% *} answered ${answer#* }: the run never reached a real session" >&2
        status=1
    fi
done
if [ "$status" -ne 0 ]; then
    echo "schemathesis: the server's last log lines:" >&2
    tail -n 20 "$work/server.log" >&2
fi
exit "$status"
