#!/usr/bin/env bash
# Runs the whole fault matrix twice, periodic resync off and on, and prints one
# table: row, resync mode, changes, lost/unexpected/stale/duplicate, seconds to
# converge, fetches per change, drift the full resync repaired.
#
# Rows 1-12, 14, 15, 20, 22-28 and 32-36 are the tests in tests/it/faults_*.rs; each
# runs the `booking-sync run` binary as its own process (so it asserts on that
# process's own /metrics), prints a FAULT-ROW line and takes its resync mode from
# FAULT_RESYNC: `off` ([resync] enabled = false: the streaming path must recover by
# itself) or `on` (a catch-up every second, a full reconciliation every 4 s, and the
# row waits for one full reconciliation after the heal). Rows 24 and 25 restart
# (pg_ctl restart -m fast) and crash (pg_ctl stop -m immediate) a private PostgreSQL
# server of their own; the shared server is never touched. Rows 41 and 46-48 are in
# tests/it/bad_input.rs (pass or fail only). Row 16, the notification storm, runs the
# binary's demo (simulator and service in one process) under /usr/bin/time -v with
# `--resync off|on` and reports its peak RSS and how often the full queue made the
# listener wait (the service never drops an event).
#
# Environment:
#   PROFILE=release|debug   build used for row 16 (default release)
#   FAULT_MODES             resync modes to run (default "off on")
#   FAULT_THREADS           test threads for the fault rows (default 2)
#   STORM_ROOMS, STORM_CHANGES, STORM_RATE, STORM_QUEUE
#                           row 16's size (1000 rooms, 10000 changes, 1000/s, queue 256)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres

profile=${PROFILE:-release}
modes=${FAULT_MODES:-off on}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
for mode in $modes; do
  echo "== fault rows, resync $mode (cargo test --test it faults_ bad_input)" >&2
  FAULT_RESYNC=$mode cargo test --test it -- faults_ bad_input --nocapture \
    --test-threads="${FAULT_THREADS:-2}" >"$work/tests-$mode.log" 2>&1 || status=$?
  grep -E '^test .* \.\.\. (ok|FAILED)$' "$work/tests-$mode.log" >&2 || true
done

if [ "$profile" = release ]; then
  cargo build --release --quiet --bin booking-sync
else
  cargo build --quiet --bin booking-sync
fi
storm_status=0
for mode in $modes; do
  echo "== row 16, resync $mode: storm of ${STORM_CHANGES:-10000} changes over ${STORM_ROOMS:-1000} rooms" >&2
  DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} \
    /usr/bin/time -v "target/$profile/booking-sync" demo \
    --rooms "${STORM_ROOMS:-1000}" --users 50 \
    --changes "${STORM_CHANGES:-10000}" --rate "${STORM_RATE:-1000}" \
    --queue-capacity "${STORM_QUEUE:-256}" --resync "$mode" \
    --converge-timeout 300 --json >"$work/storm-$mode.json" 2>"$work/storm-$mode.time" ||
    storm_status=$?
done

format='%-6s %-6s %8s %6s %10s %6s %9s %10s %14s %6s %s\n'
printf "\n$format" row resync changes lost unexpected stale duplicate converge_s fetches/change drift result
{
  for mode in $modes; do
    grep '^FAULT-ROW ' "$work/tests-$mode.log" | sed 's/^FAULT-ROW //' | jq -r '
      [.row, .resync, .changes, .lost, .unexpected, .stale, .duplicate,
       (.seconds_to_converge * 10 | round / 10), (.fetches_per_change * 1000 | round / 1000),
       .drift, (if .passed then "pass" else "FAIL" end)] | @tsv'
    storm=$(tail -n 1 "$work/storm-$mode.json" 2>/dev/null || true)
    rss_kb=$(awk -F': *' '/Maximum resident set size/ {print $2}' "$work/storm-$mode.time")
    if echo "$storm" | jq -e . >/dev/null 2>&1; then
      echo "$storm" | jq -r --arg rss "${rss_kb:-0}" '
        ["16", .resync, .changes, .missing, .unexpected, .stale, .duplicate,
         (.seconds_to_converge * 10 | round / 10), (.get_item_calls_per_change * 1000 | round / 1000),
         .drift,
         ((if .converged then "pass" else "FAIL" end) + " peak RSS "
          + (($rss | tonumber) / 1024 | floor | tostring) + " MB, queue "
          + (.queue_capacity | tostring) + " full " + (.queue_full_waits | tostring) + "x")] | @tsv'
    else
      printf '16\t%s\t-\t-\t-\t-\t-\t-\t-\t-\tstorm run failed (exit %s)\n' "$mode" "$storm_status"
      tail -n 20 "$work/storm-$mode.time" >&2
    fi
  done
} | sort -t$'\t' -k1,1n -k2,2 -s |
  while IFS=$'\t' read -r row mode changes lost unexpected stale duplicate seconds fetches drift result; do
    # shellcheck disable=SC2059
    printf "$format" "$row" "$mode" "$changes" "$lost" "$unexpected" "$stale" "$duplicate" \
      "$seconds" "$fetches" "$drift" "$result"
  done

echo
for mode in $modes; do
  printf 'resync %-3s ' "$mode"
  grep -E '^test result:' "$work/tests-$mode.log" || echo "(no test result)"
done
if [ "$status" -ne 0 ] || [ "$storm_status" -ne 0 ]; then
  for mode in $modes; do
    grep -E -A 12 '^---- ' "$work/tests-$mode.log" >&2 || true
  done
  exit 1
fi
