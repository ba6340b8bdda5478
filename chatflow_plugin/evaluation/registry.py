"""The benchmarks of ChatFlow's Table 2, each described by one :class:`BenchmarkSpec` in ``BENCHMARKS``.

A spec says where the files are and how they are laid out, the language, the protocols (prompt
format, letter read, fitting rule, headline average, chance level) of each protocol set
(``--protocol official`` = the benchmark's own reference code, ``--protocol lm-eval`` =
lm-evaluation-harness 0.4.13's stock task), the display name and the paper's Table 2 values. Adding a
benchmark is adding one entry here; nothing else lists benchmark names.

References (the commits read):

* MMLU: hendrycks/test ``evaluate.py`` (4450500); lm-evaluation-harness ``tasks/mmlu/default``.
* C-Eval: hkust-nlp/ceval ``code/evaluator_series/evaluators/llama.py`` and ``eval_llama.py`` (cba65ae), which
  put the subject's file key (``operating_system``) in the header;
  lm-evaluation-harness ``tasks/ceval`` (``ceval-valid``).
* CMMLU: haonan-li/CMMLU ``src/mp_utils.py``, ``src/hf_causal_model.py`` (d6e7b71); lm-evaluation-harness
  ``tasks/cmmlu``.
* GAOKAO-Bench: OpenLMLab/GAOKAO-Bench ``Bench/`` (6dbb24f), see :mod:`.gaokao_rules`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ChatflowError
from ..languages import normalize_language
from .benchmarks import Benchmark, CsvLayout, Question, Subject, read_csv_benchmark, read_gaokao
from .prompts import PromptFormat
from .protocols import PROTOCOL_SETS, REFERENCE_MAX_LENGTH, GenerationProtocol, LetterProtocol, LmEvalTask, Protocol
from .subject_names import CEVAL_SUBJECTS_ZH, CMMLU_SUBJECTS_ZH

LM_EVAL = "lm-evaluation-harness 0.4.13"
PAPER_MODELS = ("ChatFlow", "HFL-Alpaca2", "LLaMA-2-Chat")   # the rows of the paper's Table 2, in its order


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str                        # --tasks name and the key in results.json
    display: str                     # column header in table2.md
    language: str                    # a code of chatflow_plugin.languages ("en", "zh")
    layout: str                      # the files expected under --data_dir/<name>/
    read: Callable[[Path, int], Benchmark]          # (directory, num_fewshot) -> Benchmark
    protocols: dict[str, tuple[Protocol, ...]]      # protocol set -> protocols run; the first is Table 2's
    paper: dict[str, float]          # the paper's Table 2 value (percent) per model of PAPER_MODELS
    figure2: bool = False            # tracked over training in the paper's Figure 2 (eval-curve's default)
    files: CsvLayout | None = None   # CSV benchmarks: the file layout (read by ``read``)
    lm_eval: LmEvalTask | None = None   # lm-evaluation-harness's stock task, for cross-checks

    def __post_init__(self):
        assert set(self.protocols) == set(PROTOCOL_SETS), self.name


def _spaced(name: str) -> str:
    return name.replace("_", " ")


def _zh(table: dict[str, str]) -> Callable[[str], str]:
    return lambda name: table.get(name, _spaced(name))


def _csv_reader(name: str, layout: CsvLayout, language: str) -> Callable[[Path, int], Benchmark]:
    return lambda directory, num_fewshot: read_csv_benchmark(name, layout, directory, language)


def _mmlu_official_header(s: Subject) -> str:
    # evaluate.py's format_subject prefixes every word with a space, so "about" is followed by two
    return "The following are multiple choice questions (with answers) about {}.\n\n".format(
        "".join(" " + word for word in s.name.split("_")))


_ceval_zh, _cmmlu_zh = _zh(CEVAL_SUBJECTS_ZH), _zh(CMMLU_SUBJECTS_ZH)
_MMLU_FILES = CsvLayout("test", "_{split}.csv", None)
_CEVAL_FILES = CsvLayout("val", "_{split}.csv", ("id", "question", "A", "B", "C", "D", "answer"))
_CMMLU_FILES = CsvLayout("test", ".csv", ("", "Question", "A", "B", "C", "D", "Answer"))
_ANSWER_ONLY_CMMLU = "以下是关于{}的单项选择题，请直接给出正确答案的选项。\n\n"

MMLU = BenchmarkSpec(
    name="mmlu", display="MMLU", language="en",
    layout="dev/<subject>_dev.csv and test/<subject>_test.csv, no header: question,A,B,C,D,answer",
    read=_csv_reader("mmlu", _MMLU_FILES, "en"), files=_MMLU_FILES,
    # the stock task reads cais/mmlu (a choices list, an int answer); the same text from the CSV columns
    lm_eval=LmEvalTask("mmlu/default/mmlu_{subject}.yaml", {"test": "test", "dev": "dev"},
                       ("question", "A", "B", "C", "D", "answer"), header=False, overrides={
                           "doc_to_text": "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\nAnswer:",
                           "doc_to_target": "{{['A', 'B', 'C', 'D'].index(answer)}}"}),
    protocols={
        "official": (LetterProtocol(
            "official", "hendrycks/test evaluate.py",
            "' A'..' D' after 'Answer:' (GPT-3's ' A' token: ▁A for LLaMA); the first k dev rows, the last "
            "dropped while the prompt is over 2,048 tokens (crop.py); accuracy over all questions",
            PromptFormat(_mmlu_official_header, "Answer:", " ", strip_question=False, pandas_cells=True),
            letters="continuation", fit="drop_last", average="micro", max_length=REFERENCE_MAX_LENGTH,
            count_bos=False),),
        "lm-eval": (LetterProtocol(
            "lm-eval", f"{LM_EVAL} tasks/mmlu/default",
            "' A'..' D' after 'Answer:', first k dev rows, left truncation; accuracy over all questions",
            PromptFormat(lambda s: f"The following are multiple choice questions (with answers) about "
                                   f"{_spaced(s.name)}.\n\n", "Answer:", " "),
            letters="continuation", fit="left_cut", average="micro"),),
    },
    paper={"ChatFlow": 46.8, "HFL-Alpaca2": 43.0, "LLaMA-2-Chat": 45.3}, figure2=True,
)

CEVAL = BenchmarkSpec(
    name="ceval", display="C-Eval", language="zh",
    layout="dev/<subject>_dev.csv and val/<subject>_val.csv, header id,question,A,B,C,D,answer[,explanation] "
           "(val is scored: test answers are not public)",
    read=_csv_reader("ceval", _CEVAL_FILES, "zh"), files=_CEVAL_FILES,
    lm_eval=LmEvalTask("ceval/ceval-valid_{subject}.yaml", {"val": "val", "dev": "dev"},
                       ("id", "question", "A", "B", "C", "D", "answer")),
    protocols={
        "official": (LetterProtocol(
            "official", "hkust-nlp/ceval code/evaluator_series/evaluators/llama.py + README answer-only prompt",
            "logit of tokenizer.encode(letter)[0] (▁A for LLaMA) after '答案：'; the header names the subject by "
            "its file key as eval_llama.py passes it; the first k dev rows, the last dropped while the prompt is "
            "over 2,048 tokens (max_seq_len); mean of subject accuracies",
            PromptFormat(lambda s: f"以下是中国关于{s.name}考试的单项选择题，请选出其中的正确答案。\n\n",
                         "答案：", "", strip_question=False, pandas_cells=True),
            letters="encode_first", fit="drop_last", average="macro", max_length=REFERENCE_MAX_LENGTH),),
        "lm-eval": (LetterProtocol(
            "lm-eval", f"{LM_EVAL} tasks/ceval (ceval-valid)",
            "' A'..' D' after '答案：', first k dev rows, left truncation; accuracy over all questions",
            PromptFormat(lambda s: f"以下是中国关于{_ceval_zh(s.name)}的单项选择题，请选出其中的正确答案。\n\n",
                         "答案：", " "),
            letters="continuation", fit="left_cut", average="micro"),),
    },
    paper={"ChatFlow": 43.1, "HFL-Alpaca2": 39.9, "LLaMA-2-Chat": 31.7}, figure2=True,
)

CMMLU = BenchmarkSpec(
    name="cmmlu", display="CMMLU", language="zh",
    layout="dev/<subject>.csv and test/<subject>.csv, header ,Question,A,B,C,D,Answer",
    read=_csv_reader("cmmlu", _CMMLU_FILES, "zh"), files=_CMMLU_FILES,
    lm_eval=LmEvalTask("cmmlu/cmmlu_{subject}.yaml", {"test": "test", "dev": "dev"},
                       ("Question", "A", "B", "C", "D", "Answer")),
    protocols={
        "official": (LetterProtocol(
            "official", "haonan-li/CMMLU src/mp_utils.py + src/hf_causal_model.py",
            "logit of the vocabulary piece 'A' (convert_tokens_to_ids) after '答案是：'; the first k dev rows, the "
            "longest dropped while they do not fit 2,048 tokens (--max_length); mean of subject accuracies",
            PromptFormat(lambda s: _ANSWER_ONLY_CMMLU.format(_cmmlu_zh(s.name)), "答案是：", "", question_prefix="题目：",
                         strip_question=False, pandas_cells=True),
            letters="vocab_piece", fit="drop_longest", average="macro", max_length=REFERENCE_MAX_LENGTH),),
        "lm-eval": (LetterProtocol(
            "lm-eval", f"{LM_EVAL} tasks/cmmlu",
            "' A'..' D' after '答案：', first k dev rows, left truncation; accuracy over all questions",
            PromptFormat(lambda s: _ANSWER_ONLY_CMMLU.format(_cmmlu_zh(s.name)), "答案：", " "),
            letters="continuation", fit="left_cut", average="micro"),),
    },
    paper={"ChatFlow": 40.2, "HFL-Alpaca2": 39.4, "LLaMA-2-Chat": 32.1},
)

_GAOKAO_LETTERS = LetterProtocol(
    "paper", "ChatFlow Table 2's '3-shot' (our reading; GAOKAO-Bench has no few-shot protocol), scored by "
    "OpenLMLab/GAOKAO-Bench Bench/OBJ_score_evaluation.py",
    "every objective subset: after '【答案】:' following the subject's prefix prompt, the best of ' A'..' D' "
    "(single-choice), of the 15 letter sets written ' BD <eoa>' (multiple-answer), or one letter per "
    "sub-question left to right (multi-question: A-D, 5-of-7: A-G); the first k questions of each file are "
    "the exemplars (not scored), the last dropped while the prompt is over 2,048 tokens; scored by "
    "GAOKAO-Bench's rules (a proper subset of a multiple answer earns half, each sub-question its item's "
    "score); earned / possible exam points",
    PromptFormat(lambda s: s.header.rstrip("\n") + "\n", "【答案】:", " ", exemplar_suffix=" <eoa>"),
    letters="continuation", fit="drop_last", average="points", label="3-shot letters",
    kinds=("single_choice", "multi_choice", "multi_question_choice", "five_out_of_seven"),
    max_length=REFERENCE_MAX_LENGTH)

GAOKAO = BenchmarkSpec(
    name="gaokao", display="GAOKAO", language="zh",
    layout="Obj_Prompt.json + Objective_Questions/*.json ({\"keywords\", \"example\": [{question, answer: [..], "
           "score, ...}]}); no dev split",
    read=lambda directory, num_fewshot: read_gaokao(directory, num_fewshot, "gaokao", "zh"),
    protocols={
        "official": (_GAOKAO_LETTERS, GenerationProtocol(
            "official", "OpenLMLab/GAOKAO-Bench Bench/objective_bench.py, bench_function.py, OBJ_score_evaluation.py",
            "zero-shot greedy generation after the subject's prefix prompt; answers extracted and scored by "
            "GAOKAO-Bench's rules for single-choice, multiple-answer, multi-question and 5-of-7 questions; "
            "earned / possible exam points", label="0-shot generation")),
        "lm-eval": (_GAOKAO_LETTERS,),
    },
    paper={"ChatFlow": 40.7, "HFL-Alpaca2": 36.2, "LLaMA-2-Chat": 27.3},
)

BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in (MMLU, CEVAL, CMMLU, GAOKAO)}
FIGURE2 = tuple(name for name, spec in BENCHMARKS.items() if spec.figure2)


def benchmarks_of_language(code: str) -> list[str]:
    """The benchmarks in ``code``'s language (any form :func:`chatflow_plugin.languages.normalize_language` takes),
    in registry order: ``zh`` -> ceval, cmmlu, gaokao; a language without one -> []."""
    wanted = normalize_language(code)
    return [name for name, spec in BENCHMARKS.items() if normalize_language(spec.language) == wanted]


def spec_of(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ChatflowError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})") from None


def protocols_of(name: str, protocol_set: str = "official") -> tuple[Protocol, ...]:
    if protocol_set not in PROTOCOL_SETS:
        raise ChatflowError(f"unknown protocol set {protocol_set!r} (choose from {', '.join(PROTOCOL_SETS)})")
    return spec_of(name).protocols[protocol_set]


def load_benchmark(name: str, data_dir: str | Path, num_fewshot: int) -> Benchmark:
    """One benchmark from ``data_dir`` (the benchmark's own directory, e.g. ``.../mmlu``)."""
    spec = spec_of(name)
    if num_fewshot < 0:
        raise ChatflowError(f"num_fewshot must be >= 0, got {num_fewshot}")
    bench = spec.read(Path(data_dir), num_fewshot)
    if not bench.subjects:
        first = (f" ({len(bench.skipped)} problems, first: {bench.skipped[0].location}: {bench.skipped[0].reason})"
                 if bench.skipped else "")
        raise ChatflowError(f"{name}: no subject in {data_dir} has valid questions{first}")
    return bench


def build_prompt(benchmark: str, subject: Subject, question: Question, num_fewshot: int,
                 protocol_set: str = "official") -> tuple[str, list[str]]:
    """(k-shot context, answer texts as the exemplars write them) of the benchmark's Table 2 protocol in
    ``protocol_set``, without fitting to a context length. Which tokens are scored for the letters is
    the protocol's letter rule (:func:`.protocols.letter_targets`)."""
    protocol = protocols_of(benchmark, protocol_set)[0]
    return protocol.format.context(subject, question, num_fewshot), protocol.format.answers()


def shared_prefix(benchmark: str, subject: Subject, num_fewshot: int, protocol_set: str = "official") -> str:
    """The leading part of every context of ``subject`` in :func:`build_prompt` (header and exemplars)."""
    return protocols_of(benchmark, protocol_set)[0].format.prefix(subject, num_fewshot)
