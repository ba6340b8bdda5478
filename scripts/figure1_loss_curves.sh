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
#       from the runs' logs. About 1 minute on 2 cores (the README's table).
#       --data_dir DIR runs on your own data (one folder per group, see `chatflow demo --help`); --full
#       runs the 3-seed miniature (about 15 minutes on 2 cores).
#
#   scripts/figure1_loss_curves.sh --dataset_dir DIR --model_path CKPT --output_dir DIR [--gpus 8] [--train_steps 30000]
#       [--micro_batch_size 8] [--learning_rate 2e-5] [--backend host|hf]
#       Full scale. DIR: shard directory of the Table 1 mixture (chatflow preprocess, or step 2 of
#       scripts/chatflow_full_run.sh); CKPT: the vocabulary-expanded LLaMA-2-7B (host: TencentPretrain
#       .bin from `chatflow convert hf2tp`; hf: HF directory). host = TencentPretrain + DeepSpeed ZeRO-3
#       (TENCENTPRETRAIN_HOME must be set); hf = `chatflow train` under torchrun with DeepSpeed ZeRO-3.
#       Sequence length 2048 and T_grow 5M samples come from the dataset's mixture (the paper's Table 1);
#       steps, batch size and learning rate are this script's defaults, not values restated from the paper.
#       Expected run time: two runs of TRAIN_STEPS x GPUS x BATCH x 2048 tokens each (defaults: 3.9B tokens per
#       run); at an assumed ~3k tokens/s per A100-80GB for a 7B model under ZeRO-3, about 2 days per run on
#       8 GPUs (not measured here).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; FULL=0; OUTPUT_DIR=""; DATA_DIR=""; DATASET_DIR=""; MODEL_PATH=""; GPUS=8; TRAIN_STEPS=30000; MICRO_BATCH_SIZE=8; LEARNING_RATE=2e-5
BACKEND=host
parse_flags "bool:tiny bool:full value:output_dir value:data_dir value:dataset_dir value:model_path value:gpus
             value:train_steps value:micro_batch_size value:learning_rate value:backend alias:dataset=dataset_dir
             alias:pretrained=model_path alias:steps=train_steps alias:batch_size=micro_batch_size alias:lr=learning_rate" "$@"

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

[[ -n $DATASET_DIR && -n $MODEL_PATH && -n $OUTPUT_DIR ]] || usage_error "full scale needs --dataset_dir, --model_path and --output_dir (see --help)"
[[ -f $DATASET_DIR/manifest.json ]] || die "$DATASET_DIR is not a chatflow shard directory (no manifest.json)"
make_output_dir "$OUTPUT_DIR"
SEQ=$(json_field "$DATASET_DIR/manifest.json" seq_length)
RUN_SAMPLES=$((TRAIN_STEPS * GPUS * MICRO_BATCH_SIZE))
"$PY" - "$DATASET_DIR/manifest.json" "$OUTPUT_DIR/dataset_mixture.json" <<'PYEOF'
import json, sys
from chatflow_plugin.data.mixture import write_mixture
write_mixture(json.load(open(sys.argv[1], encoding="utf-8"))["mixture"], sys.argv[2])
PYEOF
chatflow baselines --mixture "$OUTPUT_DIR/dataset_mixture.json" --run_samples "$RUN_SAMPLES" \
  --output_dir "$OUTPUT_DIR/mixtures"
SPM=$(json_field "$DATASET_DIR/manifest.json" tokenizer.path)

for run in dynamic static; do
  say "training: $run ($TRAIN_STEPS steps x $GPUS GPUs x $MICRO_BATCH_SIZE sequences)"
  if [[ $BACKEND == host ]]; then
    [[ -n ${TENCENTPRETRAIN_HOME:-} ]] || die "set TENCENTPRETRAIN_HOME to a TencentPretrain clone"
    deepspeed --num_gpus "$GPUS" "$ROOT/pretrain.py" --deepspeed --deepspeed_config "$ROOT/models/deepspeed_zero3_config.json" \
      --enable_zero3 --pretrained_model_path "$MODEL_PATH" --dataset_path "$DATASET_DIR" --spm_model_path "$SPM" \
      --config_path "$ROOT/models/llama2/7b_config.json" --output_model_path "$OUTPUT_DIR/$run" --world_size "$GPUS" \
      --data_processor dynamic_mixture --target chatflow_instruction --mixture_config "$OUTPUT_DIR/mixtures/$run.json" \
      --total_steps "$TRAIN_STEPS" --save_checkpoint_steps $((TRAIN_STEPS / 10)) --batch_size "$MICRO_BATCH_SIZE" --learning_rate "$LEARNING_RATE" \
      --report_steps 50 --deepspeed_checkpoint_activations 2>&1 | tee "$OUTPUT_DIR/$run.log"
  else
    torchrun --nproc_per_node "$GPUS" -m chatflow_plugin.cli train --dataset_dir "$DATASET_DIR" --model_path "$MODEL_PATH" \
      --mixture "$OUTPUT_DIR/mixtures/$run.json" --output_dir "$OUTPUT_DIR/$run" --train_steps "$TRAIN_STEPS" \
      --micro_batch_size "$MICRO_BATCH_SIZE" --learning_rate "$LEARNING_RATE" --warmup_steps 500 --bf16 --log_every 50 \
      --save_every $((TRAIN_STEPS / 10)) --deepspeed "$ROOT/models/hf/deepspeed_zero3_hf.json"
  fi
done
if [[ $BACKEND == host ]]; then
  chatflow figure1 --run "dynamic=$OUTPUT_DIR/dynamic.log" --run "static=$OUTPUT_DIR/static.log" \
    --tokens_per_step $((GPUS * MICRO_BATCH_SIZE * SEQ)) --output "$OUTPUT_DIR/figure1_training_loss.png"
else
  chatflow figure1 --run "dynamic=$OUTPUT_DIR/dynamic" --run "static=$OUTPUT_DIR/static" \
    --output "$OUTPUT_DIR/figure1_training_loss.png"
fi
say "Figure 1: $OUTPUT_DIR/figure1_training_loss.png (+ .csv)"
