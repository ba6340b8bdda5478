#!/usr/bin/env bash
# ChatFlow Table 3: Elo ranking of chat models from pairwise human votes.
#
#   scripts/table3_elo.sh VOTES_JSONL OUT_PREFIX
#
# VOTES_JSONL: one {"model_a": ..., "model_b": ..., "winner": "a"|"b"|"tie"} per line, in the order the votes
# were cast (online Elo depends on it; the Bradley-Terry ratings do not).
# Environment: K (online Elo K factor, default 4), INITIAL (default 1000), BOOTSTRAP (resamples, default 1000),
# PRIOR (virtual ties per model, default 0; use 1 when a model never won or never lost), SEED (default 0).
# Writes OUT_PREFIX.json, OUT_PREFIX.md (Table 3 + win-rate matrix) and OUT_PREFIX_win_rates.png.
set -euo pipefail
if [ "$#" -ne 2 ]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
mkdir -p "$(dirname "$2")"
chatflow elo "$1" \
    --k "${K:-4}" \
    --initial "${INITIAL:-1000}" \
    --bootstrap "${BOOTSTRAP:-1000}" \
    --prior "${PRIOR:-0}" \
    --seed "${SEED:-0}" \
    --output "$2"
