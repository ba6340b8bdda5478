"""TencentPretrain <-> HuggingFace conversion: rotary layout, round trips, numerics, I/O formats, bad input."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from chatflow_plugin.checkpoints import tensor_io as cio
from chatflow_plugin.checkpoints import llama_layout as L
from chatflow_plugin.checkpoints.convert import convert_hf_to_tp, convert_tp_to_hf, parse_size
from chatflow_plugin.errors import ChatflowError

from conftest import train_spm


def _tiny_config(vocab: int, **overrides):
    from transformers import LlamaConfig
    kwargs = dict(vocab_size=vocab, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
                  num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6)
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def _tiny_hf(path: Path, sp_model: Path, dtype=torch.float32, **overrides):
    from transformers import LlamaForCausalLM
    torch.manual_seed(0)
    vocab = spm.SentencePieceProcessor(model_file=str(sp_model)).get_piece_size()
    model = LlamaForCausalLM(_tiny_config(vocab, **overrides)).to(dtype).eval()
    with torch.no_grad():   # non-trivial norms, so a mixed-up norm key cannot go unnoticed
        for name, p in model.named_parameters():
            if "norm" in name or "bias" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(path)
    shutil.copyfile(sp_model, path / "tokenizer.model")
    return model


def _state(path) -> dict[str, torch.Tensor]:
    return {k: v.read() for k, v in cio.open_state_dict(path).items()}


def _assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b), set(a) ^ set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


# ---- rotary permutation ------------------------------------------------------------------------

@pytest.mark.parametrize("heads,head_dim,cols", [(1, 2, 3), (4, 8, 32), (3, 10, 7), (6, 64, 5)])
def test_rotary_permutations_are_inverse_and_match_meta_to_hf(heads, head_dim, cols):
    w = torch.randn(heads * head_dim, cols)
    half = L.interleaved_to_half(w, heads, head_dim)
    # HF's own conversion script: w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2)
    reference = w.view(heads, head_dim // 2, 2, cols).transpose(1, 2).reshape(heads * head_dim, cols)
    assert torch.equal(half, reference)
    assert torch.equal(L.half_to_interleaved(half, heads, head_dim), w)
    bias = torch.randn(heads * head_dim)
    assert torch.equal(L.half_to_interleaved(L.interleaved_to_half(bias, heads, head_dim), heads, head_dim), bias)
    with pytest.raises(ChatflowError, match="rows"):
        L.interleaved_to_half(torch.randn(heads * head_dim + 2, cols), heads, head_dim)
    with pytest.raises(ChatflowError, match="even"):
        L.interleaved_to_half(torch.randn(3 * heads, cols), heads, 3)


def test_key_mappings_cover_biases_and_detect_layouts():
    shape = L.LlamaShape(layers=2, heads=4, kv_heads=2, head_dim=8, attention_bias=True, mlp_bias=True)
    maps = L.key_mappings(shape)
    assert len(maps) == 3 + 2 * (7 * 2 + 2)
    assert {m.rotary for m in maps if m.hf.endswith("q_proj.bias")} == {"q"}
    assert L.detect_layout([m.tp for m in maps]) == "tp" and L.detect_layout([m.hf for m in maps]) == "hf"
    with pytest.raises(ChatflowError, match="unknown checkpoint key layout"):
        L.detect_layout(["transformer.h.0.attn.c_attn.weight"])
    with pytest.raises(ChatflowError, match="missing transformer layers \\[1\\]"):
        L.count_layers(["model.layers.0.x", "model.layers.2.x"], "hf")


def test_configs_map_both_ways_and_refuse_what_the_host_cannot_run():
    hf = _tiny_config(100).to_dict()
    tp = L.tp_config_from_hf(hf, "cfg")
    assert (tp["heads_num"], tp["local_kv_heads_num"], tp["feedforward_size"], tp["layernorm_eps"],
            tp["max_seq_length"]) == (6, 2, 80, 1e-6, 64)
    back = L.hf_config_from_tp(tp, 100, 1, 2, "float32")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "rms_norm_eps", "max_position_embeddings", "vocab_size", "head_dim"):
        assert back[key] == hf[key], key
    assert L.hf_rope_theta(back) == 10000.0
    with pytest.raises(ChatflowError, match="rope theta 500000"):
        L.tp_config_from_hf(_tiny_config(100, rope_theta=500000.0).to_dict(), "cfg")
    with pytest.raises(ChatflowError, match="feed_forward"):
        L.check_tp_config(dict(tp, feed_forward="dense"), "cfg.json")
    with pytest.raises(ChatflowError, match="lacks heads_num"):
        L.check_tp_config({"hidden_size": 8, "layers_num": 1, "feedforward_size": 8}, "cfg.json")


# ---- numerics -----------------------------------------------------------------------------------

def _rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _interleaved_llama_logits(sd: dict, cfg: dict, ids: torch.Tensor) -> torch.Tensor:
    """An independent LLaMA forward on TencentPretrain weights with Meta's interleaved (complex) rotary."""
    hidden, heads = cfg["hidden_size"], cfg["heads_num"]
    kv, d, eps = cfg.get("local_kv_heads_num", heads), hidden // heads, cfg["layernorm_eps"]
    n = ids.shape[1]
    freqs = 1.0 / (10000.0 ** (torch.arange(0, d, 2).float() / d))
    cis = torch.polar(torch.ones(n, d // 2), torch.outer(torch.arange(n).float(), freqs))

    def rope(x):   # x: [n, h, d], pairs (0,1), (2,3), ...
        z = torch.view_as_complex(x.float().reshape(n, x.shape[1], d // 2, 2))
        return torch.view_as_real(z * cis[:, None, :]).flatten(2)
    x = sd[L.TP_EMBEDDING][ids[0]]
    mask = torch.full((n, n), float("-inf")).triu(1)
    for i in range(cfg["layers_num"]):
        p = f"encoder.transformer.{i}."
        h = _rms(x, sd[p + "layer_norm_1.weight"], eps)
        q = (h @ sd[p + "self_attn.linear_layers.0.weight"].T).view(n, heads, d)
        k = (h @ sd[p + "self_attn.linear_layers.1.weight"].T).view(n, kv, d)
        v = (h @ sd[p + "self_attn.linear_layers.2.weight"].T).view(n, kv, d)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(heads // kv, dim=1), v.repeat_interleave(heads // kv, dim=1)
        att = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(d) + mask
        out = torch.einsum("hqk,khd->qhd", att.softmax(-1), v).reshape(n, hidden)
        x = x + out @ sd[p + "self_attn.final_linear.weight"].T
        h = _rms(x, sd[p + "layer_norm_2.weight"], eps)
        gate = torch.nn.functional.silu(h @ sd[p + "feed_forward.linear_gate.weight"].T)
        x = x + (gate * (h @ sd[p + "feed_forward.linear_1.weight"].T)) @ sd[p + "feed_forward.linear_2.weight"].T
    return _rms(x, sd[L.TP_FINAL_NORM], eps) @ sd[L.TP_OUTPUT].T


@pytest.mark.parametrize("kv_heads", [6, 2])
def test_converted_hf_model_matches_an_interleaved_rotary_reference(spm_model, tmp_path, kv_heads):
    from transformers import AutoModelForCausalLM
    _tiny_hf(tmp_path / "hf0", spm_model, num_key_value_heads=kv_heads)
    convert_hf_to_tp(tmp_path / "hf0", tmp_path / "tp")
    tp_sd = torch.load(tmp_path / "tp" / "tencentpretrain_model.bin", weights_only=True)
    tp_cfg = json.loads((tmp_path / "tp" / "config.json").read_text())
    # Independent check: the TencentPretrain weights under interleaved rotary = the HF model ...
    convert_tp_to_hf(tmp_path / "tp", tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.tensor([[1, 17, 250, 33, 412, 5, 99, 300, 2, 64, 7, 580]])
    with torch.no_grad():
        got = model(ids).logits[0]
    want = _interleaved_llama_logits(tp_sd, tp_cfg, ids)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    # ... and the unpermuted weights would not be (the permutation matters).
    wrong = dict(tp_sd)
    for i in range(tp_cfg["layers_num"]):
        wrong[f"encoder.transformer.{i}.self_attn.linear_layers.0.weight"] = \
            model.model.layers[i].self_attn.q_proj.weight.detach()
        wrong[f"encoder.transformer.{i}.self_attn.linear_layers.1.weight"] = \
            model.model.layers[i].self_attn.k_proj.weight.detach()
    assert (_interleaved_llama_logits(wrong, tp_cfg, ids) - got).abs().max() > 1e-3
    # Generation through transformers runs and is deterministic.
    out = model.generate(ids[:, :4], max_new_tokens=6, do_sample=False)
    assert out.shape == (1, 10) and torch.equal(out, model.generate(ids[:, :4], max_new_tokens=6, do_sample=False))


# ---- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hf_tp_hf_round_trip_is_bit_identical(spm_model, tmp_path, dtype):
    _tiny_hf(tmp_path / "hf", spm_model, dtype=dtype)
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp")
    convert_tp_to_hf(tmp_path / "tp", tmp_path / "hf2", max_shard_size="60KB")
    _assert_same(_state(tmp_path / "hf"), _state(tmp_path / "hf2"))
    index = json.loads((tmp_path / "hf2" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    largest_tensor = max(t.nbytes for t in cio.open_state_dict(tmp_path / "hf").values())
    limit = max(60_000, largest_tensor) + 4096   # a tensor above the limit gets a shard of its own
    assert len(shards) > 1 and all((tmp_path / "hf2" / s).stat().st_size < limit for s in shards)
    cfg = json.loads((tmp_path / "hf2" / "config.json").read_text())
    assert cfg["dtype"] == str(dtype).removeprefix("torch.")


def test_tp_hf_tp_round_trip_is_bit_identical_with_biases(spm_model, tmp_path):
    _tiny_hf(tmp_path / "hf", spm_model, attention_bias=True, mlp_bias=True)
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp")
    tp_cfg = json.loads((tmp_path / "tp" / "config.json").read_text())
    assert tp_cfg["remove_transformer_bias"] is False
    # a bare state-dict file written by torch.save, config and tokenizer given separately
    original = torch.load(tmp_path / "tp" / "tencentpretrain_model.bin", weights_only=True)
    torch.save(original, tmp_path / "plain.bin")
    convert_tp_to_hf(tmp_path / "plain.bin", tmp_path / "hf2", tp_config=tmp_path / "tp" / "config.json",
                     tokenizer=spm_model)
    convert_hf_to_tp(tmp_path / "hf2", tmp_path / "tp2")
    _assert_same(original, torch.load(tmp_path / "tp2" / "tencentpretrain_model.bin", weights_only=True))
    _assert_same(original, torch.load(tmp_path / "tp2" / "tencentpretrain_model.bin", weights_only=True, mmap=True))


def test_tied_hf_model_gets_an_output_layer_and_dtype_can_change(spm_model, tmp_path):
    _tiny_hf(tmp_path / "hf", spm_model, tie_word_embeddings=True)
    assert "lm_head.weight" not in cio.open_state_dict(tmp_path / "hf")
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp", dtype="float16")
    sd = torch.load(tmp_path / "tp" / "tencentpretrain_model.bin", weights_only=True)
    assert torch.equal(sd[L.TP_OUTPUT], sd[L.TP_EMBEDDING]) and sd[L.TP_OUTPUT].dtype == torch.float16
    assert json.loads((tmp_path / "tp" / "config.json").read_text())["tie_weights"] is True   # the host ties them
    convert_tp_to_hf(tmp_path / "tp", tmp_path / "hf2")
    assert json.loads((tmp_path / "hf2" / "config.json").read_text())["tie_word_embeddings"] is True
    assert set(cio.open_state_dict(tmp_path / "hf2")) == set(cio.open_state_dict(tmp_path / "hf"))
    sd[L.TP_OUTPUT] = sd[L.TP_OUTPUT] + 1
    torch.save(sd, tmp_path / "untied.bin")
    with pytest.raises(ChatflowError, match="tie_weights is set in its config but .* differs"):
        convert_tp_to_hf(tmp_path / "untied.bin", tmp_path / "hf3", tp_config=tmp_path / "tp" / "config.json",
                         tokenizer=spm_model)


# ---- the LLaMA family beyond LLaMA-2 ---------------------------------------------------------------

@pytest.mark.parametrize("family,model_type,named", [
    ("llama3", "llama", ["rope theta 500000", "rope scaling 'llama3'"]),
    ("qwen2", "qwen2", ["rope theta 1e+06", "biases on q/k/v but not on o_proj"]),
    ("mistral", "mistral", ["rope theta 1e+06", "sliding-window attention over 16 tokens"]),
])
def test_what_the_host_cannot_represent_is_refused_by_name(family, model_type, named, tmp_path, spm_model, byte_bpe_dir,
                                                            qwen2_bpe_dir):
    from model_families import tiny_family_model

    tokenizer = {"llama3": byte_bpe_dir, "qwen2": qwen2_bpe_dir, "mistral": spm_model}[family]
    model = tiny_family_model(tmp_path / family, family, tokenizer)
    with pytest.raises(ChatflowError) as error:
        convert_hf_to_tp(model, tmp_path / "tp")
    message = str(error.value)
    assert f"config.json: TencentPretrain's LLaMA cannot represent this {model_type} model" in message
    for problem in named:
        assert problem in message, (problem, message)
    assert not (tmp_path / "tp").exists()


def test_a_mistral_the_host_can_run_converts_and_computes_the_same(tmp_path, spm_model):
    """A Mistral checkpoint without a sliding window and with rope theta 10000 is a LLaMA: hf2tp then tp2hf gives a
    LlamaForCausalLM with the same logits."""
    from transformers import AutoModelForCausalLM

    from model_families import FAMILIES, tiny_family_model

    FAMILIES["mistral_plain"] = dict(FAMILIES["mistral"], rope_theta=10000.0, sliding_window=None, head_dim=None)
    try:
        model_dir = tiny_family_model(tmp_path / "mistral", "mistral_plain", spm_model)
    finally:
        del FAMILIES["mistral_plain"]
    convert_hf_to_tp(model_dir, tmp_path / "tp")
    convert_tp_to_hf(tmp_path / "tp", tmp_path / "llama")
    ids = torch.tensor([[1, 5, 9, 200, 31, 7, 64]])
    original = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    converted = AutoModelForCausalLM.from_pretrained(tmp_path / "llama").eval()
    assert original.config.model_type == "mistral" and converted.config.model_type == "llama"
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, original(ids).logits, rtol=1e-5, atol=1e-5)


# ---- tokenizer files -----------------------------------------------------------------------------

# ---- input formats --------------------------------------------------------------------------------

def test_deepspeed_checkpoint_directories(spm_model, tmp_path):
    _tiny_hf(tmp_path / "hf", spm_model)
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp")
    sd = torch.load(tmp_path / "tp" / "tencentpretrain_model.bin", weights_only=True)
    ds = tmp_path / "ds"
    (ds / "global_step20").mkdir(parents=True)
    (ds / "latest").write_text("global_step20\n")
    torch.save({"module": {k: v.half() for k, v in sd.items()}, "buffer_names": [], "optimizer": None,
                "param_shapes": [{k: v.shape for k, v in sd.items()}], "ds_config": {"zero_optimization": {"stage": 2}},
                "ds_version": "0.14.0", "global_steps": 20}, ds / "global_step20" / "mp_rank_00_model_states.pt")
    convert_tp_to_hf(ds, tmp_path / "out", tp_config=tmp_path / "tp" / "config.json", tokenizer=spm_model,
                     dtype="float32")
    back = _state(tmp_path / "out")
    assert torch.equal(back["model.embed_tokens.weight"], sd[L.TP_EMBEDDING].half().float())
    # a 'latest' naming a missing tag, an explicit tag, a ZeRO-3 checkpoint, a tensor-parallel one
    (ds / "latest").write_text("global_step99")
    with pytest.raises(ChatflowError, match="tag 'global_step99' has no directory"):
        convert_tp_to_hf(ds, tmp_path / "o2", tp_config=tmp_path / "tp" / "config.json", tokenizer=spm_model)
    (ds / "global_step30").mkdir()
    (ds / "global_step30" / "zero_pp_rank_0_mp_rank_00_model_states.pt").write_bytes(b"")
    with pytest.raises(ChatflowError, match="ZeRO-3.*zero_to_fp32.py"):
        convert_tp_to_hf(ds, tmp_path / "o3", tp_config=tmp_path / "tp" / "config.json", tokenizer=spm_model,
                         tag="global_step30")
    # tensor-parallel ranks, split the way the host's mpu layers split them, are merged
    tp4 = ds / "global_step40"
    tp4.mkdir()
    for rank in range(2):
        piece = {k: (v if L.tp_parallel_dim(k) is None else v.chunk(2, dim=L.tp_parallel_dim(k))[rank].clone())
                 for k, v in sd.items()}
        torch.save({"module": piece, "mp_world_size": 2}, tp4 / f"mp_rank_{rank:02d}_model_states.pt")
    convert_tp_to_hf(ds, tmp_path / "o4", tp_config=tmp_path / "tp" / "config.json", tokenizer=spm_model,
                     tag="global_step40")
    _assert_same(_state(tmp_path / "hf"), _state(tmp_path / "o4"))
    assert L.tp_parallel_dim("encoder.transformer.3.self_attn.final_linear.weight") == 1
    assert L.tp_parallel_dim("encoder.transformer.3.layer_norm_1.weight") is None
    (tp4 / "mp_rank_03_model_states.pt").write_bytes(b"")
    with pytest.raises(ChatflowError, match="not numbered 00..02"):
        convert_tp_to_hf(ds, tmp_path / "o5", tp_config=tmp_path / "tp" / "config.json", tokenizer=spm_model,
                         tag="global_step40")
    with pytest.raises(ChatflowError, match="pipeline-parallel"):
        (ds / "global_step50").mkdir()
        (ds / "global_step50" / "layer_01-model_states.pt").write_bytes(b"")
        convert_tp_to_hf(ds, tmp_path / "o6", tp_config=tmp_path / "tp" / "config.json", tokenizer=spm_model,
                         tag="global_step50")


def test_blocks_directory_and_legacy_torch_files(spm_model, tmp_path):
    _tiny_hf(tmp_path / "hf", spm_model)
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp")
    sd = torch.load(tmp_path / "tp" / "tencentpretrain_model.bin", weights_only=True)
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    names = list(sd)
    weight_map = {}
    for k, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        torch.save({n: sd[n] for n in part}, blocks / f"tencentpretrain_model-{k}.bin")
        weight_map.update({n: f"tencentpretrain_model-{k}.bin" for n in part})
    (blocks / "tencentpretrain_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _assert_same(sd, _state(blocks))
    torch.save(sd, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    _assert_same(sd, _state(tmp_path / "legacy.bin"))
    # an HF directory with pytorch_model.bin instead of safetensors converts the same
    hf_bin = tmp_path / "hf_bin"
    hf_bin.mkdir()
    for name in ("config.json", "tokenizer.model"):
        shutil.copyfile(tmp_path / "hf" / name, hf_bin / name)
    torch.save(_state(tmp_path / "hf"), hf_bin / "pytorch_model.bin")
    convert_hf_to_tp(hf_bin, tmp_path / "tp_bin")
    _assert_same(sd, _state(tmp_path / "tp_bin"))


def test_lazy_reader_handles_views_shared_storage_and_truncation(tmp_path):
    base = torch.randn(6, 8)
    sd = {"a": base, "view": base[1:4, ::2], "same": base, "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
          "t": base.t()}
    torch.save({"module": sd, "args": __import__("argparse").Namespace(lr=1.0)}, tmp_path / "x.pt")
    refs = cio.open_state_dict(tmp_path / "x.pt")
    for name, tensor in sd.items():
        assert torch.equal(refs[name].read(), tensor), name
    items = [cio.OutTensor(k, tuple(v.shape), v.dtype, (lambda v=v: v)) for k, v in sd.items()]
    (tmp_path / "st").mkdir()
    cio.write_safetensors(tmp_path / "st", items, 1 << 30)
    from safetensors.torch import load_file
    loaded = load_file(tmp_path / "st" / "model.safetensors")
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    data = (tmp_path / "st" / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(ChatflowError, match="cut.safetensors.*truncated"):
        cio.open_state_dict(tmp_path / "cut.safetensors")
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ChatflowError, match="junk.bin"):
        cio.open_state_dict(tmp_path / "junk.bin")


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("500MB") == 500 * 10**6 and parse_size("2GiB") == 2 * 2**30
    assert parse_size("1024") == 1024 and parse_size(7) == 7
    with pytest.raises(ChatflowError, match="size"):
        parse_size("lots")


# ---- bad input ----------------------------------------------------------------------------------

def test_bad_inputs_get_clear_errors(spm_model, tmp_path):
    _tiny_hf(tmp_path / "hf", spm_model)
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp")
    cfg = tmp_path / "tp" / "config.json"
    with pytest.raises(ChatflowError, match="already exists"):
        convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp")
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp", force=True)
    sd = torch.load(tmp_path / "tp" / "tencentpretrain_model.bin", weights_only=True)
    missing = dict(sd)
    del missing["encoder.transformer.1.feed_forward.linear_1.weight"]
    torch.save(missing, tmp_path / "missing.bin")
    with pytest.raises(ChatflowError, match="missing 1 tensor.*encoder.transformer.1.feed_forward.linear_1.weight"):
        convert_tp_to_hf(tmp_path / "missing.bin", tmp_path / "o1", tp_config=cfg, tokenizer=spm_model)
    extra = dict(sd, **{"encoder.transformer.0.self_attn.linear_layers.0.lora_A": torch.zeros(2, 2)})
    torch.save(extra, tmp_path / "extra.bin")
    with pytest.raises(ChatflowError, match="unexpected 1 tensor.*lora_A"):
        convert_tp_to_hf(tmp_path / "extra.bin", tmp_path / "o2", tp_config=cfg, tokenizer=spm_model)
    other = train_spm(tmp_path / "other", 700)
    with pytest.raises(ChatflowError, match="has 700 pieces"):
        convert_tp_to_hf(tmp_path / "tp", tmp_path / "o3", tokenizer=other)
    torch.save({"bert.embeddings.word_embeddings.weight": torch.zeros(2, 2)}, tmp_path / "bert.bin")
    with pytest.raises(ChatflowError, match="unknown checkpoint key layout"):
        convert_tp_to_hf(tmp_path / "bert.bin", tmp_path / "o4", tp_config=cfg, tokenizer=spm_model)
    wrong_cfg = tmp_path / "wrong.json"
    wrong_cfg.write_text(json.dumps(dict(json.loads(cfg.read_text()), heads_num=4)))
    with pytest.raises(ChatflowError, match="shape"):
        convert_tp_to_hf(tmp_path / "tp", tmp_path / "o5", tp_config=wrong_cfg)
    with pytest.raises(ChatflowError, match="no such file"):
        convert_tp_to_hf(tmp_path / "nothing", tmp_path / "o6", tp_config=cfg, tokenizer=spm_model)
    with pytest.raises(ChatflowError, match="expected a HuggingFace model directory"):
        convert_hf_to_tp(tmp_path / "nothing", tmp_path / "o6")
    with pytest.raises(ChatflowError, match="--tp_config"):
        convert_tp_to_hf(tmp_path / "tp" / "tencentpretrain_model.bin", tmp_path / "o6", tokenizer=spm_model)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.name in {f"o{k}" for k in range(1, 7)}]
    assert leftovers == []


def test_an_interrupted_write_leaves_nothing_that_loads(spm_model, tmp_path, monkeypatch):
    _tiny_hf(tmp_path / "hf", spm_model)
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp")
    calls = {"n": 0}
    original = L.interleaved_to_half

    def crash(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args)
    monkeypatch.setattr(L, "interleaved_to_half", crash)
    with pytest.raises(KeyboardInterrupt):
        convert_tp_to_hf(tmp_path / "tp", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "tp"]


def test_cli_both_directions(spm_model, tmp_path, capsys):
    _tiny_hf(tmp_path / "hf", spm_model)
    from chatflow_plugin.cli import main as chatflow_main

    assert chatflow_main(["convert", "hf2tp", str(tmp_path / "hf"), str(tmp_path / "tp"), "--quiet"]) == 0
    assert chatflow_main(["convert", "tp2hf", str(tmp_path / "tp"), str(tmp_path / "hf2"), "--dtype", "bfloat16",
                     "--max_shard_size", "100KB", "--max_positions", "128", "--quiet"]) == 0
    cfg = json.loads((tmp_path / "hf2" / "config.json").read_text())
    assert cfg["max_position_embeddings"] == 128 and cfg["dtype"] == "bfloat16"
    assert "wrote" in capsys.readouterr().out
    from chatflow_plugin.cli import main
    assert main(["convert", "tp2hf", str(tmp_path / "tp"), str(tmp_path / "hf2")]) == 2
    assert "already exists" in capsys.readouterr().err


# ---- byte-level BPE tokenizers (tokenizer.json) ------------------------------------------------------

BPE_TEXTS = ["Hello world, the model learns 语言 from data.", "温度是２３℃，湿度８０％。", "  two  spaces\tand\nlines 12345",
             "def f(x):\n    return x ** 2  # code", "混合 mixed 文本 text ✓"]


@pytest.mark.parametrize("style, padded_rows", [("llama3", 0), ("qwen2", 16)])
def test_byte_level_bpe_round_trips_with_identical_ids_and_logits(style, padded_rows, tmp_path, capsys):
    """tp2hf of a model whose tokenizer is a byte-level BPE tokenizer.json (LLaMA-3's kind with its BOS template;
    Qwen2's kind without BOS and with padded embedding rows): the release loads with AutoTokenizer, gives the
    tokenizer's own ids, and the model computes bit-identical logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from chatflow_plugin.cli import main as chatflow_main
    from chatflow_plugin.tokenizer import TokenizerFiles, load_tokenizer
    from conftest import train_byte_bpe

    source = train_byte_bpe(tmp_path / "bpe", style=style)
    tok = load_tokenizer(source)
    assert tok.kind == "hf" and (tok.bos_id is None) == (style == "qwen2")
    torch.manual_seed(0)
    config = _tiny_config(tok.vocab_size + padded_rows, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "hf")
    TokenizerFiles.read(source).write(tmp_path / "hf")
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp")
    assert (tmp_path / "tp" / "tokenizer.json").is_file() and not (tmp_path / "tp" / "tokenizer.model").exists()
    convert_tp_to_hf(tmp_path / "tp", tmp_path / "release")          # the tokenizer found beside the weights
    assert chatflow_main(["convert", "tp2hf", str(tmp_path / "tp" / "tencentpretrain_model.bin"),
                          str(tmp_path / "release_cli"), "--tp_config", str(tmp_path / "tp" / "config.json"),
                          "--tokenizer", str(source / "tokenizer.json"), "--quiet"]) == 0
    capsys.readouterr()
    reference = AutoTokenizer.from_pretrained(source)
    for release in (tmp_path / "release", tmp_path / "release_cli"):
        _assert_same(_state(tmp_path / "hf"), _state(release))
        cfg = json.loads((release / "config.json").read_text())
        assert (cfg["vocab_size"], cfg["bos_token_id"], cfg["eos_token_id"]) == \
            (tok.vocab_size + padded_rows, tok.bos_id, tok.eos_id)
        loaded = AutoTokenizer.from_pretrained(release)
        released = AutoModelForCausalLM.from_pretrained(release, dtype=torch.float32).eval()
        for text in BPE_TEXTS:
            ids = loaded(text)["input_ids"]
            assert ids == reference(text)["input_ids"] == ([tok.bos_id] if tok.bos_id is not None else []) + \
                tok.encode(text), text
            assert loaded.decode(ids, skip_special_tokens=True) == text
            with torch.no_grad():
                x = torch.tensor([ids])
                assert torch.equal(released(x).logits, model(x).logits), text


def test_a_tokenizer_json_with_more_ids_than_rows_is_refused(byte_bpe_dir, tmp_path):
    from transformers import LlamaForCausalLM

    from chatflow_plugin.tokenizer import load_tokenizer
    vocab = load_tokenizer(byte_bpe_dir).vocab_size
    LlamaForCausalLM(_tiny_config(vocab - 10)).save_pretrained(tmp_path / "hf")
    with pytest.raises(ChatflowError, match=f"the embedding has {vocab - 10} rows but tokenizer .* has {vocab} ids"):
        convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp", tokenizer=byte_bpe_dir / "tokenizer.json")
    assert not (tmp_path / "tp").exists()
