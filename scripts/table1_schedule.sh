#!/usr/bin/env bash
# Table 1 of ChatFlow (arXiv 2405.10626): the six data groups with their start/end weights alpha/beta and
# T_grow, printed as the dynamic sampler's probabilities p_k(t) at t = 0, T_grow/2, T_grow and 2 T_grow,
# the exact realised group counts of the sampler, and a plot of p_k(t).
#
#   scripts/table1_schedule.sh [--output_dir DIR] [--mixture FILE]
#       Full scale: models/mixtures/chatflow_table1.json (T_grow = 5M samples of 2048 tokens), or FILE.
#   scripts/table1_schedule.sh --tiny [--output_dir DIR]
#       models/mixtures/tiny_corpora.json (the bundled corpora's mixture, T_grow = 2,000).
#
# Inputs: the mixture file only (no data, no GPU, no host). Outputs in DIR (default runs/table1[_tiny]):
# table1.txt (tables), table1.json, table1_schedule.png.
# Expected run time: a few seconds at either scale (the realised counts are computed in closed form).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; OUTPUT_DIR=""; MIXTURE=""
parse_flags "bool:tiny value:output_dir value:mixture" "$@"
if [[ $TINY == 1 ]]; then
  MIXTURE=${MIXTURE:-$ROOT/models/mixtures/tiny_corpora.json}; OUTPUT_DIR=${OUTPUT_DIR:-runs/table1_tiny}
else
  MIXTURE=${MIXTURE:-$ROOT/models/mixtures/chatflow_table1.json}; OUTPUT_DIR=${OUTPUT_DIR:-runs/table1}
fi
make_output_dir "$OUTPUT_DIR"
T_GROW=$("$PY" -c "import sys; from chatflow_plugin.data.mixture import load_mixture; print(int(load_mixture(sys.argv[1]).t_grow_samples))" "$MIXTURE")
AT=(--at 0 --at $((T_GROW / 2)) --at "$T_GROW" --at $((2 * T_GROW)))
chatflow mixture "$MIXTURE" "${AT[@]}" --realized "$T_GROW" --plot "$OUTPUT_DIR/table1_schedule.png" \
  | tee "$OUTPUT_DIR/table1.txt"
chatflow mixture "$MIXTURE" "${AT[@]}" --realized "$T_GROW" --json > "$OUTPUT_DIR/table1.json"
say "wrote $OUTPUT_DIR/table1.txt, $OUTPUT_DIR/table1.json, $OUTPUT_DIR/table1_schedule.png"
