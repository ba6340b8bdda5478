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
  local spec=" ${1//[$'\n\t']/ } " name var     # the SPEC may span lines
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

# json_set FILE KEY VALUE [KEY VALUE ...]: set top-level keys of a JSON object file, atomically (a VALUE that
# parses as JSON is stored as that value, else as a string)
json_set() {
  "$PY" - "$@" <<'PYEOF'
import json, sys
from chatflow_plugin.files import atomic_file
path, pairs = sys.argv[1], sys.argv[2:]
data = json.load(open(path, encoding="utf-8"))
for key, value in zip(pairs[::2], pairs[1::2]):
    try:
        data[key] = json.loads(value)
    except ValueError:
        data[key] = value
with atomic_file(path) as handle:
    handle.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
PYEOF
}

# mixture_files MIXTURE DATA_ROOT LANGUAGE: the input files of the mixture's sources written in LANGUAGE (a code of
# chatflow_plugin/languages.py), one per line: the corpora vocabulary expansion mines. A DATA_ROOT of "<...>" (a
# placeholder of a dry run) or one whose files are missing lists "<files of SOURCE>" instead.
mixture_files() {
  "$PY" - "$1" "$2" "$3" <<'PYEOF'
import sys
from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.languages import languages_of, normalize_language
root = sys.argv[2] if sys.argv[2] and not sys.argv[2].startswith("<") else None
spec = load_mixture(sys.argv[1]).with_overrides(data_root=root)
wanted = normalize_language(sys.argv[3])
try:
    files = spec.resolve_files()
except ChatflowError:
    files = {s.name: [f"<files of {s.name}>"] for _, s in spec.sources}
for group, source in spec.sources:
    if languages_of(source.language) == (wanted,):
        for path in files[source.name]:
            print(path)
PYEOF
}

# The English foundations the --tiny modes share (`chatflow demo --foundation_cache`): one is trained per set of
# data, settings, code and library versions, and every later demo copies it instead of training it again (the
# entries are keyed by all of these, so none is ever stale; concurrent scripts wait for the one building it).
# CHATFLOW_CACHE_DIR moves it (default: $XDG_CACHE_HOME/chatflow, else ~/.cache/chatflow); deleting it is safe.
FOUNDATION_CACHE=${CHATFLOW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatflow}/foundations

# tiny_demo OUTPUT_DIR [demo options...]: the CPU miniature (`chatflow demo --quick`) other --tiny modes build on:
# English tokenizer and foundation (from the shared cache) -> vocabulary expansion -> the continued-training runs
# -> HF release; `--stop_after foundation|mixture` and `--run_kinds` make only what a script needs.
tiny_demo() {
  local out=$1; shift
  say "the CPU miniature: chatflow demo --quick --output_dir $out $*"
  chatflow demo --quick --output_dir "$out" --foundation_cache "$FOUNDATION_CACHE" "$@"
}

# The bundled synthetic benchmark files (public layouts of MMLU, C-Eval, CMMLU and GAOKAO-Bench).
TINY_BENCHMARKS=$ROOT/corpora/benchmarks

# tiny_models [--english] OUT VOCAB_SIZE NAME [NAME ...]: for --tiny / --smoke modes that need models without a demo
# run: a byte-fallback BPE sentencepiece tokenizer trained on the bundled corpora (OUT/spm.model; with --english on
# their English text only, as LLaMA-2's is English-centric, so Chinese characters are left to vocabulary
# expansion) and one tiny random LLaMA per NAME (the architecture of models/hf/demo_tiny.json, which
# models/llama2/tiny_config.json mirrors for the host; seed = its position), saved as OUT/NAME in HF format with
# tokenizer files.
tiny_models() {
  local english=0
  [[ ${1:-} == --english ]] && { english=1; shift; }
  local out=$1 vocab=$2; shift 2
  mkdir -p "$out"
  "$PY" - "$ROOT" "$out" "$vocab" "$english" "$@" <<'PYEOF'
import json, sys
from pathlib import Path
import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from chatflow_plugin.tokenizer import write_hf_tokenizer_files
root, out, vocab, english, names = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5:]
fields = ("text", "en", "instruction", "input", "output") if english else ("text", "en", "zh", "instruction", "input", "output")
with open(out / "spm_text.txt", "w", encoding="utf-8") as handle:   # every field with text (English: no zh_* folder)
    for path in sorted((root / "corpora").glob("*/*.jsonl")):
        if english and path.parent.name.startswith("zh"):
            continue
        for line in open(path, encoding="utf-8"):
            record = json.loads(line)
            for value in [record.get(k) for k in fields]:
                if isinstance(value, str) and value.strip():
                    handle.write(value.replace("\n", " ") + "\n")
spm.SentencePieceTrainer.train(
    input=str(out / "spm_text.txt"), model_prefix=str(out / "spm"), vocab_size=vocab, model_type="bpe",
    byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, split_digits=True,
    num_threads=2, minloglevel=2, add_dummy_prefix=True, remove_extra_whitespaces=False,
    normalization_rule_name="identity")
size = spm.SentencePieceProcessor(model_file=str(out / "spm.model")).get_piece_size()
architecture = json.loads((root / "models" / "hf" / "demo_tiny.json").read_text(encoding="utf-8"))
for seed, name in enumerate(names):
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(**{**architecture, "vocab_size": size})).save_pretrained(out / name)
    bad = write_hf_tokenizer_files(out / "spm.model", out / name)
    assert not bad, bad
PYEOF
}
