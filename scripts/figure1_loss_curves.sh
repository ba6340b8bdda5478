#!/usr/bin/env bash
# Figure 1 of ChatFlow (arXiv 2405.10626): training loss over training tokens, dynamic data sampler vs a
# static mixture of the same data (the paper's ablation "without the dynamic data sampler"). The static
# mixture is the dynamic schedule's time-average over the run (python -m chatflow_plugin.baselines), so
# both runs draw the same expected samples per group and differ only in order. Training loss depends on
# the mix being drawn, so the tiny scale also reports held-out loss per group on identical windows.
#
#   scripts/figure1_loss_curves.sh --tiny [--output DIR] [--data_dir DIR]
#       CPU: `chatflow demo --quick` (English foundation -> vocabulary expansion -> dynamic / static /
#       two-stage runs), then the Figure 1 plot from the runs' logs. About 1-5 minutes on 2 cores.
#       --data_dir ../shared/data (with `--full` for the 3-seed miniature, 25-40 minutes) uses real data.
#
#   scripts/figure1_loss_curves.sh --dataset DIR --pretrained CKPT --output DIR [--gpus 8] [--steps 30000]
#       [--batch_size 8] [--lr 2e-5] [--backend host|hf]
#       Full scale. DIR: shard directory of the Table 1 mixture (chatflow preprocess, or step 3 of
#       scripts/chatflow_full_run.sh); CKPT: the vocabulary-expanded LLaMA-2-7B (host: TencentPretrain
#       .bin from `chatflow convert hf2tp`; hf: HF directory). host = TencentPretrain + DeepSpeed ZeRO-3
#       (TENCENTPRETRAIN_HOME must be set); hf = `chatflow train` under torchrun with DeepSpeed ZeRO-3.
#       Sequence length 2048 and T_grow 5M samples come from the dataset's mixture (the paper's Table 1);
#       steps, batch size and learning rate are this script's defaults, not values restated from the paper.
#       Expected run time: two runs of STEPS x GPUS x BATCH x 2048 tokens each (defaults: 3.9B tokens per
#       run); at an assumed ~3k tokens/s per A100-80GB for a 7B model under ZeRO-3, about 2 days per run on
#       8 GPUs (not measured here).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TINY=0; FULL_MINIATURE=0; OUT=""; DATA_DIR=""; DATASET=""; PRETRAINED=""; GPUS=8; STEPS=30000; BATCH=8; LR=2e-5
BACKEND=host
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tiny) TINY=1; shift ;;
    --full) FULL_MINIATURE=1; shift ;;
    --output) OUT=$2; shift 2 ;;
    --data_dir) DATA_DIR=$2; shift 2 ;;
    --dataset) DATASET=$2; shift 2 ;;
    --pretrained) PRETRAINED=$2; shift 2 ;;
    --gpus) GPUS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --batch_size) BATCH=$2; shift 2 ;;
    --lr) LR=$2; shift 2 ;;
    --backend) BACKEND=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "figure1_loss_curves.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
chatflow() { "$PY" -m chatflow_plugin.cli "$@"; }
say() { echo "[figure1 $(date -u +%H:%M:%S)] $*" >&2; }

if [[ $TINY == 1 ]]; then
  OUT=${OUT:-runs/figure1_tiny}
  args=(--output_dir "$OUT/demo")
  [[ $FULL_MINIATURE == 0 ]] && args+=(--quick)
  [[ -n $DATA_DIR ]] && args+=(--data_dir "$DATA_DIR")
  chatflow demo "${args[@]}"
  runs=()
  for run in dynamic static two_stage; do runs+=(--run "$run=$OUT/demo/runs/${run}_s0"); done
  "$PY" -m chatflow_plugin.miniature figure1 "${runs[@]}" --output "$OUT/figure1_training_loss.png"
  say "Figure 1 (training loss): $OUT/figure1_training_loss.png (+ .csv)"
  say "held-out loss per group, the comparable measure: $OUT/demo/report/heldout_per_group.png, report.md"
  exit 0
fi

[[ -n $DATASET && -n $PRETRAINED && -n $OUT ]] || { echo "full scale needs --dataset, --pretrained and --output (see --help)" >&2; exit 2; }
[[ -f $DATASET/manifest.json ]] || { echo "$DATASET is not a chatflow shard directory (no manifest.json)" >&2; exit 2; }
mkdir -p "$OUT"
SEQ=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['seq_length'])" "$DATASET/manifest.json")
RUN_SAMPLES=$((STEPS * GPUS * BATCH))
"$PY" - "$DATASET/manifest.json" "$OUT/dataset_mixture.json" <<'PYEOF'
import json, sys
json.dump(json.load(open(sys.argv[1]))["mixture"], open(sys.argv[2], "w"), indent=2, ensure_ascii=False)
PYEOF
"$PY" -m chatflow_plugin.baselines --mixture "$OUT/dataset_mixture.json" --run_samples "$RUN_SAMPLES" \
  --output_dir "$OUT/mixtures"
SPM=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['tokenizer']['path'])" "$DATASET/manifest.json")

for run in dynamic static; do
  say "training: $run ($STEPS steps x $GPUS GPUs x $BATCH sequences)"
  if [[ $BACKEND == host ]]; then
    [[ -n ${TENCENTPRETRAIN_HOME:-} ]] || { echo "set TENCENTPRETRAIN_HOME to a TencentPretrain clone" >&2; exit 2; }
    deepspeed --num_gpus "$GPUS" pretrain.py --deepspeed --deepspeed_config models/deepspeed_zero3_config.json \
      --enable_zero3 --pretrained_model_path "$PRETRAINED" --dataset_path "$DATASET" --spm_model_path "$SPM" \
      --config_path models/llama2/7b_config.json --output_model_path "$OUT/$run" --world_size "$GPUS" \
      --data_processor dynamic_mixture --target chatflow_instruction --mixture_config "$OUT/mixtures/$run.json" \
      --total_steps "$STEPS" --save_checkpoint_steps $((STEPS / 10)) --batch_size "$BATCH" --learning_rate "$LR" \
      --report_steps 50 --deepspeed_checkpoint_activations 2>&1 | tee "$OUT/$run.log"
  else
    torchrun --nproc_per_node "$GPUS" -m chatflow_plugin.cli train --dataset_dir "$DATASET" --model_path "$PRETRAINED" \
      --mixture "$OUT/mixtures/$run.json" --output_dir "$OUT/$run" --train_steps "$STEPS" \
      --micro_batch_size "$BATCH" --learning_rate "$LR" --warmup_steps 500 --bf16 --log_every 50 \
      --save_every $((STEPS / 10)) --deepspeed models/hf/deepspeed_zero3_hf.json
  fi
done
if [[ $BACKEND == host ]]; then
  "$PY" -m chatflow_plugin.miniature figure1 --run "dynamic=$OUT/dynamic.log" --run "static=$OUT/static.log" \
    --tokens_per_step $((GPUS * BATCH * SEQ)) --output "$OUT/figure1_training_loss.png"
else
  "$PY" -m chatflow_plugin.miniature figure1 --run "dynamic=$OUT/dynamic" --run "static=$OUT/static" \
    --output "$OUT/figure1_training_loss.png"
fi
say "Figure 1: $OUT/figure1_training_loss.png (+ .csv)"
