#!/usr/bin/env bash
# The speed check for the day a GPU is available: about 10 minutes on one H100, everything in one JSON.
#
#   benchmarks/gpu_check.sh [--output FILE] [--time_limit 900] [--peak_tflops 989] [--tokenizer SPM] [--work_dir DIR]
#       On GPU 0, a randomly initialised LLaMA of about 1B parameters (models/hf/llama_1b.json; the host's
#       models/llama2/1b_config.json) in bf16 with SDPA attention, sequences of 2,048 tokens:
#       1. training: tokens/s, MFU (--peak_tflops: the GPU's dense bf16 peak, 989 for an H100 SXM) and peak GPU
#          memory of `chatflow train` next to a plain transformers.Trainer on the same model, data and batch, and
#          the cost of held-out passes (benchmarks/bench_train_overhead.py);
#       2. the host, when TENCENTPRETRAIN_HOME points at a TencentPretrain work tree: its pretrain.py fed by
#          `dynamic_mixture` next to its own `lm` data loader (benchmarks/bench_host_trainer.py; the host's fp32
#          path on one GPU, sequences of 512 tokens);
#       3. evaluation: questions/s of `chatflow eval` next to lm-evaluation-harness on the model step 1 trained,
#          each timed end to end as its own process (benchmarks/bench_eval_e2e.py; benchmarks/bench_eval.py, whose
#          interface is being rewritten, compares scoring alone on its own model ladder).
#       Every step has a time budget inside --time_limit (seconds, default 900); a step that would not fit, fails
#       or runs out of time is skipped, and the script says which and why. Data: the bundled corpora/ and
#       corpora/benchmarks/ (the public benchmark layouts), with a tokenizer trained here (--tokenizer: yours).
#   benchmarks/gpu_check.sh --tiny [--output FILE]
#       The same steps on a CPU with a tiny LLaMA (models/hf/demo_tiny.json), short sequences and a few steps, in
#       a few minutes (CI runs it): checks that the GPU run's path works; its figures mean nothing.
#
# Writes --output (default gpu_check.json in the working directory): the environment, each step's figures (the
# JSON of the benchmark it ran), the steps skipped with the reason, and the seconds taken. Exits 1 when a step
# failed (a step left out for lack of time or of a host is not a failure), else 0.
set -uo pipefail
source "$(dirname "$0")/../scripts/_common.sh"
TINY=0; OUTPUT=gpu_check.json; TIME_LIMIT=""; PEAK_TFLOPS=989; TOKENIZER=""; WORK_DIR=""
parse_flags "bool:tiny value:output value:time_limit value:peak_tflops value:tokenizer value:work_dir" "$@"
[[ ${#POSITIONAL[@]} -eq 0 ]] || usage_error "unexpected argument ${POSITIONAL[0]}"
BENCH=$ROOT/benchmarks
START=$(date +%s)

if [[ $TINY == 1 ]]; then
  TIME_LIMIT=${TIME_LIMIT:-900}
  TRAIN=(--model_config "$ROOT/models/hf/demo_tiny.json" --seq_length 128 --vocab_size 1000 --micro_batch_size 4
         --steps 8 --skip 2 --log_every 4 --heldout_windows 4 --repeats 1 --threads 1 --bf16)
  HOST=(--config_path "$ROOT/models/llama2/tiny_config.json" --steps 12 --batch_size 4 --seq_length 128 --scale 1
        --repeats 1)
  EVAL=(--limit 1 --batch_size 4 --device cpu)
  BUDGETS=(train:360:60 host:240:60 eval:240:60)     # step:budget:minimum seconds
else
  TIME_LIMIT=${TIME_LIMIT:-900}
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || die "no CUDA GPU visible to torch: run on a GPU machine, or use --tiny for the CPU check"
  TRAIN=(--model_config "$ROOT/models/hf/llama_1b.json" --seq_length 2048 --vocab_size 32000 --micro_batch_size 4
         --steps 30 --skip 5 --repeats 1 --threads 0 --bf16 --peak_tflops "$PEAK_TFLOPS")
  HOST=(--config_path "$ROOT/models/llama2/1b_config.json" --steps 20 --batch_size 4 --seq_length 512 --scale 1
        --repeats 1 --gpu)
  EVAL=(--limit 20 --batch_size 8 --device cuda)
  BUDGETS=(train:420:180 host:240:120 eval:180:60)
fi
[[ -n $TOKENIZER ]] && TRAIN+=(--tokenizer "$TOKENIZER")
[[ $TIME_LIMIT =~ ^[0-9]+$ ]] || usage_error "--time_limit must be whole seconds, got $TIME_LIMIT"
WORK=${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
mkdir -p "$WORK"
[[ -z $WORK_DIR ]] && trap 'rm -rf "$WORK"' EXIT
SKIPPED=$WORK/skipped.txt; : > "$SKIPPED"
FAILED=0

skip() { echo "$1	$2" >> "$SKIPPED"; say "skipped $1: $2"; }

# step NAME COMMAND...: run within the step's budget and the time left; its JSON is $WORK/NAME.json
step() {
  local name=$1 budget minimum left limit code spec; shift
  for spec in "${BUDGETS[@]}"; do [[ ${spec%%:*} == "$name" ]] && IFS=: read -r _ budget minimum <<< "$spec"; done
  left=$((TIME_LIMIT - ($(date +%s) - START) - 15))
  if (( left < minimum )); then skip "$name" "$left s left of the --time_limit, the step needs $minimum"; return; fi
  limit=$(( budget < left ? budget : left ))
  say "$name (at most $limit s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
  code=$?
  if (( code == 124 || code == 137 )); then skip "$name" "ran out of its $limit s"
  elif (( code != 0 )); then FAILED=1; skip "$name" "failed (exit $code): $(tail -n 3 "$WORK/$name.log" | tr '\n' ' ')"
  elif [[ ! -s $WORK/$name.json ]]; then skip "$name" "wrote no figures"
  else sed -n '/^$/,$p' "$WORK/$name.log" >&2
  fi
}

step train "$PY" "$BENCH/bench_train_overhead.py" "${TRAIN[@]}" --work_dir "$WORK/train" --output "$WORK/train.json"
if [[ -n ${TENCENTPRETRAIN_HOME:-} && -f ${TENCENTPRETRAIN_HOME:-}/pretrain.py ]]; then
  step host "$PY" "$BENCH/bench_host_trainer.py" "${HOST[@]}" --output "$WORK/host.json"
else
  skip host "no TencentPretrain work tree (set TENCENTPRETRAIN_HOME to compare the host's data loaders)"
fi
MODEL=$WORK/train/ours_0/final
if [[ -f $MODEL/config.json ]]; then
  step eval "$PY" "$BENCH/bench_eval_e2e.py" --model_path "$MODEL" "${EVAL[@]}" --output "$WORK/eval.json"
else
  skip eval "no trained model to evaluate (the training step did not finish)"
fi

"$PY" - "$WORK" "$OUTPUT" "$TINY" "$START" "$TIME_LIMIT" <<'PYEOF'
import json, sys, time
from pathlib import Path
import torch
from chatflow_plugin.files import atomic_file
work, output, tiny, start, limit = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", float(sys.argv[4]), int(sys.argv[5])
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not tiny else "cpu"
report = {"mode": "tiny (CPU)" if tiny else "gpu", "device": device, "torch": torch.__version__,
          "time_limit_seconds": limit, "steps": {}, "skipped": []}
for name in ("train", "host", "eval"):
    path = work / f"{name}.json"
    if path.is_file():
        report["steps"][name] = json.loads(path.read_text(encoding="utf-8"))
for line in (work / "skipped.txt").read_text(encoding="utf-8").splitlines():
    step, reason = line.split("\t", 1)
    report["skipped"].append({"step": step, "reason": reason})
report["seconds"] = round(time.time() - start, 1)
with atomic_file(output) as handle:
    handle.write(json.dumps(report, indent=2) + "\n")
train = report["steps"].get("train", {}).get("best", {})
for name, r in train.items():
    mfu = f", MFU {100 * r['mfu']:.1f}%" if r.get("mfu") is not None else ""
    memory = f"peak GPU {r['peak_gpu_mb']:.0f} MB" if r.get("peak_gpu_mb") else f"peak RSS {r['peak_rss_mb']:.0f} MB"
    print(f"train  {name:<40} {r['tokens_per_second']:>10.0f} tokens/s{mfu}, {memory}")
for name in ("chatflow_eval", "lm_eval"):
    r = report["steps"].get("eval", {}).get(name)
    if r:
        print(f"eval   {name:<40} {r['questions_per_second']:>10.2f} questions/s end to end")
for r in report["steps"].get("host", {}).get("runs", []):
    print(f"host   {r['trainer']:<40} {r['tokens_per_second']:>10.0f} tokens/s")
for s in report["skipped"]:
    print(f"skipped {s['step']}: {s['reason']}")
print(f"{output}: written in {report['seconds']:.0f} s (limit {limit} s)")
PYEOF
exit $FAILED
