#!/usr/bin/env bash
# ChatFlow's vocabulary expansion in one go (arXiv 2405.10626, Sec. 2.2): mine the characters of a language's
# scripts (Chinese by default, as the paper; --language ja, ko, th, hi, ar, ru, vi ... from
# chatflow_plugin/languages.py) from corpora, append them and a file of symbols (the paper adds 62; for Chinese by
# default our reconstruction of them, models/vocab/chatflow_62_symbols.txt) to the model's tokenizer (a
# sentencepiece model like LLaMA-2's, or a byte-level BPE tokenizer.json like LLaMA-3's or Qwen2's), and expand the
# checkpoint's embedding and output rows with the mean of the rows of the pieces the ORIGINAL tokenizer splits each
# new character into.
#
#   scripts/expand_vocab.sh --checkpoint CKPT --output_dir OUT [options] CORPUS [CORPUS ...]
#       CKPT: an HF LLaMA-family directory (LLaMA-2/3, Mistral, Qwen2), or a TencentPretrain checkpoint (then
#       --base_model and --tp_config). CORPUS: text or .jsonl files whose characters are mined, most frequent first.
#       Writes OUT/ (the expanded checkpoint, with the expanded tokenizer files when CKPT is an HF directory),
#       the expanded tokenizer (OUT.tokenizer.model for sentencepiece, OUT.tokenizer/ for a tokenizer.json) and
#       OUT.expand_report.json. About 10 minutes for LLaMA-2-7B on a CPU (estimate).
#   scripts/expand_vocab.sh --tiny [--output_dir DIR]
#       CPU, under a minute: the English foundation of `chatflow demo --quick` (its first stages only, from the
#       foundation cache the --tiny modes share) expanded with Chinese characters mined from the bundled
#       corpora/zh_corpus and zh_inst files.
#
# Options [defaults]: --base_model [CKPT/tokenizer.model if there is one, else CKPT's tokenizer.json],
# --language [zh], --max_new_pieces [8701, the paper's count], --min_count [1], --symbols FILE (extra pieces, one
# per line, added before the mined ones; '' for none) [models/vocab/chatflow_62_symbols.txt for zh, else none],
# --strategy added_tokens|merges (byte-level BPE) [added_tokens],
# --pad_to_multiple N [], --tp_config FILE [], --dtype keep|float32|float16|bfloat16 [keep].
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; CHECKPOINT=""; OUTPUT_DIR=""; BASE_MODEL=""; MAX_NEW_PIECES=8701; MIN_COUNT=1; SYMBOLS="<default>"
PAD_TO_MULTIPLE=""; TP_CONFIG=""; DTYPE=keep; LANGUAGE=zh; STRATEGY=""
parse_flags "bool:tiny value:checkpoint value:output_dir value:base_model value:max_new_pieces value:min_count
             value:symbols value:pad_to_multiple value:tp_config value:dtype value:language value:strategy" "$@"
corpora=("${POSITIONAL[@]}")
if [[ $SYMBOLS == "<default>" ]]; then
  SYMBOLS=""; [[ $LANGUAGE == zh ]] && SYMBOLS=$ROOT/models/vocab/chatflow_62_symbols.txt
fi
if [[ $TINY == 1 ]]; then
  work=${OUTPUT_DIR:-runs/expand_vocab_tiny}
  tiny_demo "$work/demo" --stop_after foundation
  CHECKPOINT=$work/demo/foundation/final; OUTPUT_DIR=$work/expanded; MAX_NEW_PIECES=400; MIN_COUNT=2
  corpora=("$ROOT"/corpora/zh_corpus/*.jsonl "$ROOT"/corpora/zh_inst/*.jsonl)
fi
[[ -n $CHECKPOINT && -n $OUTPUT_DIR && ${#corpora[@]} -gt 0 ]] || usage_error "need --checkpoint, --output_dir and at least one CORPUS, or --tiny (see --help)"
if [[ -z $BASE_MODEL ]]; then
  BASE_MODEL=$CHECKPOINT; [[ -f $CHECKPOINT/tokenizer.model ]] && BASE_MODEL=$CHECKPOINT/tokenizer.model
fi
OUTPUT_TOKENIZER=${OUTPUT_DIR%/}.tokenizer.model                       # sentencepiece: a model file
[[ -d $BASE_MODEL || $BASE_MODEL == *.json ]] && OUTPUT_TOKENIZER=${OUTPUT_DIR%/}.tokenizer   # tokenizer.json: a folder
args=(--tokenizer "$BASE_MODEL" --output_tokenizer "$OUTPUT_TOKENIZER" --language "$LANGUAGE"
      --max_new_pieces "$MAX_NEW_PIECES" --min_count "$MIN_COUNT" --checkpoint "$CHECKPOINT"
      --output_checkpoint "$OUTPUT_DIR" --dtype "$DTYPE" --report "${OUTPUT_DIR%/}.expand_report.json")
for corpus in "${corpora[@]}"; do args+=(--corpus "$corpus"); done
[[ -n $SYMBOLS ]] && args+=(--pieces "$SYMBOLS")
[[ -n $PAD_TO_MULTIPLE ]] && args+=(--pad_to_multiple "$PAD_TO_MULTIPLE")
[[ -n $TP_CONFIG ]] && args+=(--tp_config "$TP_CONFIG")
[[ -n $STRATEGY ]] && args+=(--strategy "$STRATEGY")
chatflow expand-vocab "${args[@]}"
say "expanded checkpoint: $OUTPUT_DIR; tokenizer: $OUTPUT_TOKENIZER; report: ${OUTPUT_DIR%/}.expand_report.json"
