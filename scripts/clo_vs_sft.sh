#!/usr/bin/env bash
# CLO vs SFT side by side on the same data (CLO arXiv 2505.14297: N CLO pairs vs 2N SFT samples, the
# paper's 3,200 vs 6,400), reporting target-language loss, English loss and language fidelity.
#
#   scripts/clo_vs_sft.sh --tiny [--output_dir DIR]
#       CPU-sized: builds a tokenizer and a tiny random LLaMA, makes it English-centric (English
#       instructions + Chinese text continuation), then compares CLO (100 pairs, attention only) with
#       SFT (200 target samples, all weights) on aligned en/zh instruction pairs from the bundled
#       synthetic world (corpora/). About 2 minutes on 2 cores. `--tiny --model_path DIR` starts
#       from an existing small model (e.g. the demo's) instead.
#       The numbers exercise the pipeline; a model this small is not evidence about the method.
#
#   scripts/clo_vs_sft.sh --model_path START_MODEL --data_dir TRIPLES_DIR --heldout_dir TRIPLES_DIR --output_dir DIR \
#       [--pairs 3200] [--fidelity_limit 400] [-- extra clo-train options for both runs]
#       Full size: START_MODEL is an English-centric HF LLaMA directory, TRIPLES_DIR a `chatflow clo-data`
#       directory with at least 2 x pairs pairs, HELDOUT_DIR held-out triples.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; MODEL_PATH=""; DATA_DIR=""; HELDOUT_DIR=""; OUTPUT_DIR=""; PAIRS=3200; FIDELITY_LIMIT=400
parse_flags "bool:tiny value:model_path value:data_dir value:heldout_dir value:output_dir value:pairs value:fidelity_limit
             alias:model=model_path alias:data=data_dir alias:eval_data=heldout_dir" "$@"
OUT=$OUTPUT_DIR; EVAL=$HELDOUT_DIR; FID_LIMIT=$FIDELITY_LIMIT

if [[ $TINY == 1 ]]; then
  OUT=${OUT:-runs/clo_vs_sft_tiny}
  PAIRS=100; FID_LIMIT=80
  make_output_dir "$OUT"
  say "aligned en/zh instruction pairs from the synthetic world in corpora/ -> $OUT/inputs"
  "$PY" - "$OUT" "$ROOT/corpora" <<'EOF'
import json, random, sys
from pathlib import Path
out, corpora = Path(sys.argv[1]) / "inputs", Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
sys.path.insert(0, str(corpora))
import synth_instructions                      # the bundled corpora's generator: both languages per task
from synth_world import build_world
world = build_world(0)
rng = random.Random("clo_vs_sft/tiny")
seen, records = set(), []
while len(records) < 800 + 260 + 80:           # English SFT start | CLO/SFT pairs | held-out pairs
    # (more than 2 x 100 and 60: clo-data drops pairs whose two responses are identical, e.g. arithmetic)
    q = synth_instructions.instruction(rng, world)
    key = (q["en"], q["zh"])
    if key in seen:
        continue
    seen.add(key)
    records.append({lang: {"instruction": t[0], "input": t[1], "output": t[2]} for lang, t in q.items()})
