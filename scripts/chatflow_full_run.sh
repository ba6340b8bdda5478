#!/usr/bin/env bash
# The whole ChatFlow recipe (arXiv 2405.10626, Sec. 2): expand LLaMA-2-7B's vocabulary with Chinese characters
# (the paper: 8,701 characters + 62 symbols; new embedding/output rows = mean of the rows of the sub-tokens
# the original tokenizer splits them into), tokenize the Table 1 mixture, continue training with the
# dynamic data sampler (T_grow = 5M samples of 2048 tokens), and convert the result to HuggingFace format
# for release.
#
#   scripts/chatflow_full_run.sh --tiny [--output_dir DIR] [--data_dir DIR] [--full]
#       CPU, no host: `chatflow demo --quick` does the same steps in miniature with the HuggingFace backend
#       (English tokenizer and foundation -> expansion -> dynamic/static/two-stage -> HF release ->
#       generation). About a minute on 2 cores; --data_dir DIR runs on your own data (one folder per group, see
#       `chatflow demo --help`); --full runs the 3-seed miniature (about 15 minutes on 2 cores, docs/demo.md).
#
#   scripts/chatflow_full_run.sh --llama2 HF_DIR --data_root DIR --output_dir DIR [--symbols FILE] [--gpus 8]
#       [--steps 60000] [--batch_size 8] [--lr 2e-5] [--workers 32] [--backend host|hf]
#       Full scale. HF_DIR: LLaMA-2-7B in HuggingFace format (with tokenizer.model); DIR: the Table 1 sources
#       laid out as models/mixtures/chatflow_table1.json names them (or edit that file); --symbols: a file
#       of extra pieces (the paper's 62 symbols), one per line. host = TencentPretrain + DeepSpeed ZeRO-3
#       (TENCENTPRETRAIN_HOME must point to a clone); hf = `chatflow train` under torchrun + DeepSpeed.
#       Steps, batch size and learning rate are this script's defaults (60k steps x 8 GPUs x 8 x 2048 =
#       7.9B tokens, past T_grow), not values restated from the paper.
#       Expected run time (estimates, not measured here): expansion ~10 min (CPU); tokenization of ~50 GB
#       with 32 workers ~2-4 h; training ~4 days on 8 A100-80GB at an assumed ~3k tokens/s/GPU; conversion
#       ~15 min.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; FULL=0; OUTPUT_DIR=""; DATA_DIR=""; LLAMA2=""; DATA_ROOT=""; SYMBOLS=""; GPUS=8; STEPS=60000; BATCH_SIZE=8
LR=2e-5; WORKERS=32; BACKEND=host
parse_flags "bool:tiny bool:full value:output_dir value:data_dir value:llama2 value:data_root value:symbols value:gpus
             value:steps value:batch_size value:lr value:workers value:backend" "$@"

if [[ $TINY == 1 ]]; then
  OUTPUT_DIR=${OUTPUT_DIR:-runs/chatflow_tiny}
  args=()
  [[ $FULL == 0 ]] && args+=(--quick)
  [[ -n $DATA_DIR ]] && args+=(--data_dir "$DATA_DIR")
  say "chatflow demo ${args[*]} --output_dir $OUTPUT_DIR"
  chatflow demo --output_dir "$OUTPUT_DIR" "${args[@]}"
  say "released HF model: $OUTPUT_DIR/release; report: $OUTPUT_DIR/report/report.md"
  exit 0
fi

[[ -n $LLAMA2 && -n $DATA_ROOT && -n $OUTPUT_DIR ]] || usage_error "full scale needs --llama2, --data_root and --output_dir (see --help)"
[[ -f $LLAMA2/tokenizer.model && -f $LLAMA2/config.json ]] || die "$LLAMA2: expected an HF LLaMA-2 directory with tokenizer.model"
mkdir -p "$OUTPUT_DIR"
OUT=$OUTPUT_DIR; LLAMA=$LLAMA2; BATCH=$BATCH_SIZE
MIXTURE=$ROOT/models/mixtures/chatflow_table1.json
say "1/5 vocabulary expansion: mine Chinese characters from the Chinese sources, sub-token-mean rows"
if [[ ! -d $OUT/llama2_expanded_hf ]]; then
  mapfile -t ZH < <(mixture_files "$MIXTURE" "$DATA_ROOT" zh)
  args=(--base_model "$LLAMA/tokenizer.model" --output_model "$OUT/tokenizer.model" --script cjk
        --max_new_pieces 8701 --checkpoint "$LLAMA" --output_checkpoint "$OUT/llama2_expanded_hf")
  for f in "${ZH[@]}"; do args+=(--corpus "$f"); done
  [[ -n $SYMBOLS ]] && args+=(--pieces "$SYMBOLS")
  chatflow expand-vocab "${args[@]}"
