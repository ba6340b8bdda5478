#!/usr/bin/env bash
# The whole ChatFlow recipe as the paper ran it (arXiv 2405.10626, Sec. 2 and 3.1): expand LLaMA-2-7B's vocabulary
# to 40,763 pieces (32,000 + 8,701 Chinese characters + the 62 symbols of models/vocab/chatflow_62_symbols.txt; new
# rows = mean of the sub-token rows), tokenize the Table 1 mixture, plan the run (`chatflow plan`), continue training
# with the dynamic data sampler in bf16 at global batch 512, convert the result to HuggingFace format, check it and
# score it on MMLU / C-Eval / CMMLU / GAOKAO. The runbook, with the sources of every default: docs/full_scale.md.
#
#   scripts/chatflow_full_run.sh --llama2 HF_DIR --data_root DIR --benchmarks DIR --output_dir DIR [options]
#       Full scale. HF_DIR: LLaMA-2-7B in HuggingFace format (with tokenizer.model); DIR: the Table 1 sources as
#       models/mixtures/chatflow_table1.json lays them out (or --mixture FILE); --benchmarks: mmlu/ ceval/ cmmlu/
#       gaokao/ in their public layouts. Stages, in order (--stages LIST, default all; a stage whose output exists
#       is skipped, an interrupted training resumes from its last checkpoint): expand, preprocess (and the plan),
#       train, release (conversion and checks), eval. Multi-node: run the train stage on every node with
#       --nodes N --node_rank R --master_addr HOST (shared file system); the other stages once.
#   scripts/chatflow_full_run.sh --dry_run [--output_dir DIR] [options]
#       Validate every input, config and path, plan the run and write DIR/plan.json (the plan plus the run's
#       precision, vocab_size and optimizer settings), print each stage's commands, run nothing. With no other
#       argument: the paper's defaults, listing the inputs still missing.
#   scripts/chatflow_full_run.sh --smoke [--backend host|hf] [--output_dir DIR]
#       The same stages and branches on a CPU in a minute or two: a tiny LLaMA with an English tokenizer built from
#       the bundled corpora (scripts/_common.sh tiny_models), 100 Chinese characters + the 62 symbols, the bundled
#       corpora and benchmarks, 8 optimizer steps at global batch 8 with a 2-step warm-up, trained as 2 nodes x 1
#       process on 127.0.0.1 (two torchrun launchers with the cluster's rendezvous, gloo) x 2 x 2 accumulated,
#       DeepSpeed with the shipped ZeRO-3 bf16 config, a 2-question-per-subject evaluation. Backend: host when
#       TENCENTPRETRAIN_HOME is set, else hf (said at the start).
#   scripts/chatflow_full_run.sh --tiny [--output_dir DIR] [--data_dir DIR] [--full]
#       `chatflow demo --quick` (another pipeline: the recipe in miniature with its ablations, HF backend, no host).
#
# Options (default: the paper's setting; the source of every default: docs/full_scale.md):
#   --backend host|hf (host)        TencentPretrain + DeepSpeed (TENCENTPRETRAIN_HOME), or `chatflow train` + DeepSpeed
#   --gpu_hours 5376                the run's length: the paper's compute, 16 A100s for two weeks, in steps at
#   --tokens_per_second_per_gpu X   the planner's throughput (default: LLaMA-2-7B's own, 3,014 tokens/s per A100)
#   --train_steps N | --tokens T    or optimizer steps, or training tokens (--steps: the old spelling of --train_steps)
#   --data_tokens 8e9 --data_sizes en_corpus=10,zh_corpus=24.5,...   the data before preprocessing, for the plan's
#                                   epochs (with the Table 1 mixture: the paper's 8B tokens split by Table 1's GB;
#                                   otherwise none unless given); once preprocessed, the dataset's own figures
#   --global_batch_size 512         the paper; reached by gradient accumulation for any GPU count
#   --micro_batch_size 4            sequences per GPU per forward pass
#   --nodes 1 --gpus_per_node 8 --node_rank 0 --master_addr 127.0.0.1 --master_port 29500
#   --hyperparameters llama2        Meta's LLaMA-2 settings, which the paper follows; `cautious`: peak 1e-4
#   --learning_rate 3e-4 --warmup_steps 2000 --adam_epsilon 1e-5 --weight_decay 0.1 --adam_beta2 0.95
#                                   (override the set; cosine to 10%, clipping 1.0 in the DeepSpeed configs;
#                                   --warmup: the old spelling of --warmup_steps; a value < 1 is a fraction)
#   --zero_stage 3 (or 2)           models/deepspeed_zero{3,2}_config.json, bf16
#   --schedule_unit samples         T_grow = 5M counts packed training samples (the paper's unit); `records`
#   --records_per_sample 10.85      reads it as raw records (our interpretation), assuming this until preprocessed
#   --new_chars 8701 --symbols FILE --mixture FILE --config FILE (models/llama2/7b_config.json) --workers 32
#   --save_every 500 --report_every 10   optimizer steps;   --eval_limit 0 (questions per subject, 0 = all)
#   --allow_partial_schedule        train although the run ends before the schedule's final mixture
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; FULL=0; DATA_DIR=""; DRY_RUN=0; SMOKE=0; ALLOW_PARTIAL_SCHEDULE=0
OUTPUT_DIR=""; LLAMA2=""; DATA_ROOT=""; BENCHMARKS=""; BACKEND=""; STAGES=all
MIXTURE=$ROOT/models/mixtures/chatflow_table1.json      # the paper's Table 1 (Sec. 2.2)
SYMBOLS=$ROOT/models/vocab/chatflow_62_symbols.txt      # our reconstruction of the paper's 62 symbols (Sec. 2.1)
CONFIG=$ROOT/models/llama2/7b_config.json               # LLaMA-2-7B for the host, vocab_size 40763
NEW_CHARS=8701                                          # the paper's Chinese characters (Sec. 2.1)
GPU_HOURS=5376                                          # the paper: 16 A100s for two weeks (Sec. 3.1) = 16 x 336 h
TOKENS_PER_SECOND_PER_GPU=""                            # the planner's (LLaMA-2-7B's pretraining throughput)
TOKENS=""; TRAIN_STEPS=""; STEPS=""                     # another length instead (--steps: old spelling)
DATA_TOKENS=""; DATA_SIZES=""                           # with the Table 1 mixture: the paper's (below)
GLOBAL_BATCH_SIZE=512                                   # the paper: batch 512 with gradient accumulation (Sec. 3.1)
MICRO_BATCH_SIZE=4                                      # ours: fits an A100-40GB at 2,048 tokens (docs/full_scale.md)
NODES=""; GPUS_PER_NODE=""; NODE_RANK=0; MASTER_ADDR=127.0.0.1; MASTER_PORT=29500
HYPERPARAMETERS=llama2                                  # the paper: "we basically follow Meta's" (Sec. 3.1)
LEARNING_RATE=""; WARMUP_STEPS=""; WARMUP=""; ADAM_EPSILON=""; WEIGHT_DECAY=""; ADAM_BETA2=""   # the set's, unless given
ZERO_STAGE=3
SCHEDULE_UNIT=samples                                   # the paper: T_grow = 5M samples, t = packed training samples
RECORDS_PER_SAMPLE=10.85                                # only for --schedule_unit records: our measurement (runbook)
WORKERS=32; SAVE_EVERY=500; REPORT_EVERY=10; EVAL_LIMIT=0
parse_flags "bool:tiny bool:full bool:dry_run bool:smoke bool:allow_partial_schedule value:data_dir value:output_dir
             value:llama2 value:data_root value:benchmarks value:backend value:stages value:mixture value:symbols
             value:config value:new_chars value:gpu_hours value:tokens_per_second_per_gpu value:tokens
             value:train_steps value:steps value:data_tokens value:data_sizes value:global_batch_size
             value:micro_batch_size value:nodes value:gpus_per_node value:node_rank value:master_addr value:master_port
             value:hyperparameters value:learning_rate value:warmup_steps value:warmup value:adam_epsilon
             value:weight_decay value:adam_beta2 value:zero_stage value:schedule_unit value:records_per_sample
             value:workers value:save_every value:report_every value:eval_limit" "$@"
