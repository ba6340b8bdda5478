#!/usr/bin/env bash
# ChatFlow Table 2: 3-shot MMLU / C-Eval / CMMLU / GAOKAO accuracy of every model given, one row each.
#
#   scripts/table2_benchmarks.sh DATA_DIR OUT_DIR MODEL_DIR [MODEL_DIR ...]
#
# DATA_DIR holds mmlu/{dev,test}, ceval/{dev,val}, cmmlu/{dev,test}, gaokao/{Obj_Prompt.json,Objective_Questions}
# (see docs/evaluation.md for where each comes from). Models are HuggingFace causal LM directories
# (e.g. LLaMA-2-7B and the converted ChatFlow checkpoint); the row name is the directory name.
# Environment: BATCH_SIZE (default 8), LIMIT (questions per subject, default 0 = all), DTYPE (default auto),
# DEVICE (default auto), PROTOCOL (official = each benchmark's own code, the default; lm-eval = lm-evaluation-
# harness's stock tasks), ON_TRUNCATION (warn, the default, or fail).
# Writes OUT_DIR/table2.json (everything), OUT_DIR/table2.md (Table 2 with +- stderr, the paper's rows, chance,
# paired tests; per-subject tables) and OUT_DIR/predictions.jsonl (one line per model and question).
set -euo pipefail
if [ "$#" -lt 3 ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
data_dir=$1
out_dir=$2
shift 2
model_args=()
for model in "$@"; do
    model_args+=(--model "$model")
done
mkdir -p "$out_dir"
chatflow eval "${model_args[@]}" \
    --data_dir "$data_dir" \
    --tasks mmlu,ceval,cmmlu,gaokao \
    --num_fewshot 3 \
    --protocol "${PROTOCOL:-official}" \
    --on_truncation "${ON_TRUNCATION:-warn}" \
    --batch_size "${BATCH_SIZE:-8}" \
    --limit "${LIMIT:-0}" \
    --dtype "${DTYPE:-auto}" \
    --device "${DEVICE:-auto}" \
    --output "$out_dir/table2.json" \
    --predictions "$out_dir/predictions.jsonl"
