#!/usr/bin/env bash
# The fault-injection campaign of docs/reliability.md: kills at random moments of preprocess, train, convert and
# expand-vocab, each followed by a re-run or resume checked against an uninterrupted run; worker pools stopped by
# errors, dead workers and dead main processes under load; full and read-only disks; concurrent writers; tampered
# shards and manifests; hostile records, numbers and names. Every test of tests/faults, with its long rounds.
#
#   scripts/fault_injection.sh --tiny [--output_dir DIR]
#       CPU, about 1.5 minutes: the campaign's machinery on a sample of it (two rounds of the preprocess and convert
#       kills and of the worker-pool test), in a temporary folder.
#
#   scripts/fault_injection.sh [--rounds 20] [--output_dir DIR] [--tmp DIR] [-- PYTEST_ARGS]
#       The whole campaign: --rounds random kill moments per command (and proportionally more pool rounds),
#       about 20 minutes per 10 rounds on 2 CPU cores. --tmp runs it in a folder of the filesystem to test, e.g.
#       a cluster's shared scratch space: atomic renames, the lock files and the clean-up of killed runs then
#       meet that filesystem's semantics (NFS and Lustre differ from a local disk). The disk tests mount a small
#       tmpfs (root, where the machine allows mounts; skipped with the reason otherwise), and the TencentPretrain
#       cases run with TENCENTPRETRAIN_HOME set. Arguments after -- go to pytest (e.g. -k kills, -x).
#
# Why a script and not only `pytest -m faults`: the campaign is also the user's check of their own storage and
# machine, and it records its outcome. Writes DIR/faults.xml (JUnit: every case, its time, why it was skipped)
# and DIR/faults.txt (pytest's summary); exits non-zero if any case failed.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; OUTPUT_DIR=""; ROUNDS=20; TMP=""
parse_flags "bool:tiny value:output_dir value:rounds value:tmp" "$@"

SELECT=()
if [[ $TINY == 1 ]]; then
  OUTPUT_DIR=${OUTPUT_DIR:-runs/fault_injection_tiny}; ROUNDS=2
  SELECT=(-k "preprocess_killed or convert_killed or never_hang")
fi
OUTPUT_DIR=${OUTPUT_DIR:-runs/fault_injection}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || usage_error "--rounds must be a positive number, got $ROUNDS"
make_output_dir "$OUTPUT_DIR"
OUTPUT_DIR=$(cd "$OUTPUT_DIR" && pwd)
if [[ -n $TMP ]]; then
  mkdir -p "$TMP"
  WORK=$(mktemp -d "$(cd "$TMP" && pwd)/chatflow-faults.XXXXXX")
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/chatflow-faults.XXXXXX")
fi
trap 'rm -rf "$WORK"' EXIT

say "fault-injection campaign: $ROUNDS rounds, working in $WORK, results in $OUTPUT_DIR"
status=0
CHATFLOW_FAULTS=1 CHATFLOW_FAULT_ROUNDS=$ROUNDS "$PY" -m pytest -q -p no:cacheprovider -rfEs \
    --basetemp "$WORK/pytest" --junitxml "$OUTPUT_DIR/faults.xml" "$ROOT/tests/faults" "${SELECT[@]}" "${EXTRA[@]}" \
    > "$OUTPUT_DIR/faults.txt" 2>&1 || status=$?
tail -n 25 "$OUTPUT_DIR/faults.txt" >&2
[[ $status == 0 || $status == 5 ]] || die "some fault cases failed (exit $status): see $OUTPUT_DIR/faults.txt"
say "every fault case held: $OUTPUT_DIR/faults.txt, $OUTPUT_DIR/faults.xml"
