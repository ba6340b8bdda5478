#!/usr/bin/env bash
# Figure 2 of ChatFlow (arXiv 2405.10626): benchmark accuracy (3-shot MMLU, C-Eval, CMMLU, GAOKAO) of the
# dynamic-sampler run's intermediate checkpoints, plotted against training tokens. Every checkpoint is scored
# by `chatflow eval-curve` (the same prompts and scoring as Table 2's `chatflow eval`).
#
#   scripts/figure2_metrics_over_tokens.sh --tiny [--output_dir DIR] [--limit 3]
#       CPU, about 2 minutes: `chatflow demo --quick --stop_after mixture` for the expanded foundation and the
#       tokenized mixture (the English foundation from the cache the --tiny modes share), then a dynamic run
#       keeping a checkpoint every 10 of 40 steps, each scored on --limit questions per
#       subject of the bundled synthetic benchmark files (corpora/benchmarks, the public layouts). A model this
#       small scores near chance: the run checks the pipeline, it is no evidence about the paper's curves.
#
#   scripts/figure2_metrics_over_tokens.sh --checkpoints DIR --data_dir BENCH --output_dir DIR
#       [--tokens_per_step N] [--backend host|hf] [--limit 0]
#       Full scale. DIR holds the run's checkpoints (hf: `chatflow train`'s checkpoint-<step> folders, which
#       record their training tokens and hold their tokenizer; host: TencentPretrain/DeepSpeed checkpoint folders named by step,
#       converted here with `chatflow convert tp2hf`, and --tokens_per_step = GPUs x batch x 2048 is needed).
#       BENCH: mmlu/, ceval/, cmmlu/, gaokao/ as the benchmarks' public repositories lay them out
#       (docs/evaluation.md). Expected run time: per checkpoint, conversion ~10 min and the four benchmarks
#       ~1-2 h on one A100 for a 7B model (estimates, not measured here).
#
# Writes DIR/figure2.csv (one row per checkpoint) and DIR/figure2.png. TASKS=mmlu,ceval picks benchmarks.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; OUTPUT_DIR=""; DATA_DIR=""; LIMIT=0; CHECKPOINTS=""; TOKENS_PER_STEP=0; BACKEND=hf
TASKS=${TASKS:-mmlu,ceval,cmmlu,gaokao}
parse_flags "bool:tiny value:output_dir value:data_dir value:limit value:checkpoints value:tokens_per_step
             value:backend" "$@"

if [[ $TINY == 1 ]]; then
  OUTPUT_DIR=${OUTPUT_DIR:-runs/figure2_tiny}; DATA_DIR=${DATA_DIR:-$TINY_BENCHMARKS}; [[ $LIMIT == 0 ]] && LIMIT=3
  tiny_demo "$OUTPUT_DIR/demo" --stop_after mixture
  D=$OUTPUT_DIR/demo
  say "a dynamic run keeping a checkpoint every 10 of 40 steps -> $OUTPUT_DIR/dynamic"
  chatflow train --dataset_dir "$D/shards/mixture_train" --model_path "$D/foundation_expanded" \
    --mixture "$D/mixtures/dynamic.json" --spm_model_path "$D/tokenizer/expanded.model" --output_dir "$OUTPUT_DIR/dynamic" \
    --train_steps 40 --micro_batch_size 8 --learning_rate 3e-3 --warmup_steps 5 --save_every 10 \
    --save_total_limit 10 --log_every 10 --threads 1 --quiet >/dev/null
  CHECKPOINTS=$OUTPUT_DIR/dynamic
else
  [[ -n $CHECKPOINTS && -n $DATA_DIR && -n $OUTPUT_DIR ]] || usage_error "full scale needs --checkpoints, --data_dir and --output_dir (see --help)"
  mkdir -p "$OUTPUT_DIR"
  if [[ $BACKEND == host ]]; then
    [[ $TOKENS_PER_STEP -gt 0 ]] || die "--backend host needs --tokens_per_step"
    for ckpt in "$CHECKPOINTS"/*; do
      step=$(basename "$ckpt" | tr -dc '0-9'); [[ -n $step ]] || continue
      [[ -d $OUTPUT_DIR/hf/step$step ]] || chatflow convert tp2hf "$ckpt" "$OUTPUT_DIR/hf/step$step" --quiet
    done
    CHECKPOINTS=$OUTPUT_DIR/hf
  fi
fi
say "scoring the checkpoints of $CHECKPOINTS on $TASKS"
chatflow eval-curve --checkpoints "$CHECKPOINTS" --data_dir "$DATA_DIR" --tasks "$TASKS" --num_fewshot 3 \
  --limit "$LIMIT" --tokens_per_step "$TOKENS_PER_STEP" --output "$OUTPUT_DIR/figure2" --quiet
say "Figure 2: $OUTPUT_DIR/figure2.png (+ figure2.csv)"
