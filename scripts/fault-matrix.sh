#!/usr/bin/env bash
# Runs the whole fault matrix and prints one table: row, changes,
# lost/unexpected/stale/duplicate, seconds to converge, fetches per change.
#
# Rows 1-12, 14, 22-28, 32-36 and 41, 46-48 are the tests in tests/it/faults_*.rs
# and tests/it/bad_input.rs (each fault row prints a FAULT-ROW line). Row 16, the
# notification storm, runs the binary's demo (simulator and service in one
# process) under /usr/bin/time -v and reports its peak RSS.
#
# Environment:
#   PROFILE=release|debug   build used for row 16 (default release)
#   STORM_ROOMS, STORM_CHANGES, STORM_RATE   row 16's size (1000, 10000, 1000/s)
#   FAULT_THREADS           test threads for the fault rows (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres

profile=${PROFILE:-release}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== fault rows (cargo test --test it faults_ bad_input)" >&2
status=0
cargo test --test it -- faults_ bad_input --nocapture \
  --test-threads="${FAULT_THREADS:-2}" >"$work/tests.log" 2>&1 || status=$?
grep -E '^test .* \.\.\. (ok|FAILED)$' "$work/tests.log" >&2 || true

echo "== row 16: storm of ${STORM_CHANGES:-10000} changes over ${STORM_ROOMS:-1000} rooms" >&2
if [ "$profile" = release ]; then
  cargo build --release --quiet --bin booking-sync
else
  cargo build --quiet --bin booking-sync
fi
storm_status=0
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} \
  /usr/bin/time -v "target/$profile/booking-sync" demo \
  --rooms "${STORM_ROOMS:-1000}" --users 50 \
  --changes "${STORM_CHANGES:-10000}" --rate "${STORM_RATE:-1000}" \
  --converge-timeout 300 --json >"$work/storm.json" 2>"$work/storm.time" || storm_status=$?
rss_kb=$(awk -F': *' '/Maximum resident set size/ {print $2}' "$work/storm.time")
storm=$(tail -n 1 "$work/storm.json")

printf '\n%-6s %8s %6s %10s %6s %9s %10s %14s %s\n' \
  row changes lost unexpected stale duplicate converge_s fetches/change result
grep '^FAULT-ROW ' "$work/tests.log" | sed 's/^FAULT-ROW //' | jq -r '
  [.row, .changes, .lost, .unexpected, .stale, .duplicate,
   (.seconds_to_converge * 10 | round / 10), (.fetches_per_change * 1000 | round / 1000),
   (if .passed then "pass" else "FAIL" end)] | @tsv' |
  sort -t$'\t' -k1,1n -s |
  while IFS=$'\t' read -r row changes lost unexpected stale duplicate seconds fetches result; do
    printf '%-6s %8s %6s %10s %6s %9s %10s %14s %s\n' \
      "$row" "$changes" "$lost" "$unexpected" "$stale" "$duplicate" "$seconds" "$fetches" "$result"
  done
if echo "$storm" | jq -e . >/dev/null 2>&1; then
  echo "$storm" | jq -r --arg rss "$rss_kb" '
    ["16", .changes, .missing, .unexpected, .stale, .duplicate,
     (.seconds_to_converge * 10 | round / 10), (.get_item_calls_per_change * 1000 | round / 1000),
     ((if .converged then "pass" else "FAIL" end) + " peak RSS " + (($rss | tonumber) / 1024 | floor | tostring) + " MB")] | @tsv' |
    while IFS=$'\t' read -r row changes lost unexpected stale duplicate seconds fetches result; do
      printf '%-6s %8s %6s %10s %6s %9s %10s %14s %s\n' \
        "$row" "$changes" "$lost" "$unexpected" "$stale" "$duplicate" "$seconds" "$fetches" "$result"
    done
else
  echo "16     storm run failed (exit $storm_status); see its output:" >&2
  tail -n 20 "$work/storm.time" >&2
  status=1
fi

echo
grep -E '^test result:' "$work/tests.log" || true
if [ "$status" -ne 0 ] || [ "$storm_status" -ne 0 ]; then
  grep -E -A 12 '^---- ' "$work/tests.log" >&2 || true
  exit 1
fi
