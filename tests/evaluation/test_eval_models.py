"""Tiny models for the evaluation tests (imported by the other test_eval* modules) and their own checks.

* ``hf_tokenizer_dir``: ``tokenizer.model`` + ``tokenizer_config.json`` that ``AutoTokenizer`` loads,
  checked id-for-id against sentencepiece.
* ``tiny_llama_dir``: a random 2-layer ``LlamaForCausalLM`` saved with that tokenizer.
* ``OracleLM``: a stand-in causal LM, used only in tests, that puts all probability on the gold
  letter of the question whose prompt it is given (or, with no answers, uniform logits).
"""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from chatflow_plugin.evaluation.scoring import encode, split_continuation

TEXTS = ["The following are multiple choice questions.\nA. one\nAnswer: B", "以下是中国关于法学考试的单项选择题。\n答案：C",
         "题目：水的化学式是\nA. H2O\n答案是：A", "【答案】: D <eoa>", "  spaces  and\ttabs 123",
         "以下是关于中国历史的单项选择题 答案是 A", "the model learns 语言 from data 123"]


def write_tokenizer_dir(spm_model: Path, out: Path) -> Path:
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spm_model, out / "tokenizer.model")
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = dict(special, tokenizer_class="LlamaTokenizer", add_bos_token=True, add_eos_token=False, legacy=False,
                  model_max_length=4096, clean_up_tokenization_spaces=False)
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    return out


def write_tiny_llama(spm_model: Path, out: Path, seed: int = 0, layers: int = 2, hidden: int = 32,
                     vocab_size: int | None = None) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    import sentencepiece as spm

    vocab = vocab_size or spm.SentencePieceProcessor(model_file=str(spm_model)).vocab_size()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():   # larger random weights: a random model with clearly non-uniform predictions
        model.lm_head.weight.normal_(0, 1.0)
    model.save_pretrained(out)
    write_tokenizer_dir(spm_model, out)
    return out


def _letters_text(n_lines: int = 1500, seed: int = 1) -> str:
    """Exam-like lines with capital option letters, so the tokenizer learns LLaMA's ``▁A`` and ``A`` pieces."""
    import random

    from conftest import EN_WORDS, ZH_CHARS, _training_text

    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        letter = "ABCD"[i % 4]
        words = " ".join(rng.choice(EN_WORDS) for _ in range(6))
        zh = "".join(rng.choice(ZH_CHARS) for _ in range(10))
        lines += [f"{words}?", f"A. {rng.choice(EN_WORDS)} B. {rng.choice(EN_WORDS)} C. {zh} D. {zh}", f"Answer: {letter}",
                  f"{zh}\n答案：{letter}", f"题目：{zh}\n答案是：{letter}", f"【答案】: {letter} <eoa>"]
    return _training_text() + "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def letters_llama_dir(tmp_path_factory) -> Path:
    """A tiny LLaMA whose tokenizer, like LLaMA's, has the pieces ``▁A``..``▁D`` and ``A``..``D``."""
    from conftest import train_spm

    root = tmp_path_factory.mktemp("letters_llama")
    spm_model = train_spm(root / "spm", vocab_size=700, text=_letters_text(), name="letters")
    return write_tiny_llama(spm_model, root / "model", seed=3)


