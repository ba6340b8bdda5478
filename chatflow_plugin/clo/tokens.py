"""Prompt/response texts -> token ids with a response mask, as CLO training and scoring see them.

A sequence is ``[BOS +] encode("### Instruction:\\n{prompt}### Response: {response}") + EOS`` (BOS where the
tokenizer has one: not Qwen2's): the whole text is tokenized at once (exactly as at inference, and as
``chatflow preprocess`` packs instruction data), and a token belongs to the response when it covers any
response character; EOS belongs to the response too (the model must learn to stop). The tokenizer is the model
directory's, by :func:`chatflow_plugin.tokenizer.load_tokenizer`'s rule (its ``tokenizer.json``, else its
sentencepiece ``tokenizer.model``), with character offsets from its own library.

Sequences longer than ``max_length`` keep BOS, the end of the prompt (its instruction header is
lost first, the question last) and the start of the response, so that every sequence keeps at
least half its budget for the response.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ChatflowError
from ..tokenizer import Tokenizer
from ..data.formats import INSTRUCTION_HEADER, RESPONSE_HEADER

if TYPE_CHECKING:
    import torch


@dataclass
class EncodedSequence:
    ids: np.ndarray            # (T,) int64: BOS ... EOS
    response: np.ndarray       # (T,) bool: response tokens (and EOS)
    truncated: bool


def encode_prompt_response(tokenizer: Tokenizer, prompt: str, response: str, max_length: int) -> EncodedSequence:
    """One training sequence; see the module docstring for the layout and truncation."""
    if max_length < 4:
        raise ChatflowError(f"max_length must be at least 4, got {max_length}")
    text = INSTRUCTION_HEADER + prompt + RESPONSE_HEADER + response
    start = len(text) - len(response)
    ids, offsets = tokenizer.encode_with_offsets(text)
    is_response = offsets[:, 1] > start if len(ids) else np.zeros(0, bool)
    head = [tokenizer.bos_id] if tokenizer.bos_id is not None else []
    ids = np.asarray(head + list(ids) + [tokenizer.require_eos()], dtype=np.int64)
    mask = np.concatenate([[False] * len(head), is_response, [True]]).astype(bool)
    truncated = len(ids) > max_length
    if truncated:
        n_prompt = int(np.argmax(mask))            # [BOS +] prompt tokens
        n_response = len(ids) - n_prompt
        keep_response = min(n_response, max(max_length // 2, max_length - n_prompt))
        keep_prompt = max_length - keep_response   # includes BOS
        kept_head = ids[:len(head)]
        tail = keep_prompt - len(head)
        prompt_part = np.concatenate([kept_head, ids[n_prompt - tail:n_prompt]]) if tail > 0 else ids[:keep_prompt]
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
