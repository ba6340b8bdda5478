"""A LLaMA sentencepiece model as HuggingFace tokenizer files that ``AutoTokenizer`` loads offline.

``tokenizer.model`` + ``tokenizer_config.json`` (LlamaTokenizer, BOS added, no EOS) is what the
LLaMA-2 release ships; ``transformers`` builds the fast tokenizer from it. The ids must equal
sentencepiece's: :func:`check_round_trip` verifies that and refuses to hand out a mismatching pair.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import ChatflowError

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def save_hf_tokenizer(spm_model_path: str | os.PathLike, out_dir: str | os.PathLike,
                      model_max_length: int = 4096) -> Path:
    """Write ``tokenizer.model`` and ``tokenizer_config.json`` for ``spm_model_path`` into ``out_dir``."""
    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=str(spm_model_path))
    for key, piece in SPECIAL.items():
        expected = {"bos_token": sp.bos_id(), "eos_token": sp.eos_id(), "unk_token": sp.unk_id()}[key]
        if expected < 0 or sp.id_to_piece(expected) != piece:
            raise ChatflowError(f"{spm_model_path}: {key} must be the piece {piece!r} as in LLaMA "
                                f"(found id {expected})")
    shutil.copyfile(spm_model_path, out / "tokenizer.model")
    config = dict(SPECIAL, tokenizer_class="LlamaTokenizer", add_bos_token=True, add_eos_token=False,
                  legacy=False, model_max_length=int(model_max_length), clean_up_tokenization_spaces=False,
                  pad_token=None)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(SPECIAL, indent=2) + "\n", encoding="utf-8")
    return out


def check_round_trip(hf_dir: str | os.PathLike, spm_model_path: str | os.PathLike, texts: list[str]) -> None:
    """Raise unless ``AutoTokenizer`` on ``hf_dir`` gives sentencepiece's ids (BOS + pieces) for ``texts``."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)
    sp = spm.SentencePieceProcessor(model_file=str(spm_model_path))
    if len(tok) != sp.vocab_size():
        raise ChatflowError(f"{hf_dir}: HF tokenizer has {len(tok)} tokens, sentencepiece {sp.vocab_size()}")
    for text in texts:
        got = tok(text)["input_ids"]
        want = [sp.bos_id()] + sp.encode(text)
        if got != want:
            raise ChatflowError(f"{hf_dir}: HF tokenizer ids differ from sentencepiece for {text[:40]!r}: "
                                f"{got[:12]} vs {want[:12]}")