for name, part in (("train", records[800:1060]), ("eval", records[1060:])):
    with open(out / f"{name}_pairs.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
# The start model must know Chinese but follow instructions in English, like the paper's English-centric
# models: English instructions, plus Chinese text continuation ("continue the text" with a Chinese
# first sentence) standing in for pre-training on Chinese text. Written as pairs so that
# `clo-train --objective sft --sft_languages both` trains on both columns; they are not translations.
zh_texts = [json.loads(line)["text"] for line in open(corpora / "zh_corpus/synthetic_zh.jsonl", encoding="utf-8")]
with open(out / "start_pairs.jsonl", "w", encoding="utf-8") as handle:
    for record, text in zip(records[:800], zh_texts):
        head, sep, rest = text.partition("。")
        if not rest.strip():
            continue
        zh = {"instruction": "续写下面的文字。", "input": head + sep, "output": rest}
        handle.write(json.dumps({"en": record["en"], "zh": zh}, ensure_ascii=False) + "\n")
EOF
  for split in start train eval; do
    chatflow clo-data --parallel "$OUT/inputs/${split}_pairs.jsonl" --output_dir "$OUT/${split}_triples" --force 2>/dev/null
  done
  if [[ -z $MODEL_PATH ]]; then
    say "tokenizer and a tiny random LLaMA (hidden 64, 2 layers) -> $OUT/random_model"
    tiny_models "$OUT" 2000 random_model
    say "English-centric start: SFT on ~800 English instructions + ~800 Chinese text continuations -> $OUT/start"
    chatflow clo-train --model_path "$OUT/random_model" --data_dir "$OUT/start_triples" --output_dir "$OUT/start" \
      --objective sft --sft_languages both --epochs 3 --micro_batch_size 16 --learning_rate 3e-3 \
      --max_length 128 --log_every 50 --save_every 0 --use_cpu --quiet --force
    MODEL_PATH="$OUT/start/final"
  fi
  DATA_DIR="$OUT/train_triples"; EVAL="$OUT/eval_triples"
  COMMON=(--max_length 128 --epochs 3 --log_every 10 --save_every 0 --use_cpu --quiet --force)
  SFT_ARGS=(--micro_batch_size 8 --learning_rate 3e-3)
  CLO_ARGS=(--micro_batch_size 4 --learning_rate 1e-3)
else
  [[ -n $MODEL_PATH && -n $DATA_DIR && -n $EVAL && -n $OUT ]] || usage_error "need --tiny, or --model_path, --data_dir, --heldout_dir and --output_dir"
  COMMON=(--save_every 500 "${EXTRA[@]}")
  SFT_ARGS=(); CLO_ARGS=()
fi

SFT_N=$((2 * PAIRS))
say "SFT: $SFT_N target-language samples, all weights -> $OUT/sft"
chatflow clo-train --model_path "$MODEL_PATH" --data_dir "$DATA_DIR" --heldout_dir "$EVAL" --output_dir "$OUT/sft" \
  --objective sft --max_pairs "$SFT_N" "${SFT_ARGS[@]}" "${COMMON[@]}"
say "CLO: $PAIRS pairs ($((2 * PAIRS)) triples), attention only -> $OUT/clo"
chatflow clo-train --model_path "$MODEL_PATH" --data_dir "$DATA_DIR" --heldout_dir "$EVAL" --output_dir "$OUT/clo" \
  --objective clo --max_pairs "$PAIRS" "${CLO_ARGS[@]}" "${COMMON[@]}"

for run in start sft clo; do
  dir="$OUT/$run/final"; [[ $run == start ]] && dir="$MODEL_PATH"
  say "language fidelity of $run on $FID_LIMIT held-out prompts"
  chatflow fidelity --model_path "$dir" --prompts "$EVAL" --limit "$FID_LIMIT" \
    --max_new_tokens 48 --output "$OUT/fidelity_$run.json"
done

"$PY" - "$OUT" "$PAIRS" <<'EOF'
import json, sys
from pathlib import Path
out, pairs = Path(sys.argv[1]), int(sys.argv[2])
sft_eval = json.loads((out / "sft/eval.json").read_text())
rows = [("start", "-", sft_eval["before"]), ("SFT", f"{2 * pairs} target samples, all weights", sft_eval["after"]),
        ("CLO", f"{pairs} pairs, attention only", json.loads((out / "clo/eval.json").read_text())["after"])]
lines = ["| model | training data | target-language NLL | English NLL | fidelity (target) | fidelity (English) | fidelity (all) |",
         "|---|---|---:|---:|---:|---:|---:|"]
report = {}
for name, data, ev in rows:
    fid = json.loads((out / f"fidelity_{name.lower()}.json").read_text())
    per = fid["per_language"]
    target = [k for k in per if k != "en"]
    t = per[target[0]]["fidelity"] if target else float("nan")
    e = per.get("en", {}).get("fidelity", float("nan"))
    lines.append(f"| {name} | {data} | {ev['target_nll']:.4f} | {ev['source_nll']:.4f} | {t:.3f} | {e:.3f} | {fid['fidelity']:.3f} |")
    report[name] = {"target_nll": ev["target_nll"], "english_nll": ev["source_nll"], "fidelity": fid["fidelity"],
                    "fidelity_per_language": per}
text = "\n".join(lines)
(out / "report.md").write_text(f"# CLO vs SFT\n\nHeld-out pairs: {sft_eval['before']['pairs']} "
                               f"(NLL per response token; fidelity on {fid['n']} prompts, greedy).\n\n{text}\n", encoding="utf-8")
(out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
print(text)
EOF
say "report: $OUT/report.md"
