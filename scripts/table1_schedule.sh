#!/usr/bin/env bash
# Table 1 of ChatFlow (arXiv 2405.10626): the six data groups with their start/end weights alpha/beta and
# T_grow, printed as the dynamic sampler's probabilities p_k(t) at t = 0, T_grow/2, T_grow and 2 T_grow,
# the exact realised group counts of the sampler, and a plot of p_k(t).
#
#   scripts/table1_schedule.sh [--output DIR]          full scale: models/mixtures/chatflow_table1.json
#                                                      (T_grow = 5M samples of 2048 tokens)
#   scripts/table1_schedule.sh --tiny [--output DIR]   models/mixtures/tiny_corpora.json (T_grow = 2,000)
#   MIXTURE=path.json scripts/table1_schedule.sh       any other mixture file
#
# Inputs: the mixture file only (no data, no GPU, no host). Outputs in DIR (default runs/table1[_tiny]):
# table1.txt (tables), table1.json, table1_schedule.png.
# Expected run time: a few seconds at either scale (the realised counts are computed in closed form).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TINY=0; OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tiny) TINY=1; shift ;;
    --output) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "table1_schedule.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $TINY == 1 ]]; then
  MIXTURE=${MIXTURE:-models/mixtures/tiny_corpora.json}; OUT=${OUT:-runs/table1_tiny}
else
  MIXTURE=${MIXTURE:-models/mixtures/chatflow_table1.json}; OUT=${OUT:-runs/table1}
fi
mkdir -p "$OUT"
T_GROW=$("$PY" -c "import sys; from chatflow_plugin.mixture import load_mixture; print(int(load_mixture(sys.argv[1]).t_grow_samples))" "$MIXTURE")
AT=(--at 0 --at $((T_GROW / 2)) --at "$T_GROW" --at $((2 * T_GROW)))
"$PY" -m chatflow_plugin.cli mixture "$MIXTURE" "${AT[@]}" --realized "$T_GROW" --plot "$OUT/table1_schedule.png" \
  | tee "$OUT/table1.txt"
"$PY" -m chatflow_plugin.cli mixture "$MIXTURE" "${AT[@]}" --realized "$T_GROW" --json > "$OUT/table1.json"
echo "wrote $OUT/table1.txt, $OUT/table1.json, $OUT/table1_schedule.png" >&2