@pytest.fixture(autouse=True)
def torch_single_thread():
    """Tiny models run faster on one thread, and far faster when the 2 CI cores are shared (restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def hf_tokenizer_dir(spm_model, tmp_path_factory) -> Path:
    return write_tokenizer_dir(spm_model, tmp_path_factory.mktemp("hf_tok"))


@pytest.fixture(scope="session")
def tiny_llama_dir(spm_model, tmp_path_factory) -> Path:
    return write_tiny_llama(spm_model, tmp_path_factory.mktemp("tiny_llama"))


class OracleLM(torch.nn.Module):
    """Test-only LM: all mass on the gold continuation token of each known prompt; uniform if unknown.

    ``answers`` maps a prompt context to its gold continuation (e.g. ``" B"``), or to the gold token id
    read right after the context (the C-Eval/CMMLU reference rules); prompts are recognised by their
    token ids, so the scorer's batching, padding and truncation are exercised for real.
    """

    def __init__(self, tokenizer, answers: dict[str, str] | None = None, add_bos: bool = True):
        super().__init__()
        self.vocab = len(tokenizer)
        self.config = SimpleNamespace(max_position_embeddings=8192)
        self.gold: dict[tuple[int, ...], int] = {}   # token prefix -> the gold next token
        self.longest = 1
        for context, cont in (answers or {}).items():
            if isinstance(cont, int):
                self.gold[tuple(encode(tokenizer, context, add_bos))] = cont
                continue
            ctx, ids = split_continuation(tokenizer, context, cont, add_bos)
            for i, token in enumerate(ids):   # multi-token letters: every gold token gets all the mass
                self.gold[tuple(ctx + ids[:i])] = token
            self.longest = max(self.longest, len(ids))
        self.calls = 0

    def forward(self, input_ids, attention_mask, position_ids=None, logits_to_keep=0):
        self.calls += 1
        batch, width = input_ids.shape
        logits = torch.zeros(batch, width, self.vocab)
        for b in range(batch):
            ids = tuple(input_ids[b][attention_mask[b].bool()].tolist())
            for back in range(1, min(self.longest, len(ids)) + 1):
                token = self.gold.get(ids[: len(ids) - back + 1])
                if token is not None:
                    logits[b, width - back, :] = -1e4
                    logits[b, width - back, token] = 0.0
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:, :]
        return SimpleNamespace(logits=logits)


def test_hf_tokenizer_round_trips_sentencepiece_ids(hf_tokenizer_dir, spm_model):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_tokenizer_dir), local_files_only=True)
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    assert len(tok) == sp.vocab_size()
    # The shared fixture model normalises with NFKC ("\n" -> space, "：" -> ":", runs of spaces
    # collapsed; LLaMA's model uses
    # identity) while the HF tokenizer does not: compare where NFKC changes nothing. Scoring only ever
    # uses the HF tokenizer, so this mismatch cannot skew the evaluation tests.
    safe = [t.replace("\n", " ") for t in TEXTS]
    safe = [t for t in safe if unicodedata.normalize("NFKC", t) == t == " ".join(t.split())]
    assert len(safe) >= 3
    for text in safe:
        assert tok(text)["input_ids"] == [sp.bos_id()] + sp.encode(text), text
        assert tok(text, add_special_tokens=False)["input_ids"] == sp.encode(text), text


def test_tiny_llama_loads_and_is_deterministic(tiny_llama_dir):
    from chatflow_plugin.evaluation.scoring import load_model

    model, tok = load_model(str(tiny_llama_dir), device="cpu")
    ids = torch.tensor([tok("Answer: A")["input_ids"]])
    a = model(input_ids=ids).logits
    b = model(input_ids=ids).logits
    assert torch.equal(a, b) and a.shape[-1] == len(tok)
    assert a[0, -1].softmax(-1).max() > 2.0 / len(tok)   # not uniform


def test_oracle_lm_puts_all_mass_on_gold(hf_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_tokenizer_dir), local_files_only=True)
    lm = OracleLM(tok, {"Q1\nAnswer:": " C"})
    ctx, ids = split_continuation(tok, "Q1\nAnswer:", " C", True)
    assert len(ids) == 2   # this tiny vocabulary has no "▁C": the letter is "▁" + "C"
    row = ctx + ids[:-1]   # what the scorer feeds: the continuation's last token is only a target
    out = lm(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long)).logits
    assert int(out[0, len(ctx) - 1].argmax()) == ids[0] and int(out[0, len(ctx)].argmax()) == ids[1]
    unknown = lm(torch.tensor([ctx[:-1]]), torch.ones(1, len(ctx) - 1, dtype=torch.long)).logits
    assert torch.all(unknown == 0)
