#!/usr/bin/env bash
# ChatFlow Table 3 and Figure 3: Elo ranking of chat models from pairwise human votes, and the win rates in
# non-tie matches.
#
#   scripts/table3_elo.sh --votes VOTES_JSONL --output_prefix PREFIX
#       VOTES_JSONL: one {"model_a": ..., "model_b": ..., "winner": "a"|"b"|"tie"} per line, in the order the
#       votes were cast (online Elo depends on it; the Bradley-Terry ratings do not). Seconds to run.
#   scripts/table3_elo.sh --tiny [--output_dir DIR]
#       Seconds, CPU: 3,000 votes among four models drawn from known Bradley-Terry strengths (seeded), so the
#       ratings recovered can be checked against the truth: a check of the rating pipeline, not human data.
#
# Options: --k (online Elo K factor, 4), --initial (1000), --bootstrap (resamples, 1000), --prior (virtual ties
# per model, 0; use 1 when a model never won or never lost), --seed (0).
# Writes PREFIX.json, PREFIX.md (Table 3 + win-rate matrix) and PREFIX_win_rates.png.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; VOTES=""; OUTPUT_PREFIX=""; OUTPUT_DIR=""; K=4; INITIAL=1000; BOOTSTRAP=1000; PRIOR=0; SEED=0
parse_flags "bool:tiny value:votes value:output_prefix value:output_dir value:k value:initial value:bootstrap
             value:prior value:seed" "$@"
if [[ $TINY == 1 ]]; then
  OUTPUT_DIR=${OUTPUT_DIR:-runs/table3_tiny}; VOTES=$OUTPUT_DIR/votes.jsonl; OUTPUT_PREFIX=$OUTPUT_DIR/table3
  mkdir -p "$OUTPUT_DIR"
  say "3,000 simulated votes from known strengths -> $VOTES"
  "$PY" - "$VOTES" <<'PYEOF'
import json, math, random, sys
elo = {"model_strong": 1150.0, "model_good": 1050.0, "model_fair": 980.0, "model_weak": 820.0}  # the truth
rng, names = random.Random(0), sorted(elo)
with open(sys.argv[1], "w", encoding="utf-8") as out:
    for _ in range(3000):
        a, b = rng.sample(names, 2)
        p_a = 1 / (1 + 10 ** ((elo[b] - elo[a]) / 400))     # Bradley-Terry on the Elo scale
        winner = "tie" if rng.random() < 0.1 else ("a" if rng.random() < p_a else "b")
        out.write(json.dumps({"model_a": a, "model_b": b, "winner": winner}) + "\n")
PYEOF
else
  [[ -n $VOTES && -n $OUTPUT_PREFIX ]] || usage_error "need --votes and --output_prefix, or --tiny (see --help)"
  mkdir -p "$(dirname "$OUTPUT_PREFIX")"
fi
chatflow elo "$VOTES" --k "$K" --initial "$INITIAL" --bootstrap "$BOOTSTRAP" --prior "$PRIOR" --seed "$SEED" \
  --output "$OUTPUT_PREFIX"
say "Table 3: $OUTPUT_PREFIX.md; Figure 3 (win rates): ${OUTPUT_PREFIX}_win_rates.png"
