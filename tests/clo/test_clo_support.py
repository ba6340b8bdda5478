"""Builders shared by the CLO tests: a tiny random LLaMA directory and tiny triples (no downloads)."""
from __future__ import annotations

import json
from pathlib import Path

import sentencepiece as spm

from chatflow_plugin.tokenizer import write_hf_tokenizer_files

EN = ["the model learns language from data", "people read books about science", "a student asks the teacher",
      "water runs down the mountain river", "the computer program is fast", "music and history at school",
      "a new city at night", "good answers need time", "the old world is large", "small steps every day"]
ZH = ["模型从数据中学习语言", "人们读关于科学的书", "学生问老师问题", "水从山上流下来", "这个计算机程序很快",
      "学校里的音乐和历史", "晚上的新城市", "好的回答需要时间", "旧世界很大", "每天进步一点"]


def tiny_llama_dir(out: Path, spm_model: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random LlamaForCausalLM (hidden 32, 2 layers) with tokenizer.model + tokenizer_config.json."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=sp.get_piece_size(), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=sp.bos_id(), eos_token_id=sp.eos_id(),
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    mismatches = write_hf_tokenizer_files(spm_model, out)
    assert not mismatches, mismatches
    return out


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def aligned_files(directory: Path, n: int = 10) -> tuple[Path, Path]:
    en = [{"instruction": f"repeat: {EN[i % len(EN)]}", "input": "", "output": EN[i % len(EN)] + f" {i}"}
          for i in range(n)]
    zh = [{"instruction": f"重复：{ZH[i % len(ZH)]}", "input": "", "output": ZH[i % len(ZH)] + f" {i}"}
          for i in range(n)]
    return write_jsonl(directory / "en.jsonl", en), write_jsonl(directory / "zh.jsonl", zh)


def triples_dir(directory: Path, n: int = 10) -> Path:
    from chatflow_plugin.clo.triples import CLODataOptions, build_clo_data

    en, zh = aligned_files(directory / "inputs", n)
    build_clo_data(CLODataOptions(output_dir=str(directory / "triples"), english=str(en), target=str(zh)))
    return directory / "triples"
