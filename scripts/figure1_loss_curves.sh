#!/usr/bin/env bash
# Figure 1 of ChatFlow (arXiv 2405.10626): training loss over training tokens, dynamic data sampler vs a
# static mixture of the same data (the paper's ablation "without the dynamic data sampler"). The static
# mixture is the dynamic schedule's time-average over the run (`chatflow baselines`), so both runs draw the
# same expected samples per group and differ only in order. Training loss depends on the mix being drawn,
# so the tiny scale also reports held-out loss per group on identical windows.
#
#   scripts/figure1_loss_curves.sh --tiny [--output_dir DIR] [--data_dir DIR] [--full]
#       CPU: `chatflow demo --quick --run_kinds dynamic static two_stage` (English foundation, from the cache the
#       --tiny modes share -> vocabulary expansion -> dynamic / static / two-stage runs), then the Figure 1 plot
#       from the runs' logs. About 1-2 minutes on 2 cores.
#       --data_dir DIR runs on your own data (one folder per group, see `chatflow demo --help`); --full
#       runs the 3-seed miniature (about 15 minutes on 2 cores).
#
#   scripts/figure1_loss_curves.sh --dataset DIR --pretrained CKPT --output_dir DIR [--gpus 8] [--steps 30000]
#       [--batch_size 8] [--lr 2e-5] [--backend host|hf]
#       Full scale. DIR: shard directory of the Table 1 mixture (chatflow preprocess, or step 2 of
#       scripts/chatflow_full_run.sh); CKPT: the vocabulary-expanded LLaMA-2-7B (host: TencentPretrain
#       .bin from `chatflow convert hf2tp`; hf: HF directory). host = TencentPretrain + DeepSpeed ZeRO-3
#       (TENCENTPRETRAIN_HOME must be set); hf = `chatflow train` under torchrun with DeepSpeed ZeRO-3.
#       Sequence length 2048 and T_grow 5M samples come from the dataset's mixture (the paper's Table 1);
#       steps, batch size and learning rate are this script's defaults, not values restated from the paper.
#       Expected run time: two runs of STEPS x GPUS x BATCH x 2048 tokens each (defaults: 3.9B tokens per
#       run); at an assumed ~3k tokens/s per A100-80GB for a 7B model under ZeRO-3, about 2 days per run on
#       8 GPUs (not measured here).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; FULL=0; OUTPUT_DIR=""; DATA_DIR=""; DATASET=""; PRETRAINED=""; GPUS=8; STEPS=30000; BATCH_SIZE=8; LR=2e-5
BACKEND=host
parse_flags "bool:tiny bool:full value:output_dir value:data_dir value:dataset value:pretrained value:gpus
             value:steps value:batch_size value:lr value:backend" "$@"

if [[ $TINY == 1 ]]; then
  OUTPUT_DIR=${OUTPUT_DIR:-runs/figure1_tiny}
  args=()
  [[ $FULL == 0 ]] && args+=(--quick)
  [[ -n $DATA_DIR ]] && args+=(--data_dir "$DATA_DIR")
  say "chatflow demo ${args[*]} --output_dir $OUTPUT_DIR/demo"
  chatflow demo --output_dir "$OUTPUT_DIR/demo" --foundation_cache "$FOUNDATION_CACHE" \
    --run_kinds dynamic static two_stage "${args[@]}"
  runs=()
  for run in dynamic static two_stage; do runs+=(--run "$run=$OUTPUT_DIR/demo/runs/${run}_s0"); done
  chatflow figure1 "${runs[@]}" --output "$OUTPUT_DIR/figure1_training_loss.png"
  say "Figure 1 (training loss): $OUTPUT_DIR/figure1_training_loss.png (+ .csv)"
  say "held-out loss per group, the comparable measure: $OUTPUT_DIR/demo/report/heldout_per_group.png, report.md"
  exit 0
fi

[[ -n $DATASET && -n $PRETRAINED && -n $OUTPUT_DIR ]] || usage_error "full scale needs --dataset, --pretrained and --output_dir (see --help)"
[[ -f $DATASET/manifest.json ]] || die "$DATASET is not a chatflow shard directory (no manifest.json)"
mkdir -p "$OUTPUT_DIR"
SEQ=$(json_field "$DATASET/manifest.json" seq_length)
RUN_SAMPLES=$((STEPS * GPUS * BATCH_SIZE))
"$PY" - "$DATASET/manifest.json" "$OUTPUT_DIR/dataset_mixture.json" <<'PYEOF'
import json, sys
from chatflow_plugin.data.mixture import write_mixture
write_mixture(json.load(open(sys.argv[1], encoding="utf-8"))["mixture"], sys.argv[2])
PYEOF
chatflow baselines --mixture "$OUTPUT_DIR/dataset_mixture.json" --run_samples "$RUN_SAMPLES" \
  --output_dir "$OUTPUT_DIR/mixtures"
SPM=$(json_field "$DATASET/manifest.json" tokenizer.path)

for run in dynamic static; do
  say "training: $run ($STEPS steps x $GPUS GPUs x $BATCH_SIZE sequences)"
  if [[ $BACKEND == host ]]; then
    [[ -n ${TENCENTPRETRAIN_HOME:-} ]] || die "set TENCENTPRETRAIN_HOME to a TencentPretrain clone"
    deepspeed --num_gpus "$GPUS" "$ROOT/pretrain.py" --deepspeed --deepspeed_config "$ROOT/models/deepspeed_zero3_config.json" \
      --enable_zero3 --pretrained_model_path "$PRETRAINED" --dataset_path "$DATASET" --spm_model_path "$SPM" \
      --config_path "$ROOT/models/llama2/7b_config.json" --output_model_path "$OUTPUT_DIR/$run" --world_size "$GPUS" \
      --data_processor dynamic_mixture --target chatflow_instruction --mixture_config "$OUTPUT_DIR/mixtures/$run.json" \
      --total_steps "$STEPS" --save_checkpoint_steps $((STEPS / 10)) --batch_size "$BATCH_SIZE" --learning_rate "$LR" \
      --report_steps 50 --deepspeed_checkpoint_activations 2>&1 | tee "$OUTPUT_DIR/$run.log"
  else
    torchrun --nproc_per_node "$GPUS" -m chatflow_plugin.cli train --dataset_dir "$DATASET" --model_path "$PRETRAINED" \
      --mixture "$OUTPUT_DIR/mixtures/$run.json" --output_dir "$OUTPUT_DIR/$run" --train_steps "$STEPS" \
      --micro_batch_size "$BATCH_SIZE" --learning_rate "$LR" --warmup_steps 500 --bf16 --log_every 50 \
      --save_every $((STEPS / 10)) --deepspeed "$ROOT/models/hf/deepspeed_zero3_hf.json"
  fi
done
if [[ $BACKEND == host ]]; then
  chatflow figure1 --run "dynamic=$OUTPUT_DIR/dynamic.log" --run "static=$OUTPUT_DIR/static.log" \
    --tokens_per_step $((GPUS * BATCH_SIZE * SEQ)) --output "$OUTPUT_DIR/figure1_training_loss.png"
else
  chatflow figure1 --run "dynamic=$OUTPUT_DIR/dynamic" --run "static=$OUTPUT_DIR/static" \
    --output "$OUTPUT_DIR/figure1_training_loss.png"
fi
say "Figure 1: $OUTPUT_DIR/figure1_training_loss.png (+ .csv)"
