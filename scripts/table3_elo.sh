#!/usr/bin/env bash
# ChatFlow Table 3 and Figure 3: Elo ranking and non-tie win rates of chat models from pairwise human votes.
#
#   scripts/table3_elo.sh --votes VOTES_JSONL --output_prefix PREFIX
#       Votes -> PREFIX.json, PREFIX.md (Table 3 + win-rate matrix), PREFIX_win_rates.png and
#       PREFIX_non_tie_win_rates.png (Figure 3). VOTES_JSONL: one {"model_a", "model_b", "winner"} per line in
#       voting order (online Elo depends on it; Bradley-Terry does not), e.g. the file `chatflow arena` writes.
#       Seconds to run.
#   scripts/table3_elo.sh --arena --votes VOTES_JSONL MODEL_DIR MODEL_DIR [MODEL_DIR ...]
#       Collect the votes: serves the blind arena (http://127.0.0.1:7860, --host/--port to change) until Ctrl-C;
#       people chat with two anonymous models and vote. Then run the first form. Restarting continues the file.
#   scripts/table3_elo.sh --tiny [--output_dir DIR]
#       The whole path on a CPU in about 35 s: two tiny random LLaMAs (made here, with a tokenizer trained
#       on corpora/), the arena served on a free 127.0.0.1 port, --rounds (12) rounds voted through its page's
#       endpoints by a scripted voter (the longer answer wins), the server stopped, then Table 3 and Figure 3
#       from the votes. Checks the pipeline; random models and a scripted voter are not an evaluation.
#
# Options: --k (online Elo K factor, 4), --initial (1000), --bootstrap (resamples, 1000; --tiny 200), --prior
# (virtual ties per model, 0; --tiny 1; use 1 when a model never won or never lost), --seed (0).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; ARENA=0; VOTES=""; OUTPUT_PREFIX=""; OUTPUT_DIR=""; K=4; INITIAL=1000; BOOTSTRAP=""; PRIOR=""; SEED=0
HOST=127.0.0.1; PORT=7860; ROUNDS=12
parse_flags "bool:tiny bool:arena positional:MODEL_DIR:arena value:votes value:output_prefix value:output_dir value:k value:initial
             value:bootstrap value:prior value:seed value:host value:port value:rounds" "$@"
if [[ $TINY == 1 ]]; then BOOTSTRAP=${BOOTSTRAP:-200}; PRIOR=${PRIOR:-1}; else BOOTSTRAP=${BOOTSTRAP:-1000}; PRIOR=${PRIOR:-0}; fi

if [[ $ARENA == 1 ]]; then
  [[ -n $VOTES && ${#POSITIONAL[@]} -ge 2 ]] || usage_error "--arena needs --votes and at least two MODEL_DIRs"
  exec "$PY" -m chatflow_plugin.cli arena --model_path "${POSITIONAL[@]}" --votes "$VOTES" --host "$HOST" --port "$PORT"
fi

if [[ $TINY == 1 ]]; then
  OUTPUT_DIR=${OUTPUT_DIR:-runs/table3_tiny}; VOTES=$OUTPUT_DIR/votes.jsonl; OUTPUT_PREFIX=$OUTPUT_DIR/table3
  make_output_dir "$OUTPUT_DIR"
  rm -f "$VOTES"
  say "tokenizer on corpora/ and two tiny random LLaMAs -> $OUTPUT_DIR/models"
  tiny_models "$OUTPUT_DIR/models" 1000 tiny-chat-a tiny-chat-b
  say "serving the arena on 127.0.0.1 (log: $OUTPUT_DIR/arena.log)"
  # "$PY" itself, not the `chatflow` function: $! must be the server's own pid for the kill below
  OMP_NUM_THREADS=1 "$PY" -m chatflow_plugin.cli arena --model_path "$OUTPUT_DIR/models/tiny-chat-a" "$OUTPUT_DIR/models/tiny-chat-b" \
    --votes "$VOTES" --port 0 --max_new_tokens 32 --device cpu --elo_bootstrap 100 2> "$OUTPUT_DIR/arena.log" &
  server=$!
  trap 'kill -TERM $server 2>/dev/null || true' EXIT
  url=""
  for _ in $(seq 300); do
    url=$(sed -n 's/^chatflow arena: serving \([^ ]*\) .*/\1/p' "$OUTPUT_DIR/arena.log")
    [[ -n $url ]] && break
    kill -0 $server 2>/dev/null || { cat "$OUTPUT_DIR/arena.log" >&2; die "the arena stopped before serving"; }
    sleep 1
  done
  [[ -n $url ]] || die "the arena did not start (see $OUTPUT_DIR/arena.log)"
  say "voting $ROUNDS rounds through $url"
  chatflow arena-smoke "$url" --rounds "$ROUNDS" | tee "$OUTPUT_DIR/rounds.txt"
  kill -TERM $server
  wait $server || true
  trap - EXIT
else
  [[ -n $VOTES && -n $OUTPUT_PREFIX ]] || usage_error "need --votes and --output_prefix, --arena, or --tiny (see --help)"
fi
make_output_dir "$(dirname "$OUTPUT_PREFIX")"
chatflow elo "$VOTES" --k "$K" --initial "$INITIAL" --bootstrap "$BOOTSTRAP" --prior "$PRIOR" --seed "$SEED" \
  --output_prefix "$OUTPUT_PREFIX"
say "Table 3: $OUTPUT_PREFIX.md; Figure 3 (non-tie win rates): ${OUTPUT_PREFIX}_non_tie_win_rates.png"