fi

say "2/5 tokenize the Table 1 mixture with the expanded tokenizer"
if [[ ! -f $OUT/dataset/manifest.json ]]; then
  chatflow preprocess --mixture "$MIXTURE" --data_root "$DATA_ROOT" --spm_model_path "$OUT/tokenizer.model" \
    --output_dir "$OUT/dataset" --workers "$WORKERS"
fi

say "3/5 continued training with the dynamic sampler ($BACKEND backend)"
if [[ $BACKEND == host ]]; then
  [[ -n ${TENCENTPRETRAIN_HOME:-} ]] || die "set TENCENTPRETRAIN_HOME to a TencentPretrain clone"
  [[ -f $OUT/llama2_expanded_tp/tencentpretrain_model.bin ]] || \
    chatflow convert hf2tp "$OUT/llama2_expanded_hf" "$OUT/llama2_expanded_tp"
  deepspeed --num_gpus "$GPUS" "$ROOT/pretrain.py" --deepspeed --deepspeed_config "$ROOT/models/deepspeed_zero3_config.json" \
    --enable_zero3 --pretrained_model_path "$OUT/llama2_expanded_tp/tencentpretrain_model.bin" \
    --dataset_path "$OUT/dataset" --spm_model_path "$OUT/tokenizer.model" --config_path "$ROOT/models/llama2/7b_config.json" \
    --output_model_path "$OUT/chatflow_tp" --world_size "$GPUS" --data_processor dynamic_mixture \
    --target chatflow_instruction --total_steps "$STEPS" --save_checkpoint_steps 5000 --batch_size "$BATCH" \
    --learning_rate "$LR" --report_steps 50 --deepspeed_checkpoint_activations 2>&1 | tee -a "$OUT/train.log"
  say "4/5 convert the final DeepSpeed checkpoint to HuggingFace format"
  chatflow convert tp2hf "$OUT/chatflow_tp" "$OUT/chatflow_hf" --tokenizer "$OUT/tokenizer.model" --force
else
  torchrun --nproc_per_node "$GPUS" -m chatflow_plugin.cli train --dataset_dir "$OUT/dataset" \
    --model_path "$OUT/llama2_expanded_hf" --spm_model_path "$OUT/tokenizer.model" --output_dir "$OUT/chatflow_run" \
    --train_steps "$STEPS" --micro_batch_size "$BATCH" --learning_rate "$LR" --warmup_steps 500 --bf16 \
    --log_every 50 --save_every 5000 --deepspeed "$ROOT/models/hf/deepspeed_zero3_hf.json"
  say "4/5 the HF backend trains in HuggingFace format already: release $OUT/chatflow_run/final"
  rm -rf "$OUT/chatflow_hf" && cp -r "$OUT/chatflow_run/final" "$OUT/chatflow_hf"
fi

say "5/5 check the release loads with transformers and its tokenizer matches sentencepiece"
"$PY" - "$OUT/chatflow_hf" "$OUT/tokenizer.model" <<'PYEOF'
import sys
import sentencepiece as spm
from transformers import AutoConfig, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1], local_files_only=True)
sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
text = "### Instruction:\n介绍一下长城。### Response: "
assert tok(text)["input_ids"] == [sp.bos_id()] + sp.encode(text), "HF tokenizer differs from sentencepiece"
print("release ok:", sys.argv[1], "vocab", AutoConfig.from_pretrained(sys.argv[1]).vocab_size)
PYEOF
say "done: $OUT/chatflow_hf (score it with scripts/table2_benchmarks.sh or chatflow eval)"
