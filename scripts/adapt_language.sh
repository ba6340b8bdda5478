#!/usr/bin/env bash
# ChatFlow's recipe for another target language of chatflow_plugin/languages.py (Japanese by default) on the
# HuggingFace backend: expand the English model's tokenizer with the language's scripts (a sentencepiece model
# like LLaMA-2's, or a byte-level BPE tokenizer.json like LLaMA-3's or Qwen2's), new embedding/output rows = the
# mean of the rows of the sub-tokens the original tokenizer splits each new piece into, tokenize the language's
# mixture (models/mixtures/japanese_table1.json: Table 1's six groups with Japanese in Chinese's place), continue
# training with the dynamic sampler, and measure language fidelity on the table's default prompts.
#
#   scripts/adapt_language.sh --tiny [--output_dir DIR]
#       CPU, a couple of minutes: `chatflow demo --quick --mixture models/mixtures/demo_ja.json` on a small
#       Japanese sample (a few dozen sentences written into this script and recombined: it shows that the recipe
#       runs end to end for Japanese, it teaches the tiny model little), then `chatflow fidelity` of the released
#       model on the table's Japanese and English prompts. Leaves DIR/demo/ and DIR/fidelity.json.
#
#   scripts/adapt_language.sh --model HF_DIR --data_root DIR --output_dir DIR [--language ja]
#       [--mixture models/mixtures/japanese_table1.json] [--max_new_pieces 6000] [--strategy added_tokens|merges]
#       [--gpus 8] [--steps 60000] [--batch_size 8] [--lr 2e-5] [--workers 32]
#       Full scale. HF_DIR: any LLaMA-family model in HuggingFace format (LLaMA-2 or -3, Mistral, Qwen2), with its
#       tokenizer (tokenizer.model is expanded as sentencepiece when there is one, else tokenizer.json as
#       byte-level BPE); DIR: the mixture's sources laid out as the mixture file names them (or edit it).
#       Characters are mined from the mixture's groups in --language. Steps, batch size and learning rate are
#       this script's defaults, not tuned values. The run: OUT/expanded (model + tokenizer), OUT/dataset,
#       OUT/run (checkpoints, logs, final/), OUT/fidelity.json.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
TINY=0; OUTPUT_DIR=""; MODEL=""; DATA_ROOT=""; LANGUAGE=ja; MIXTURE=""; MAX_NEW_PIECES=6000; STRATEGY=""
GPUS=8; STEPS=60000; BATCH_SIZE=8; LR=2e-5; WORKERS=32
parse_flags "bool:tiny value:output_dir value:model value:data_root value:language value:mixture
             value:max_new_pieces value:strategy value:gpus value:steps value:batch_size value:lr value:workers" "$@"

if [[ $TINY == 1 ]]; then
  OUT=${OUTPUT_DIR:-runs/adapt_language_tiny}
  mkdir -p "$OUT"
  say "a small Japanese sample (sentences written into this script) under $OUT/data"
  "$PY" - "$OUT/data" <<'PYEOF'
import json, random, sys
from pathlib import Path
root = Path(sys.argv[1])
pairs = [("The bus stops in front of the hospital.", "バスは病院の前に止まります。"),
         ("My brother plays the piano after school.", "弟は放課後にピアノを弾きます。"),
         ("The shop opens at ten in the morning.", "その店は朝十時に開きます。"),
         ("We watched the stars from the roof.", "私たちは屋上から星を見ました。"),
         ("The children are swimming in the sea.", "子どもたちは海で泳いでいます。"),
         ("She sent a letter to her grandmother.", "彼女はおばあさんに手紙を送りました。"),
         ("The train was late because of the snow.", "雪のせいで電車が遅れました。"),
         ("I left my umbrella at the office.", "会社に傘を忘れました。"),
         ("The park is full of cherry blossoms in spring.", "春になると公園は桜でいっぱいです。"),
         ("He cooks dinner for his family on Sundays.", "彼は日曜日に家族のために夕食を作ります。"),
         ("The library is quiet in the evening.", "夕方の図書館は静かです。"),
         ("Our teacher speaks three languages.", "私たちの先生は三つの言葉を話します。")]
questions = [("東京から大阪まで新幹線でどのくらいかかりますか。", "新幹線でおよそ二時間半かかります。"),
             ("日本で一番高い山は何ですか。", "日本で一番高い山は富士山です。"),
             ("お茶とコーヒーではどちらが好きですか。", "私は温かいお茶のほうが好きです。"),
             ("明日の天気はどうですか。", "明日は晴れて、少し暖かくなるでしょう。")]
