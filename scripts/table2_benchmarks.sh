#!/usr/bin/env bash
# ChatFlow Table 2: 3-shot MMLU / C-Eval / CMMLU / GAOKAO accuracy of every model given, one row each.
#
#   scripts/table2_benchmarks.sh --data_dir BENCH --output_dir DIR MODEL_DIR [MODEL_DIR ...]
#       BENCH holds mmlu/{dev,test}, ceval/{dev,val}, cmmlu/{dev,test}, gaokao/{Obj_Prompt.json,
#       Objective_Questions} as the benchmarks' public repositories lay them out (docs/evaluation.md says where
#       each comes from). Models are HuggingFace causal LM directories (e.g. LLaMA-2-7B and the converted
#       ChatFlow checkpoint); the row name is the directory name. Expected run time for a 7B model on one
#       A100: about 1-2 hours for the four benchmarks (estimate, not measured here).
#   scripts/table2_benchmarks.sh --tiny [--output_dir DIR]
#       CPU, about 2 minutes: `chatflow demo --quick --run_kinds dynamic` (the English foundation from the cache the
#       --tiny modes share), then its English foundation and its released ChatFlow model scored on the bundled synthetic benchmark files (corpora/benchmarks, the public layouts). A model
#       this small is near chance: the run checks the pipeline, it is no evidence about the paper's numbers.
#
# Options: --batch_size (8), --limit (questions per subject, 0 = all), --dtype (auto), --device (auto),
# --protocol (official = each benchmark's own reference code, the default; lm-eval = lm-evaluation-harness's
# stock tasks), --on_truncation (warn, the default, or fail).
# Writes DIR/table2.json (everything), DIR/table2.md (Table 2 with ± stderr, the paper's rows, chance, paired
# tests; per-subject tables) and DIR/predictions.jsonl (one line per model and question).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; DATA_DIR=""; OUTPUT_DIR=""; BATCH_SIZE=8; LIMIT=0; DTYPE=auto; DEVICE=auto; PROTOCOL=official
ON_TRUNCATION=warn
parse_flags "bool:tiny value:data_dir value:output_dir value:batch_size value:limit value:dtype value:device
             value:protocol value:on_truncation" "$@"
models=("${POSITIONAL[@]}")
if [[ $TINY == 1 ]]; then
  OUTPUT_DIR=${OUTPUT_DIR:-runs/table2_tiny}; DATA_DIR=${DATA_DIR:-$TINY_BENCHMARKS}
  tiny_demo "$OUTPUT_DIR/demo" --skip_generation --run_kinds dynamic
  models=("$OUTPUT_DIR/demo/foundation/final" "$OUTPUT_DIR/demo/release")
  names=(--model_name english_foundation --model_name chatflow_demo)
else
  [[ -n $DATA_DIR && -n $OUTPUT_DIR && ${#models[@]} -gt 0 ]] || usage_error "need --data_dir, --output_dir and at least one MODEL_DIR (see --help)"
  names=()
fi
model_args=()
for model in "${models[@]}"; do model_args+=(--model "$model"); done
mkdir -p "$OUTPUT_DIR"
chatflow eval "${model_args[@]}" "${names[@]}" --data_dir "$DATA_DIR" --tasks mmlu,ceval,cmmlu,gaokao \
  --num_fewshot 3 --protocol "$PROTOCOL" --on_truncation "$ON_TRUNCATION" --batch_size "$BATCH_SIZE" --limit "$LIMIT" --dtype "$DTYPE" --device "$DEVICE" \
  --output "$OUTPUT_DIR/table2.json" --predictions "$OUTPUT_DIR/predictions.jsonl"
say "Table 2: $OUTPUT_DIR/table2.md"
