"""Prompt/response texts -> token ids with a response mask, as CLO training and scoring see them.

A sequence is ``BOS + encode("### Instruction:\\n{prompt}### Response: {response}") + EOS``: the
whole text is tokenized at once (exactly as at inference, and as ``chatflow preprocess`` packs
instruction data), and a token belongs to the response when it covers any response character; EOS
belongs to the response too (the model must learn to stop). Tokenization uses the model directory's
``tokenizer.model`` through sentencepiece (bit-exact with LLaMA/ChatFlow); a directory with only a
fast ``tokenizer.json`` falls back to the HF tokenizer's offsets.

Sequences longer than ``max_length`` keep BOS, the end of the prompt (its instruction header is
lost first, the question last) and the start of the response, so that every sequence keeps at
least half its budget for the response.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ChatflowError
from ..tokenizer import load_sentencepiece
from ..data.formats import INSTRUCTION_HEADER, RESPONSE_HEADER

if TYPE_CHECKING:
    import torch


class TextEncoder:
    """Text <-> ids with character offsets, from a model directory's tokenizer."""

    def __init__(self, sp=None, hf=None):
        self.sp, self.hf = sp, hf
        if sp is not None:
            self.bos_id, self.eos_id = sp.bos_id(), sp.eos_id()
            self.pad_id = sp.pad_id() if sp.pad_id() >= 0 else sp.unk_id()
            self.vocab_size = sp.get_piece_size()
        else:
            self.bos_id, self.eos_id = hf.bos_token_id, hf.eos_token_id
            self.pad_id = hf.pad_token_id if hf.pad_token_id is not None else hf.eos_token_id
            self.vocab_size = len(hf)
        if self.bos_id is None or self.bos_id < 0 or self.eos_id is None or self.eos_id < 0:
            raise ChatflowError("the tokenizer needs BOS and EOS tokens")

    @classmethod
    def from_model_dir(cls, model_dir: str | os.PathLike) -> "TextEncoder":
        model_dir = Path(model_dir)
        spm_path = model_dir / "tokenizer.model"
        if spm_path.is_file():
            return cls(sp=load_sentencepiece(spm_path))
        if (model_dir / "tokenizer.json").is_file():
            from transformers import AutoTokenizer

            return cls(hf=AutoTokenizer.from_pretrained(model_dir))
        raise ChatflowError(f"{model_dir}: no tokenizer.model or tokenizer.json")

    def encode(self, text: str) -> list[int]:
        if self.sp is not None:
            return self.sp.encode(text)
        return self.hf(text, add_special_tokens=False)["input_ids"]

    def encode_with_offsets(self, text: str) -> tuple[list[int], np.ndarray]:
        """Ids and (n, 2) character spans ``[start, end)`` of each token."""
        if self.sp is not None:
            enc = self.sp.encode(text, return_type="offset_mapping")
            return list(enc["ids"]), np.asarray(enc["offsets"], dtype=np.int64).reshape(-1, 2)
        enc = self.hf(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)

    def decode(self, ids: list[int]) -> str:
        if self.sp is not None:
            return self.sp.decode(ids)
        return self.hf.decode(ids, skip_special_tokens=True)


@dataclass
class EncodedSequence:
    ids: np.ndarray            # (T,) int64: BOS ... EOS
    response: np.ndarray       # (T,) bool: response tokens (and EOS)
    truncated: bool


def encode_prompt_response(encoder: TextEncoder, prompt: str, response: str, max_length: int) -> EncodedSequence:
    """One training sequence; see the module docstring for the layout and truncation."""
    if max_length < 4:
        raise ChatflowError(f"max_length must be at least 4, got {max_length}")
    text = INSTRUCTION_HEADER + prompt + RESPONSE_HEADER + response
    start = len(text) - len(response)
    ids, offsets = encoder.encode_with_offsets(text)
    is_response = offsets[:, 1] > start if len(ids) else np.zeros(0, bool)
    ids = np.asarray([encoder.bos_id] + list(ids) + [encoder.eos_id], dtype=np.int64)
    mask = np.concatenate([[False], is_response, [True]])
    truncated = len(ids) > max_length
    if truncated:
        n_prompt = int(np.argmax(mask))            # BOS + prompt tokens
        n_response = len(ids) - n_prompt
        keep_response = min(n_response, max(max_length // 2, max_length - n_prompt))
        keep_prompt = max_length - keep_response   # includes BOS
        prompt_part = np.concatenate([ids[:1], ids[n_prompt - (keep_prompt - 1):n_prompt]]) if keep_prompt > 1 else ids[:1]
        ids = np.concatenate([prompt_part, ids[n_prompt:n_prompt + keep_response]])
        mask = np.concatenate([np.zeros(len(prompt_part), bool), np.ones(keep_response, bool)])
    return EncodedSequence(ids, mask, truncated)


def pad_sequences(sequences: list[EncodedSequence], pad_id: int) -> dict[str, "torch.Tensor"]:
    """Right-pad to the longest: ``input_ids``, ``attention_mask``, ``response_mask`` (B, T)."""
    import torch

    width = max(len(s.ids) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(sequences), width), dtype=np.int64)
    response = np.zeros((len(sequences), width), dtype=bool)
    for row, s in enumerate(sequences):
        ids[row, :len(s.ids)] = s.ids
        attention[row, :len(s.ids)] = 1
        response[row, :len(s.ids)] = s.response
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(attention),
            "response_mask": torch.from_numpy(response)}