rng = random.Random(0)
def write(group, records):
    (root / group).mkdir(parents=True, exist_ok=True)
    (root / group / "sample.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
def doc(side):
    return ("" if side else " ").join(rng.choice(pairs)[side] for _ in range(rng.randint(4, 9)))
write("en_corpus", [{"text": doc(0)} for _ in range(300)])
write("ja_corpus", [{"text": doc(1)} for _ in range(300)])
write("parallel", [dict(zip(("en", "ja"), rng.choice(pairs))) for _ in range(200)])
write("en_inst", [{"instruction": "Repeat this sentence: " + en, "input": "", "output": en}
                  for en, _ in (rng.choice(pairs) for _ in range(150))])
write("ja_inst", [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
                  for q, a in (rng.choice(questions) for _ in range(150))])
PYEOF
  say "chatflow demo --quick --mixture models/mixtures/demo_ja.json --data_dir $OUT/data --output_dir $OUT/demo"
  chatflow demo --quick --mixture "$ROOT/models/mixtures/demo_ja.json" --data_dir "$OUT/data" --output_dir "$OUT/demo" \
    --foundation_cache "$FOUNDATION_CACHE"
  chatflow fidelity --model "$OUT/demo/release" --languages ja,en --max_new_tokens 24 --output "$OUT/fidelity.json"
  say "report: $OUT/demo/report/report.md; fidelity: $OUT/fidelity.json"
  exit 0
fi

[[ -n $MODEL && -n $DATA_ROOT && -n $OUTPUT_DIR ]] || usage_error "full scale needs --model, --data_root and --output_dir (see --help)"
[[ -f $MODEL/config.json ]] || die "$MODEL: expected a HuggingFace model directory (config.json and its tokenizer)"
MIXTURE=${MIXTURE:-$ROOT/models/mixtures/japanese_table1.json}
OUT=$OUTPUT_DIR
mkdir -p "$OUT"
TOKENIZER=$MODEL; NEW_TOKENIZER=$OUT/tokenizer          # byte-level BPE: tokenizer.json, expanded into a folder
if [[ -f $MODEL/tokenizer.model ]]; then TOKENIZER=$MODEL/tokenizer.model; NEW_TOKENIZER=$OUT/tokenizer.model; fi

say "1/4 vocabulary expansion: $LANGUAGE characters mined from the mixture's $LANGUAGE groups, sub-token-mean rows"
if [[ ! -f $OUT/expanded/config.json ]]; then
  mapfile -t CORPORA < <(mixture_files "$MIXTURE" "$DATA_ROOT" "$LANGUAGE")
  [[ ${#CORPORA[@]} -gt 0 ]] || die "$MIXTURE has no source in language $LANGUAGE under $DATA_ROOT"
  args=(--tokenizer "$TOKENIZER" --output_tokenizer "$NEW_TOKENIZER" --language "$LANGUAGE" --force
        --max_new_pieces "$MAX_NEW_PIECES" --checkpoint "$MODEL" --output_checkpoint "$OUT/expanded"
        --report "$OUT/expand_report.json")
  for f in "${CORPORA[@]}"; do args+=(--corpus "$f"); done
  [[ -n $STRATEGY ]] && args+=(--strategy "$STRATEGY")
  chatflow expand-vocab "${args[@]}"
fi

say "2/4 tokenize the mixture with the expanded tokenizer"
if [[ ! -f $OUT/dataset/manifest.json ]]; then
  chatflow preprocess --mixture "$MIXTURE" --data_root "$DATA_ROOT" --tokenizer "$OUT/expanded" \
    --output_dir "$OUT/dataset" --workers "$WORKERS"
fi

say "3/4 continued training with the dynamic sampler (HF backend, torchrun + DeepSpeed ZeRO-3)"
torchrun --nproc_per_node "$GPUS" -m chatflow_plugin.cli train --dataset_dir "$OUT/dataset" \
  --model_path "$OUT/expanded" --output_dir "$OUT/run" --train_steps "$STEPS" --micro_batch_size "$BATCH_SIZE" \
  --learning_rate "$LR" --warmup_steps 500 --bf16 --log_every 50 --save_every 5000 \
  --deepspeed "$ROOT/models/hf/deepspeed_zero3_hf.json"

say "4/4 language fidelity of the result on the table's $LANGUAGE and English prompts"
chatflow fidelity --model "$OUT/run/final" --languages "$LANGUAGE,en" --output "$OUT/fidelity.json"
say "done: $OUT/run/final (benchmarks: chatflow eval --model $OUT/run/final ...)"
