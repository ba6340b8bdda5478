# Shared by every script in scripts/ (sourced, not run): the checkout's root, the Python and `chatflow` to use,
# messages, the flag parser and the --tiny demo. Scripts never change the working directory: relative paths the
# user gives are relative to where the user runs the script; the project's own files are named by $ROOT.
#
# Flags: a script declares its flags and defaults, then calls `parse_flags "SPEC" "$@"`, where SPEC lists
# `bool:NAME` (a switch, sets NAME=1) and `value:NAME` (takes one argument) words; `--NAME` sets the upper-case
# shell variable of that name (--output_dir DIR sets OUTPUT_DIR). Arguments after `--` go to EXTRA, other
# arguments to POSITIONAL. `-h`/`--help` prints the script's header comment.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT=$(basename "$0" .sh)
PY=${PYTHON:-python}
EXTRA=(); POSITIONAL=()

chatflow() { "$PY" -m chatflow_plugin.cli "$@"; }
say() { echo "[$SCRIPT $(date -u +%H:%M:%S)] $*" >&2; }
die() { echo "$SCRIPT: error: $*" >&2; exit 2; }
usage() { sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
# usage_error MESSAGE: the script's synopsis lines (its header's `scripts/NAME.sh ...` lines), the message, exit 2
usage_error() {
  sed -n '2,/^[^#]/p' "$0" | grep -E '^#   scripts/' | sed -E 's/^#   /usage: /' >&2
  die "$*"
}

parse_flags() {
  local spec=" $1 " name var
  shift
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --) shift; EXTRA=("$@"); return 0 ;;
      --*)
        name=${1#--}; var=${name^^}
        if [[ $spec == *" bool:$name "* ]]; then
          printf -v "$var" 1; shift
        elif [[ $spec == *" value:$name "* ]]; then
          [[ $# -ge 2 && $2 != --* ]] || die "--$name needs a value (see --help)"
          printf -v "$var" '%s' "$2"; shift 2
        else
          die "unknown argument $1 (see --help)"
        fi ;;
      *) POSITIONAL+=("$1"); shift ;;
    esac
  done
}

# json_field FILE KEY[.KEY...]: one field of a JSON file
json_field() {
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
value = json.load(open(sys.argv[1], encoding="utf-8"))
for key in sys.argv[2].split("."):
    value = value[key]
print(value)
PYEOF
}

# mixture_files MIXTURE DATA_ROOT LANGUAGE: the input files of the mixture's sources written in LANGUAGE (a code of
# chatflow_plugin/languages.py), one per line: the corpora vocabulary expansion mines.
mixture_files() {
  "$PY" - "$1" "$2" "$3" <<'PYEOF'
import sys
from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.languages import languages_of, normalize_language
spec = load_mixture(sys.argv[1]).with_overrides(data_root=sys.argv[2])
files, wanted = spec.resolve_files(), normalize_language(sys.argv[3])
for group, source in spec.sources:
    if languages_of(source.language) == (wanted,):
        for path in files[source.name]:
            print(path)
PYEOF
}

# tiny_demo OUTPUT_DIR [demo options...]: the CPU miniature (`chatflow demo --quick`) other --tiny modes build on:
# English tokenizer and foundation -> vocabulary expansion -> dynamic / static / two-stage runs -> HF release.
tiny_demo() {
  local out=$1; shift
  say "the CPU miniature: chatflow demo --quick --output_dir $out $*"
  chatflow demo --quick --output_dir "$out" "$@"
}

# The bundled synthetic benchmark files (public layouts of MMLU, C-Eval, CMMLU and GAOKAO-Bench).
TINY_BENCHMARKS=$ROOT/corpora/benchmarks

# tiny_models OUT VOCAB_SIZE NAME [NAME ...]: for --tiny modes that need chat models without a demo run: a
# byte-fallback BPE sentencepiece tokenizer trained on the bundled corpora (OUT/spm.model) and one tiny random
# LLaMA per NAME (hidden 64, 2 layers, seed = its position), saved as OUT/NAME in HF format with tokenizer files.
tiny_models() {
  local out=$1 vocab=$2; shift 2
  mkdir -p "$out"
  "$PY" - "$ROOT/corpora" "$out" "$vocab" "$@" <<'PYEOF'
import json, sys
from pathlib import Path
import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from chatflow_plugin.tokenizer import write_hf_tokenizer_files
corpora, out, vocab, names = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
with open(out / "spm_text.txt", "w", encoding="utf-8") as handle:   # both languages, every field with text
    for path in sorted(corpora.glob("*/*.jsonl")):
        for line in open(path, encoding="utf-8"):
            record = json.loads(line)
            for value in [record.get(k) for k in ("text", "en", "zh", "instruction", "input", "output")]:
                if isinstance(value, str) and value.strip():
                    handle.write(value.replace("\n", " ") + "\n")
spm.SentencePieceTrainer.train(
    input=str(out / "spm_text.txt"), model_prefix=str(out / "spm"), vocab_size=vocab, model_type="bpe",
    byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, split_digits=True,
    num_threads=2, minloglevel=2, add_dummy_prefix=True, remove_extra_whitespaces=False,
    normalization_rule_name="identity")
size = spm.SentencePieceProcessor(model_file=str(out / "spm.model")).get_piece_size()
for seed, name in enumerate(names):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=size, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(out / name)
    bad = write_hf_tokenizer_files(out / "spm.model", out / name, model_max_length=512)
    assert not bad, bad
PYEOF
}
