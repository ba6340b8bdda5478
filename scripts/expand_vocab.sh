#!/usr/bin/env bash
# ChatFlow's vocabulary expansion in one go: mine Chinese characters from corpora, append them (and an
# optional file of symbols) to a LLaMA tokenizer, and expand the checkpoint's embedding and output rows
# with sub-token means.
#
# usage: scripts/expand_vocab.sh CHECKPOINT OUTPUT CORPUS [CORPUS ...]
#   CHECKPOINT  HF LLaMA directory (with tokenizer.model), or a TencentPretrain checkpoint (then set BASE_MODEL)
#   OUTPUT      output checkpoint (directory; for a TencentPretrain state-dict file a .bin path works too)
#   CORPUS      text or .jsonl files whose Chinese characters are mined, most frequent first
#
# environment (defaults in brackets):
#   BASE_MODEL       the original sentencepiece model [CHECKPOINT/tokenizer.model]
#   TOKENIZER_OUT    where the expanded sentencepiece model goes [OUTPUT.tokenizer.model]
#   MAX_NEW_PIECES   how many mined characters to add [8701, the paper's count]
#   MIN_COUNT        a mined character must occur at least this often [1]
#   SYMBOLS_FILE     extra pieces, one per line, added before the mined ones (the paper adds 62 symbols) []
#   PAD_TO_MULTIPLE  pad the vocabulary to a multiple of this with reserved pieces [none]
#   TP_CONFIG        TencentPretrain config JSON when CHECKPOINT is a TencentPretrain checkpoint []
#   DTYPE            keep | float32 | float16 | bfloat16 [keep]
set -euo pipefail

if [ "$#" -lt 3 ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
fi
checkpoint=$1
output=$2
shift 2

base_model=${BASE_MODEL:-$checkpoint/tokenizer.model}
tokenizer_out=${TOKENIZER_OUT:-${output%/}.tokenizer.model}
args=(--base_model "$base_model" --output_model "$tokenizer_out"
      --script cjk --max_new_pieces "${MAX_NEW_PIECES:-8701}" --min_count "${MIN_COUNT:-1}"
      --checkpoint "$checkpoint" --output_checkpoint "$output" --dtype "${DTYPE:-keep}"
      --report "${output%/}.expand_report.json")
for corpus in "$@"; do
    args+=(--corpus "$corpus")
done
[ -n "${SYMBOLS_FILE:-}" ] && args+=(--pieces "$SYMBOLS_FILE")
[ -n "${PAD_TO_MULTIPLE:-}" ] && args+=(--pad_to_multiple "$PAD_TO_MULTIPLE")
[ -n "${TP_CONFIG:-}" ] && args+=(--tp_config "$TP_CONFIG")

exec chatflow expand-vocab "${args[@]}"
