#!/usr/bin/env bash
# Figure 2 of ChatFlow (arXiv 2405.10626): benchmark accuracy (3-shot MMLU, C-Eval, CMMLU, GAOKAO) of
# intermediate checkpoints of the dynamic-sampler run, plotted against training tokens. Every checkpoint
# is scored by `chatflow eval` (the same prompts and scoring as Table 2) and the points are plotted by
# `python -m chatflow_plugin.miniature figure2`.
#
#   scripts/figure2_metrics_over_tokens.sh --tiny [--output DIR] [--bench_dir DIR] [--limit 3]
#       CPU: `chatflow demo --quick` for the expanded foundation and the tokenized mixture, then a dynamic
#       run keeping a checkpoint every 10 of 40 steps, each scored on --limit questions per subject (3 by default).
#       Benchmarks default to ../shared/data/benchmarks (the public layouts: mmlu/, ceval/, cmmlu/, gaokao/).
#       A few minutes on 2 cores. A model this small scores at chance: the run checks the pipeline, it is
#       not evidence about the paper's curves.
#
#   scripts/figure2_metrics_over_tokens.sh --checkpoints DIR --bench_dir DIR --output DIR
#       [--tokens_per_step N] [--backend host|hf] [--limit 0]
#       Full scale: DIR holds the run's checkpoints (host: TencentPretrain/DeepSpeed checkpoint folders
#       named by step, converted with `chatflow convert tp2hf`; hf: `chatflow train` checkpoint-<step>
#       folders). tokens_per_step = GPUs x batch x 2048 for host runs. Expected run time: per checkpoint,
#       conversion ~10 min and the four benchmarks ~1-2 h on one A100 for a 7B model (not measured here).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TINY=0; OUT=""; BENCH="../shared/data/benchmarks"; LIMIT=""; CKPTS=""; TOKENS_PER_STEP=0; BACKEND=hf
TASKS=${TASKS:-mmlu,ceval,cmmlu,gaokao}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tiny) TINY=1; shift ;;
    --output) OUT=$2; shift 2 ;;
    --bench_dir) BENCH=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --checkpoints) CKPTS=$2; shift 2 ;;
    --tokens_per_step) TOKENS_PER_STEP=$2; shift 2 ;;
    --backend) BACKEND=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "figure2_metrics_over_tokens.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
chatflow() { "$PY" -m chatflow_plugin.cli "$@"; }
say() { echo "[figure2 $(date -u +%H:%M:%S)] $*" >&2; }
[[ -d $BENCH ]] || { echo "benchmark folder $BENCH not found (pass --bench_dir with mmlu/ ceval/ cmmlu/ gaokao/)" >&2; exit 2; }

models=(); names=(); tokens=()
if [[ $TINY == 1 ]]; then
  OUT=${OUT:-runs/figure2_tiny}; LIMIT=${LIMIT:-3}
  chatflow demo --quick --skip_generation --output_dir "$OUT/demo"
  D=$OUT/demo
  chatflow train --dataset_dir "$D/shards/mixture_train" --model_path "$D/foundation_expanded" \
    --mixture "$D/mixtures/dynamic.json" --spm_model_path "$D/tokenizer/expanded.model" --output_dir "$OUT/dynamic" \
    --train_steps 40 --micro_batch_size 8 --learning_rate 3e-3 --warmup_steps 5 --save_every 10 \
    --save_total_limit 10 --log_every 10 --threads 1 --quiet >/dev/null
  SEQ=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['seq_length'])" "$D/shards/mixture_train/manifest.json")
  models+=("$D/foundation_expanded"); names+=("step0"); tokens+=(0)
  for ckpt in $(ls -d "$OUT"/dynamic/checkpoint-* | sort -t- -k2 -n); do
    step=${ckpt##*-}
    cp "$D"/foundation_expanded/tokenizer* "$D"/foundation_expanded/special_tokens_map.json "$ckpt"/ 2>/dev/null || true
    models+=("$ckpt"); names+=("step$step"); tokens+=($((step * 8 * SEQ)))
  done
else
  [[ -n $CKPTS && -n $OUT ]] || { echo "full scale needs --checkpoints and --output (see --help)" >&2; exit 2; }
  mkdir -p "$OUT"
  for ckpt in $(ls -d "$CKPTS"/* | sort -V); do
    step=$(basename "$ckpt" | tr -dc '0-9')
    [[ -n $step ]] || continue
    if [[ $BACKEND == host ]]; then
      [[ $TOKENS_PER_STEP -gt 0 ]] || { echo "--backend host needs --tokens_per_step" >&2; exit 2; }
      [[ -d $OUT/hf/step$step ]] || chatflow convert tp2hf "$ckpt" "$OUT/hf/step$step" --quiet
      models+=("$OUT/hf/step$step"); tokens+=($((step * TOKENS_PER_STEP)))
    else
      models+=("$ckpt")
      tokens+=($("$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(int(sys.argv[2]) * r['micro_batch_size'] * r['gradient_accumulation_steps'] * r['world_size'] * r['seq_length'])" \
                 "$CKPTS/chatflow_run.json" "$step"))
    fi
    names+=("step$step")
  done
fi
args=()
for i in "${!models[@]}"; do args+=(--model "${models[$i]}" --model_name "${names[$i]}"); done
say "scoring ${#models[@]} checkpoints on $TASKS"
chatflow eval --data_dir "$BENCH" --tasks "$TASKS" --num_fewshot 3 ${LIMIT:+--limit "$LIMIT"} "${args[@]}" \
  --output "$OUT/figure2_results.json" --no_progress
pts=()
for i in "${!names[@]}"; do pts+=(--tokens "${names[$i]}=${tokens[$i]}"); done
"$PY" -m chatflow_plugin.miniature figure2 --results "$OUT/figure2_results.json" "${pts[@]}" \
  --output "$OUT/figure2_metrics_over_tokens.png"
say "Figure 2: $OUT/figure2_metrics_over_tokens.png (+ .csv); numbers: $OUT/figure2_results.md"