[[ ${#POSITIONAL[@]} -eq 0 ]] || usage_error "unexpected argument ${POSITIONAL[0]}"

if [[ $TINY == 1 ]]; then
  OUTPUT_DIR=${OUTPUT_DIR:-runs/chatflow_tiny}
  args=()
  [[ $FULL == 0 ]] && args+=(--quick)
  [[ -n $DATA_DIR ]] && args+=(--data_dir "$DATA_DIR")
  tiny_demo "$OUTPUT_DIR" "${args[@]}"
  say "released HF model: $OUTPUT_DIR/release; report: $OUTPUT_DIR/report/report.md"
  exit 0
fi

# the old spellings, still accepted
if [[ -n $STEPS ]]; then
  [[ -z $TRAIN_STEPS ]] || usage_error "--steps is the old spelling of --train_steps: give one"
  echo "$SCRIPT: note: --steps is deprecated, use --train_steps" >&2; TRAIN_STEPS=$STEPS
fi
if [[ -n $WARMUP ]]; then
  [[ -z $WARMUP_STEPS ]] || usage_error "--warmup is the old spelling of --warmup_steps: give one"
  echo "$SCRIPT: note: --warmup is deprecated, use --warmup_steps (a value < 1 is a fraction of the run)" >&2
  WARMUP_STEPS=$WARMUP
fi
[[ -z $TRAIN_STEPS || -z $TOKENS ]] || usage_error "give the run's length once: --train_steps or --tokens (or --gpu_hours)"
if [[ -z $BACKEND ]]; then
  if [[ $SMOKE == 1 && -z ${TENCENTPRETRAIN_HOME:-} ]]; then
    BACKEND=hf
    say "smoke: backend hf (chatflow train), because TENCENTPRETRAIN_HOME is not set; set it to a TencentPretrain work tree to rehearse the host backend"
  else
    BACKEND=host
  fi
fi
[[ $BACKEND == host || $BACKEND == hf ]] || usage_error "--backend must be host or hf, got $BACKEND"
[[ $ZERO_STAGE == 2 || $ZERO_STAGE == 3 ]] || usage_error "--zero_stage must be 2 or 3, got $ZERO_STAGE"
[[ $SMOKE == 1 && $DRY_RUN == 1 ]] && usage_error "--smoke runs the stages; --dry_run plans them: give one"
EVAL_EXTRA=()
if [[ $SMOKE == 1 ]]; then
  # The full-scale branches with tiny inputs: only sizes change below, never the path through the stages.
  OUTPUT_DIR=${OUTPUT_DIR:-runs/chatflow_smoke}
  [[ -f $OUTPUT_DIR/base/llama2/tokenizer.model ]] || tiny_models --english "$OUTPUT_DIR/base" 1000 llama2
  LLAMA2=$OUTPUT_DIR/base/llama2; DATA_ROOT=$ROOT/corpora; BENCHMARKS=$TINY_BENCHMARKS
  CONFIG=$ROOT/models/llama2/tiny_config.json; NEW_CHARS=100; WORKERS=2
  GPU_HOURS=""; TOKENS=""; TRAIN_STEPS=${TRAIN_STEPS:-8}; GLOBAL_BATCH_SIZE=8; MICRO_BATCH_SIZE=2
  NODES=${NODES:-2}; GPUS_PER_NODE=${GPUS_PER_NODE:-1}; NODE_RANK=0; MASTER_ADDR=127.0.0.1  # every node is local
  MASTER_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  WARMUP_STEPS=${WARMUP_STEPS:-2}          # a short run's own warm-up (LLaMA-2's 2,000 steps exceed it)
  SAVE_EVERY=4; REPORT_EVERY=2; EVAL_LIMIT=2; EVAL_EXTRA=(--max_new_tokens 16)
  # the bundled corpora's mixture (the paper's groups and alpha/beta) with its times scaled down 50x: T_grow = 40
  # packed samples, reached at step 5 of 8
  MIXTURE=$OUTPUT_DIR/mixture_smoke.json
  "$PY" - "$ROOT/models/mixtures/tiny_corpora.json" "$MIXTURE" <<'PYEOF'
import sys
from chatflow_plugin.data.mixture import load_mixture, write_mixture
write_mixture(load_mixture(sys.argv[1]).in_samples(50.0).to_json(), sys.argv[2])
PYEOF
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
NODES=${NODES:-1}; GPUS_PER_NODE=${GPUS_PER_NODE:-8}
if [[ $MIXTURE == "$ROOT/models/mixtures/chatflow_table1.json" ]]; then   # the paper's data, for the plan's epochs
  DATA_TOKENS=${DATA_TOKENS:-8e9}                       # the paper: "about 50GB data containing 8B tokens" (Sec. 2.2)
  DATA_SIZES=${DATA_SIZES:-en_corpus=10,zh_corpus=24.5,parallel=3.2,en_inst=6.7,zh_inst=9.1,code=2}  # Table 1, GB
fi
# the optimizer settings: the named set's, each unless given (chatflow_plugin/hosts/hyperparameters.py)
read -r SET_LR SET_WARMUP SET_EPS SET_WD SET_BETA2 SET_MIN_LR SET_CLIP < <("$PY" - "$HYPERPARAMETERS" <<'PYEOF'
import sys
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.hosts.hyperparameters import preset
try:
    h = preset(sys.argv[1])
except ChatflowError as exc:
    print(f"error {exc}")
    sys.exit(0)
print(*(f"{v:g}" for v in (h.learning_rate, h.warmup_steps, h.adam_epsilon, h.weight_decay, h.adam_beta2,
                           h.min_lr_ratio, h.max_grad_norm)))
PYEOF
)
[[ $SET_LR != error ]] || usage_error "--hyperparameters: unknown set $HYPERPARAMETERS (llama2 or cautious)"
LEARNING_RATE=${LEARNING_RATE:-$SET_LR}; WARMUP_STEPS=${WARMUP_STEPS:-$SET_WARMUP}; ADAM_EPSILON=${ADAM_EPSILON:-$SET_EPS}
WEIGHT_DECAY=${WEIGHT_DECAY:-$SET_WD}; ADAM_BETA2=${ADAM_BETA2:-$SET_BETA2}
OUTPUT_DIR=${OUTPUT_DIR:-runs/chatflow_full}
OUT=$OUTPUT_DIR
[[ $STAGES == all ]] && STAGES=expand,preprocess,train,release,eval
for stage in ${STAGES//,/ }; do
  [[ $stage =~ ^(expand|preprocess|train|release|eval)$ ]] || usage_error "--stages: unknown stage $stage (expand, preprocess, train, release, eval)"
done
wants() { [[ ,$STAGES, == *,$1,* ]]; }
for name in NODES GPUS_PER_NODE NODE_RANK MASTER_PORT GLOBAL_BATCH_SIZE MICRO_BATCH_SIZE NEW_CHARS WORKERS SAVE_EVERY \
            REPORT_EVERY EVAL_LIMIT ${TRAIN_STEPS:+TRAIN_STEPS}; do
  [[ ${!name} =~ ^[0-9]+$ ]] || usage_error "--${name,,} must be a whole number, got ${!name}"
done
WORLD=$((NODES * GPUS_PER_NODE))
(( MICRO_BATCH_SIZE > 0 && WORLD > 0 && GLOBAL_BATCH_SIZE % (MICRO_BATCH_SIZE * WORLD) == 0 )) || \
  die "--global_batch_size $GLOBAL_BATCH_SIZE is not a multiple of --micro_batch_size x GPUs = $MICRO_BATCH_SIZE x $WORLD"
ACCUMULATION=$((GLOBAL_BATCH_SIZE / (MICRO_BATCH_SIZE * WORLD)))
(( NODE_RANK >= 0 && NODE_RANK < NODES )) || die "--node_rank $NODE_RANK is outside 0..$((NODES - 1))"
if [[ $BACKEND == host ]]; then DS_CONFIG=$ROOT/models/deepspeed_zero${ZERO_STAGE}_config.json
else DS_CONFIG=$ROOT/models/hf/deepspeed_zero3_hf.json; fi
mkdir -p "$OUT"

# run CMD...: run a stage's command, or with --dry_run print it
run() {
  if [[ $DRY_RUN == 1 ]]; then printf '  would run:'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}
# launcher R: LAUNCHER = the torchrun command of node R (the rendezvous docs/full_scale.md gives for a cluster)
launcher() {
  LAUNCHER=("$PY" -m torch.distributed.run --nnodes "$NODES" --node_rank "$1" --nproc_per_node "$GPUS_PER_NODE"
            --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")
}

# on_nodes ARGS...: the train stage's command (ARGS: what follows the launcher) on this node, logged to
# OUT/train.node<R>.log; with --smoke on every node at once, all on 127.0.0.1 (nodes 1.. in the background)
on_nodes() {
  if [[ $DRY_RUN == 1 ]]; then launcher "$NODE_RANK"; run "${LAUNCHER[@]}" "$@"; return; fi
  local pids=() r status=0
  if [[ $SMOKE == 1 ]]; then
    for ((r = 1; r < NODES; r++)); do
      launcher "$r"
      "${LAUNCHER[@]}" "$@" >>"$OUT/train.node$r.log" 2>&1 &
      pids+=($!)
    done
  fi
  launcher "$NODE_RANK"
  "${LAUNCHER[@]}" "$@" 2>&1 | tee -a "$OUT/train.node$NODE_RANK.log" || status=$?
  if (( status != 0 )); then
    (( ${#pids[@]} == 0 )) || kill "${pids[@]}" 2>/dev/null || true
    wait || true
    for ((r = 1; r <= ${#pids[@]}; r++)); do
      echo "--- the end of node $r's log ($OUT/train.node$r.log):" >&2; tail -n 20 "$OUT/train.node$r.log" >&2
    done
    die "train: node $NODE_RANK failed (exit $status; log: $OUT/train.node$NODE_RANK.log)"
  fi
  for ((r = 1; r <= ${#pids[@]}; r++)); do
    wait "${pids[r - 1]}" || { tail -n 20 "$OUT/train.node$r.log" >&2; die "train: node $r failed (log: $OUT/train.node$r.log)"; }
  done
}

# -- every input, config and path, before anything runs -------------------------------------------------------
check=$("$PY" - "$BACKEND" "$STAGES" "$SMOKE" "$OUT" "$LLAMA2" "$DATA_ROOT" "$MIXTURE" "$SYMBOLS" "$CONFIG" "$DS_CONFIG" \
        "$ZERO_STAGE" "$NEW_CHARS" "$BENCHMARKS" <<'PYEOF'
import json, os, sys
from pathlib import Path
backend, stages, smoke, out, llama2, data_root, mixture, symbols, config, ds_config, zero, new_chars, bench = sys.argv[1:]
stages, smoke, out, zero, new_chars = stages.split(","), smoke == "1", Path(out), int(zero), int(new_chars)
missing, problems = [], []
from chatflow_plugin.errors import ChatflowError

def produced(stage, path):
    """An earlier stage's output: made by this invocation, else it must exist already."""
    if stage not in stages and not (out / path).exists():
        missing.append(f"{out / path}: made by the {stage} stage, which this invocation does not run")

base_pieces = None
if {"expand", "release", "eval"} & set(stages):
    if not llama2:
        missing.append("--llama2: LLaMA-2-7B in HuggingFace format (config.json, tokenizer.model, weights)")
    elif not (Path(llama2) / "config.json").is_file() or not (Path(llama2) / "tokenizer.model").is_file():
        missing.append(f"--llama2 {llama2}: no config.json and tokenizer.model there")
    else:
        from chatflow_plugin.tokenizer import load_sentencepiece
        base_pieces = load_sentencepiece(Path(llama2) / "tokenizer.model").get_piece_size()
        if not smoke and base_pieces != 32000:
            problems.append(f"--llama2 {llama2}: tokenizer.model has {base_pieces} pieces, LLaMA-2's has 32,000")
        if not list(Path(llama2).glob("*.safetensors")) + list(Path(llama2).glob("pytorch_model*.bin")):
            missing.append(f"--llama2 {llama2}: no weights (*.safetensors or pytorch_model*.bin)")
from chatflow_plugin.checkpoints.vocab import read_piece_file
try:
    n_symbols = sum(1 for p in read_piece_file(symbols) if p)
except ChatflowError as exc:
    problems.append(f"--symbols: {exc}")
    n_symbols = 0
vocab_size = (base_pieces or 32000) + new_chars + n_symbols
if {"expand", "preprocess"} & set(stages):
    from chatflow_plugin.data.mixture import load_mixture
    try:
        spec = load_mixture(mixture)
        if data_root:
            spec = spec.with_overrides(data_root=data_root)
        elif not smoke:
            missing.append("--data_root: the Table 1 sources (laid out as the mixture's paths say)")
        if data_root or smoke:
            spec.resolve_files()
    except ChatflowError as exc:
        missing.append(f"the mixture's sources: {exc}")
if "preprocess" in stages:
    produced("expand", "tokenizer.model")
if "train" in stages:
    produced("expand", "llama2_expanded_tp/tencentpretrain_model.bin" if backend == "host" else "llama2_expanded_hf")
    produced("preprocess", "dataset/manifest.json")
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        missing.append("deepspeed: pip install 'chatflow-plugin[host]' (or deepspeed)")
    if backend == "host":
        from chatflow_plugin.hosts.tencentpretrain.host import locate_host
        try:
            locate_host()
        except ChatflowError as exc:
            missing.append(f"the TencentPretrain host: {exc}")
        from chatflow_plugin.checkpoints.llama_layout import check_tp_config
        from chatflow_plugin.files import read_json
        try:
            cfg = read_json(config, "TencentPretrain config")
            check_tp_config(cfg, config)
            if "vocab_size" in cfg and cfg["vocab_size"] != vocab_size:
                problems.append(f"--config {config}: vocab_size {cfg['vocab_size']}, but the expanded tokenizer will "
                                f"have {vocab_size} pieces")
        except ChatflowError as exc:
            problems.append(str(exc))
if "release" in stages and "train" not in stages:
    produced("train", "chatflow_tp" if backend == "host" else "chatflow_run")
if "eval" in stages:
    if "release" not in stages:
        produced("release", "chatflow_hf")
    if not bench:
        missing.append("--benchmarks: a folder with mmlu/ ceval/ cmmlu/ gaokao/ in their public layouts")
    else:
        for name in ("mmlu", "ceval", "cmmlu", "gaokao"):
            if not (Path(bench) / name).is_dir():
                missing.append(f"--benchmarks {bench}: no {name}/ folder")
from chatflow_plugin.files import read_json
precision, clipping = "fp32", None
try:
    ds = read_json(ds_config, "DeepSpeed config")
    if backend == "host" and ds.get("zero_optimization", {}).get("stage") != zero:
        problems.append(f"{ds_config}: zero_optimization.stage is not {zero}")
    clipping = ds.get("gradient_clipping", 0.0)       # hf: "auto", filled from chatflow train --max_grad_norm
    if backend == "hf" or ds.get("bf16", {}).get("enabled") is True:
        precision = "bf16"                    # hf: chatflow train --bf16 fills the config's "auto"
    elif ds.get("fp16", {}).get("enabled") is True:
        precision = "fp16"
except ChatflowError as exc:
    problems.append(str(exc))
print(json.dumps({"vocab_size": vocab_size, "base_pieces": base_pieces, "symbols": n_symbols, "precision": precision,
                  "clipping": clipping, "missing": missing, "problems": problems}))        # the last line (imports may print before it)
PYEOF
)
check=$(tail -n 1 <<<"$check")
VOCAB_SIZE=$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["vocab_size"])' "$check")
PRECISION=$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["precision"])' "$check")
MAX_GRAD_NORM=$("$PY" -c 'import json, sys; c = json.loads(sys.argv[1])["clipping"]; print(sys.argv[2] if c in (None, "auto") else c)' "$check" "$SET_CLIP")
mapfile -t MISSING < <("$PY" -c 'import json, sys; [print(m) for m in json.loads(sys.argv[1])["missing"]]' "$check")
mapfile -t PROBLEMS < <("$PY" -c 'import json, sys; [print(m) for m in json.loads(sys.argv[1])["problems"]]' "$check")
for p in "${PROBLEMS[@]}"; do echo "$SCRIPT: error: $p" >&2; done
(( ${#PROBLEMS[@]} == 0 )) || exit 2
if (( ${#MISSING[@]} )); then
  if [[ $DRY_RUN == 1 ]]; then
    say "inputs still missing (the plan below uses the paper's defaults):"
    for m in "${MISSING[@]}"; do echo "  - $m" >&2; done
  else
    for m in "${MISSING[@]}"; do echo "$SCRIPT: missing: $m" >&2; done
    die "${#MISSING[@]} input(s) missing (scripts/chatflow_full_run.sh --dry_run lists them with the plan)"
  fi
fi

# names for what is still missing, in the commands a dry run prints
LLAMA2=${LLAMA2:-<--llama2>}; DATA_ROOT=${DATA_ROOT:-<--data_root>}; BENCHMARKS=${BENCHMARKS:-<--benchmarks>}

# plan_run: the plan of this run (OUT/plan.json): from the dataset once it exists (with OUT/mixture.json, the
# mixture the trainer reads: times in samples), else from the mixture file and the stated data size; then the
# run's precision, vocabulary, layout and optimizer settings
plan_run() {
  local args=(--global_batch_size "$GLOBAL_BATCH_SIZE" --schedule_unit "$SCHEDULE_UNIT" --gpus "$WORLD"
              --output "$OUT/plan.json")
  if [[ -n $TRAIN_STEPS ]]; then args+=(--steps "$TRAIN_STEPS")
  elif [[ -n $TOKENS ]]; then args+=(--tokens "$TOKENS")
  else args+=(--gpu_hours "$GPU_HOURS"); fi
  [[ -n $TOKENS_PER_SECOND_PER_GPU ]] && args+=(--tokens_per_second_per_gpu "$TOKENS_PER_SECOND_PER_GPU")
  if [[ -f $OUT/dataset/manifest.json ]]; then
    args+=(--dataset_dir "$OUT/dataset" --write_mixture "$OUT/mixture.json")
  else
    args+=(--mixture "$MIXTURE")
    [[ $SCHEDULE_UNIT == records ]] && args+=(--records_per_sample "$RECORDS_PER_SAMPLE")
    if [[ -n $DATA_TOKENS ]]; then
      args+=(--data_tokens "$DATA_TOKENS")
      [[ -n $DATA_SIZES ]] && args+=(--data_sizes ${DATA_SIZES//,/ })
    fi
  fi
  [[ $ALLOW_PARTIAL_SCHEDULE == 1 ]] && args+=(--allow_partial_schedule)
  chatflow plan "${args[@]}"
  STEPS_PLANNED=$(json_field "$OUT/plan.json" steps)
  WARMUP_PLANNED=$("$PY" -c 'import sys; from chatflow_plugin.hosts.hyperparameters import warmup_steps
print(warmup_steps(float(sys.argv[1]), int(sys.argv[2])))' "$WARMUP_STEPS" "$STEPS_PLANNED" 2>/dev/null) || \
    usage_error "--warmup_steps must be 0 or more (a value < 1 is a fraction of the run), got $WARMUP_STEPS"
  json_set "$OUT/plan.json" precision "$PRECISION" vocab_size "$VOCAB_SIZE" backend "$BACKEND" \
    micro_batch_size "$MICRO_BATCH_SIZE" gpus "$WORLD" gradient_accumulation_steps "$ACCUMULATION" \
    hyperparameters "$HYPERPARAMETERS" learning_rate "$LEARNING_RATE" warmup_steps "$WARMUP_PLANNED" \
    lr_scheduler cosine_with_min_lr min_lr_ratio "$SET_MIN_LR" adam_beta1 0.9 adam_beta2 "$ADAM_BETA2" \
    adam_epsilon "$ADAM_EPSILON" weight_decay "$WEIGHT_DECAY" max_grad_norm "$MAX_GRAD_NORM"
  if (( WARMUP_PLANNED >= STEPS_PLANNED )); then
    say "warning: the warm-up ($WARMUP_PLANNED steps) is not shorter than the run ($STEPS_PLANNED steps): the learning rate never reaches its peak; give a shorter --warmup_steps"
  fi
}

plan_run
say "$BACKEND backend, $PRECISION, vocabulary $VOCAB_SIZE, $STEPS_PLANNED steps x $GLOBAL_BATCH_SIZE = $MICRO_BATCH_SIZE" \
    "per GPU x $WORLD GPUs x $ACCUMULATION accumulated; peak learning rate $LEARNING_RATE after $WARMUP_PLANNED" \
    "warm-up steps ($HYPERPARAMETERS); plan: $OUT/plan.json"
HOST_STEPS=$((STEPS_PLANNED * ACCUMULATION))   # the host counts micro-batches

stage_expand() {
  expand_vocabulary
  if [[ $BACKEND == host && ! -f $OUT/llama2_expanded_tp/tencentpretrain_model.bin ]]; then
    say "expand: the expanded checkpoint in the host's format ($OUT/llama2_expanded_tp)"
    run chatflow convert hf2tp "$OUT/llama2_expanded_hf" "$OUT/llama2_expanded_tp" --force --quiet
  fi
}

expand_vocabulary() {
  if [[ -f $OUT/tokenizer.model && -f $OUT/llama2_expanded_hf/config.json ]]; then say "expand: done"; return; fi
  say "expand: $LLAMA2's tokenizer + $NEW_CHARS Chinese characters + $SYMBOLS -> $VOCAB_SIZE pieces, new rows = sub-token means"
  local corpora=()
  mapfile -t zh < <(mixture_files "$MIXTURE" "$DATA_ROOT" zh)
  for f in "${zh[@]}"; do corpora+=(--corpus "$f"); done
  run chatflow expand-vocab --base_model "$LLAMA2/tokenizer.model" --output_model "$OUT/tokenizer.model" --script cjk \
    --max_new_pieces "$NEW_CHARS" --pieces "$SYMBOLS" "${corpora[@]}" --expect_vocab_size "$VOCAB_SIZE" \
    --checkpoint "$LLAMA2" --output_checkpoint "$OUT/llama2_expanded_hf" --force --report "$OUT/expand_report.json"
}

stage_preprocess() {
  if [[ -f $OUT/dataset/manifest.json ]]; then say "preprocess: done"
  else
    say "preprocess: the mixture's sources -> token shards ($OUT/dataset)"
    if [[ $BACKEND == host ]]; then
      run "$PY" "$ROOT/preprocess.py" --mixture_config "$MIXTURE" --data_root "$DATA_ROOT" \
        --spm_model_path "$OUT/tokenizer.model" --dataset_path "$OUT/dataset" --data_processor dynamic_mixture \
        --processes_num "$WORKERS"
    else
      run chatflow preprocess --mixture "$MIXTURE" --data_root "$DATA_ROOT" --spm_model_path "$OUT/tokenizer.model" \
        --output_dir "$OUT/dataset" --workers "$WORKERS"
    fi
  fi
  [[ $DRY_RUN == 1 ]] || plan_run
}

# trained_samples: global samples in the host's last checkpoint (0 without one)
trained_samples() {
  local state
  [[ -f $OUT/chatflow_tp/latest ]] && state=$OUT/chatflow_tp/$(<"$OUT/chatflow_tp/latest")/chatflow_state.json
  if [[ -n ${state:-} && -f $state ]]; then json_field "$state" samples_done; else echo 0; fi
}

# write_deepspeed_config OUT_FILE: the shipped config with this run's micro-batch and accumulation filled in
write_deepspeed_config() {
  "$PY" - "$DS_CONFIG" "$1" "$MICRO_BATCH_SIZE" "$ACCUMULATION" "$WORLD" <<'PYEOF'
import json, sys
from chatflow_plugin.files import atomic_file
config = json.load(open(sys.argv[1], encoding="utf-8"))
micro, accumulation, world = map(int, sys.argv[3:6])
config.update(train_micro_batch_size_per_gpu=micro, gradient_accumulation_steps=accumulation,
              train_batch_size=micro * accumulation * world)
with atomic_file(sys.argv[2]) as handle:
    handle.write(json.dumps(config, indent=2) + "\n")
PYEOF
}

stage_train() {
  [[ $DRY_RUN == 1 || -f $OUT/mixture.json ]] || plan_run
  local where="node $NODE_RANK of $NODES, $GPUS_PER_NODE process(es) each"
  [[ $SMOKE == 1 ]] && where="$NODES nodes x $GPUS_PER_NODE process(es) on 127.0.0.1, one torchrun launcher per node"
  if [[ $BACKEND == host ]]; then
    if (( $(trained_samples) == STEPS_PLANNED * GLOBAL_BATCH_SIZE )); then say "train: done ($OUT/chatflow_tp)"; return; fi
    [[ $DRY_RUN == 1 ]] || write_deepspeed_config "$OUT/deepspeed_config.json"
    local extra=()
    [[ $ZERO_STAGE == 3 ]] && extra+=(--enable_zero3)
    [[ -f $OUT/chatflow_tp/latest ]] && extra+=(--resume_from_checkpoint "$OUT/chatflow_tp")
    [[ $SMOKE == 1 ]] && extra+=(--sample_log "$OUT/samples.jsonl")      # which samples each rank trained on
    say "train: TencentPretrain + DeepSpeed ZeRO-$ZERO_STAGE, $HOST_STEPS micro-batches per GPU, $where (log: $OUT/train.node$NODE_RANK.log)"
    on_nodes "$ROOT/pretrain.py" --deepspeed --deepspeed_config "$OUT/deepspeed_config.json" \
      --pretrained_model_path "$OUT/llama2_expanded_tp/tencentpretrain_model.bin" --dataset_path "$OUT/dataset" \
      --spm_model_path "$OUT/tokenizer.model" --config_path "$CONFIG" --output_model_path "$OUT/chatflow_tp" \
      --data_processor dynamic_mixture --target chatflow_instruction --mixture_config "$OUT/mixture.json" \
      --total_steps "$HOST_STEPS" --save_checkpoint_steps $((SAVE_EVERY * ACCUMULATION)) \
      --report_steps $((REPORT_EVERY * ACCUMULATION)) --batch_size "$MICRO_BATCH_SIZE" \
      --learning_rate "$LEARNING_RATE" --scheduler cosine_with_min_lr --warmup_steps "$WARMUP_STEPS" \
      --weight_decay "$WEIGHT_DECAY" --adam_beta2 "$ADAM_BETA2" --adam_epsilon "$ADAM_EPSILON" \
      --adam_bias_correction --deepspeed_checkpoint_activations "${extra[@]}"
  else
    if [[ -f $OUT/chatflow_run/final/config.json ]]; then say "train: done ($OUT/chatflow_run/final)"; return; fi
    say "train: chatflow train + DeepSpeed ZeRO-3, $where (resumes from $OUT/chatflow_run's last checkpoint; log: $OUT/train.node$NODE_RANK.log)"
    on_nodes -m chatflow_plugin.cli train --dataset_dir "$OUT/dataset" --mixture "$OUT/mixture.json" \
      --model_path "$OUT/llama2_expanded_hf" --spm_model_path "$OUT/tokenizer.model" --output_dir "$OUT/chatflow_run" \
      --train_steps "$STEPS_PLANNED" --micro_batch_size "$MICRO_BATCH_SIZE" --gradient_accumulation_steps "$ACCUMULATION" \
      --learning_rate "$LEARNING_RATE" --lr_scheduler cosine_with_min_lr --warmup_steps "$WARMUP_STEPS" \
      --weight_decay "$WEIGHT_DECAY" --adam_beta2 "$ADAM_BETA2" --adam_epsilon "$ADAM_EPSILON" \
      --max_grad_norm "$MAX_GRAD_NORM" --bf16 --log_every "$REPORT_EVERY" --save_every "$SAVE_EVERY" --resume auto \
      --quiet --deepspeed "$DS_CONFIG"
  fi
}

stage_release() {
  if [[ -f $OUT/chatflow_hf/config.json ]]; then say "release: done ($OUT/chatflow_hf)"
  elif [[ $BACKEND == host ]]; then
    # the last checkpoint, which must hold the whole planned run (whatever the GPU count it was trained with)
    local last="<the tag in $OUT/chatflow_tp/latest>"
    if [[ $DRY_RUN == 0 ]]; then
      [[ -f $OUT/chatflow_tp/latest ]] || die "$OUT/chatflow_tp has no checkpoint: run the train stage first"
      last=$(<"$OUT/chatflow_tp/latest")
      local done_samples planned=$((STEPS_PLANNED * GLOBAL_BATCH_SIZE))
      done_samples=$(trained_samples)
      (( done_samples == planned )) || die "the last checkpoint ($OUT/chatflow_tp/$last) has trained $done_samples of the plan's $planned samples: run the train stage to the end first"
    fi
    local input=$OUT/chatflow_tp tag=(--tag "$last")
    if [[ $ZERO_STAGE == 3 ]]; then      # ZeRO-3 keeps parameter partitions: DeepSpeed's own script gathers them
      say "release: gather the ZeRO-3 partitions of checkpoint $last (DeepSpeed's zero_to_fp32.py)"
      [[ -f $OUT/chatflow_tp_fp32/pytorch_model.bin || -f $OUT/chatflow_tp_fp32/pytorch_model.bin.index.json ]] || \
        run "$PY" "$OUT/chatflow_tp/zero_to_fp32.py" "$OUT/chatflow_tp" "$OUT/chatflow_tp_fp32" --tag "$last"
      input=$OUT/chatflow_tp_fp32; tag=()
    fi
    # the release keeps LLaMA-2's context length (4,096), not the training sequence length of the host config
    local positions="<max_position_embeddings of $LLAMA2>"
    [[ -f $LLAMA2/config.json ]] && positions=$(json_field "$LLAMA2/config.json" max_position_embeddings)
    say "release: TencentPretrain -> HuggingFace (bf16)"
    run chatflow convert tp2hf "$input" "$OUT/chatflow_hf" "${tag[@]}" --tp_config "$CONFIG" \
      --tokenizer "$OUT/tokenizer.model" --dtype bfloat16 --max_positions "$positions" --force --quiet
  else
    say "release: $OUT/chatflow_run/final is already in HuggingFace format"
    run "$PY" - "$OUT/chatflow_run/final" "$OUT/chatflow_hf" <<'PYEOF'
import shutil, sys
from chatflow_plugin.checkpoints.convert import HF_KIND
from chatflow_plugin.outputs import atomic_directory
with atomic_directory(sys.argv[2], HF_KIND, force=True, inputs=[sys.argv[1]]) as tmp:
    shutil.copytree(sys.argv[1], tmp, dirs_exist_ok=True)
PYEOF
  fi
  say "release: check that it loads, has $VOCAB_SIZE pieces and tokenizes as sentencepiece does"
  run "$PY" - "$OUT/chatflow_hf" "$OUT/tokenizer.model" "$VOCAB_SIZE" <<'PYEOF'
import sys
import sentencepiece as spm
from transformers import AutoConfig, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1], local_files_only=True)
sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
vocab = AutoConfig.from_pretrained(sys.argv[1]).vocab_size
assert vocab == sp.get_piece_size() == int(sys.argv[3]), f"vocabulary {vocab} / {sp.get_piece_size()} / {sys.argv[3]}"
for text in ("### Instruction:\n介绍一下长城。### Response: ", "温度是２３℃，湿度８０％。", "The Great Wall is long."):
    assert tok(text)["input_ids"] == [sp.bos_id()] + sp.encode(text), f"HF tokenizer differs from sentencepiece on {text!r}"
print(f"release ok: {sys.argv[1]}, vocabulary {vocab}")
PYEOF
}

stage_eval() {
  say "eval: 3-shot MMLU / C-Eval / CMMLU / GAOKAO, LLaMA-2 and ChatFlow side by side ($OUT/eval/table2.md)"
  [[ $DRY_RUN == 1 ]] || mkdir -p "$OUT/eval"
  run chatflow eval --model "$LLAMA2" --model "$OUT/chatflow_hf" --model_name llama2 --model_name chatflow \
    --data_dir "$BENCHMARKS" --tasks mmlu,ceval,cmmlu,gaokao --num_fewshot 3 --limit "$EVAL_LIMIT" "${EVAL_EXTRA[@]}" \
    --output "$OUT/eval/table2.json" --predictions "$OUT/eval/predictions.jsonl"
}

for stage in expand preprocess train release eval; do
  if wants "$stage"; then
    SECONDS=0
    "stage_$stage"
    [[ $DRY_RUN == 1 ]] || say "$stage: ${SECONDS}s"
  fi
done
if [[ $DRY_RUN == 1 ]]; then
  if (( ${#MISSING[@]} )); then say "dry run: plan written to $OUT/plan.json; ${#MISSING[@]} input(s) still missing (above)"
  else say "dry run: plan written to $OUT/plan.json; every input is in place"; fi
else
  say "done: $OUT/chatflow_hf${STAGES:+ (stages $STAGES)}"
fi
