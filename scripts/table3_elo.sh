#!/usr/bin/env bash
# ChatFlow Table 3 and Figure 3: Elo ranking and non-tie win rates of chat models from pairwise human votes.
#
#   scripts/table3_elo.sh VOTES_JSONL OUT_PREFIX
#       Votes -> OUT_PREFIX.json, OUT_PREFIX.md (Table 3 + win-rate matrix), OUT_PREFIX_win_rates.png and
#       OUT_PREFIX_non_tie_win_rates.png (Figure 3). VOTES_JSONL: one {"model_a", "model_b", "winner"} per line
#       in voting order, e.g. the file `chatflow arena` writes.
#
#   scripts/table3_elo.sh --arena VOTES_JSONL MODEL_DIR MODEL_DIR [MODEL_DIR ...]
#       Collect the votes: serves the blind arena (http://127.0.0.1:${PORT:-7860}) until Ctrl-C; people chat with
#       two anonymous models and vote. Then run the first form on VOTES_JSONL. Restarting continues the file.
#
#   scripts/table3_elo.sh --tiny [--output DIR]
#       The whole path on a CPU in about a minute: two tiny random LLaMAs (made here, with a tokenizer trained
#       on corpora/), the arena served on a free 127.0.0.1 port, ROUNDS (default 12) rounds voted through its
#       page's endpoints by a scripted voter (the longer answer wins), the server stopped, then Table 3 and
#       Figure 3 from the votes. Checks the pipeline; random models and a scripted voter are not an evaluation.
#
# Environment: K (online Elo K factor, default 4), INITIAL (default 1000), BOOTSTRAP (resamples, default 1000),
# PRIOR (virtual ties per model, default 0; use 1 when a model never won or never lost), SEED (default 0),
# PORT and HOST (--arena), ROUNDS (--tiny).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
chatflow() { "$PY" -m chatflow_plugin.cli "$@"; }
say() { echo "[table3 $(date -u +%H:%M:%S)] $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

elo() {   # VOTES OUT_PREFIX
    mkdir -p "$(dirname "$2")"
    chatflow elo "$1" --k "${K:-4}" --initial "${INITIAL:-1000}" --bootstrap "${BOOTSTRAP:-1000}" \
        --prior "${PRIOR:-0}" --seed "${SEED:-0}" --output "$2"
}

case "${1:-}" in
  --arena)
    [[ $# -ge 4 ]] || { usage; exit 2; }
    votes=$2; shift 2
    exec "$PY" -m chatflow_plugin.cli arena --models "$@" --votes "$votes" --host "${HOST:-127.0.0.1}" \
        --port "${PORT:-7860}"
    ;;
  --tiny)
    OUT=runs/table3_tiny
    shift
    while [[ $# -gt 0 ]]; do
      case "$1" in
        --output) OUT=$2; shift 2 ;;
        *) echo "table3_elo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
      esac
    done
    mkdir -p "$OUT"
    rm -f "$OUT/votes.jsonl"
    say "tokenizer on corpora/ and two tiny random LLaMAs -> $OUT/models"
    "$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from chatflow_plugin.convert import write_hf_tokenizer_files
out = Path(sys.argv[1])
text = out / "spm_text.txt"
with open(text, "w", encoding="utf-8") as handle:
    for path in sorted(Path("corpora").glob("*/*.jsonl")):
        for line in open(path, encoding="utf-8"):
            record = json.loads(line)
            for key in ("text", "en", "zh", "instruction", "output"):
                if isinstance(record.get(key), str) and record[key].strip():
                    handle.write(record[key].replace("\n", " ") + "\n")
spm.SentencePieceTrainer.train(
    input=str(text), model_prefix=str(out / "spm"), vocab_size=1000, model_type="bpe", byte_fallback=True,
    character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, split_digits=True, num_threads=2,
    minloglevel=2, add_dummy_prefix=True, input_sentence_size=20000, shuffle_input_sentence=True)
vocab = spm.SentencePieceProcessor(model_file=str(out / "spm.model")).get_piece_size()
for seed, name in enumerate(("tiny-chat-a", "tiny-chat-b")):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(out / "models" / name)
    bad = write_hf_tokenizer_files(out / "spm.model", out / "models" / name, model_max_length=512)
    assert not bad, bad
EOF
    say "serving the arena on 127.0.0.1 (log: $OUT/arena.log)"
    OMP_NUM_THREADS=1 "$PY" -m chatflow_plugin.cli arena --models "$OUT/models/tiny-chat-a" "$OUT/models/tiny-chat-b" \
        --votes "$OUT/votes.jsonl" --port 0 --max_new_tokens 32 --device cpu --elo_bootstrap 100 \
        2> "$OUT/arena.log" &
    server=$!
    trap 'kill -TERM $server 2>/dev/null || true' EXIT
    url=""
    for _ in $(seq 300); do
      url=$(sed -n 's/^chatflow arena: serving \([^ ]*\) .*/\1/p' "$OUT/arena.log")
      [[ -n $url ]] && break
      kill -0 $server 2>/dev/null || { cat "$OUT/arena.log" >&2; exit 1; }
      sleep 1
    done
    [[ -n $url ]] || { echo "table3_elo.sh: the arena did not start (see $OUT/arena.log)" >&2; exit 1; }
    say "voting ${ROUNDS:-12} rounds through $url"
    "$PY" -m chatflow_plugin.evaluation.arena.client "$url" --rounds "${ROUNDS:-12}" | tee "$OUT/rounds.txt"
    kill -TERM $server
    wait $server || true
    trap - EXIT
    say "Table 3 and Figure 3 from $OUT/votes.jsonl"
    PRIOR=${PRIOR:-1} BOOTSTRAP=${BOOTSTRAP:-200} elo "$OUT/votes.jsonl" "$OUT/table3"
    ;;
  -h|--help|"")
    usage; [[ -n ${1:-} ]] && exit 0 || exit 2 ;;
  *)
    [[ $# -eq 2 ]] || { usage; exit 2; }
    elo "$1" "$2"
    ;;
esac
