"""LLaMA weight layouts: TencentPretrain key names <-> HuggingFace key names, the rotary permutation, configs.

TencentPretrain's LLaMA applies rotary embeddings to *interleaved* pairs of each head's dimensions
(Meta's layout: pairs (0,1), (2,3), ...); HuggingFace's ``LlamaForCausalLM`` rotates *halves*
(pairs (0, d/2), (1, d/2+1), ...). The q and k projections (and their biases, if any) are therefore
stored with their rows permuted inside every head. :func:`interleaved_to_half` and
:func:`half_to_interleaved` do that for any head count and (even) head dimension, including
grouped-query k projections (pass the kv head count).

Configs: the host reads a JSON like ``models/llama2/7b_config.json`` (``emb_size``, ``hidden_size``,
``feedforward_size``, ``heads_num``, ``local_kv_heads_num``, ``layers_num``, ``max_seq_length``,
``layernorm_eps``, ``tie_weights`` ...); its vocabulary size comes from the tokenizer, and its rotary base is fixed at
10000 (``tencentpretrain/utils/rope.py``). :func:`hf_config_from_tp` and :func:`tp_config_from_hf`
map between the two and refuse what the other side cannot represent.

**The LLaMA family on the HF side.** LLaMA (1, 2, 3), Mistral and Qwen2 checkpoints share these tensor names;
they differ in settings. What the host's LLaMA can run converts (a Mistral without a sliding window and with
rope theta 10000 is a LLaMA); :func:`host_limitations` lists everything else by name, and
:func:`tp_config_from_hf` refuses with that list: a rope theta other than 10000 (LLaMA-3's 500000, Mistral's
and Qwen2's 1e6), rope scaling (LLaMA-3.1's ``llama3``, ``linear``, ``yarn`` ...), a sliding window shorter
than the context (Mistral 7B v0.1), biases on q/k/v only (Qwen2: the host has one switch for every linear
layer), a head size other than hidden / heads, partial rotary, an activation other than SiLU. Tied embeddings
(Qwen2's small models) convert to the host's ``tie_weights``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import ChatflowError

TP_EMBEDDING = "embedding.word.embedding.weight"
TP_OUTPUT = "target.lm.output_layer.weight"
TP_FINAL_NORM = "encoder.layer_norm.weight"
HF_EMBEDDING = "model.embed_tokens.weight"
HF_OUTPUT = "lm_head.weight"
HF_FINAL_NORM = "model.norm.weight"

# Per-layer names: (TencentPretrain suffix, HuggingFace suffix, rotary role or None).
_LAYER_KEYS = (
    ("self_attn.linear_layers.0", "self_attn.q_proj", "q"),
    ("self_attn.linear_layers.1", "self_attn.k_proj", "k"),
    ("self_attn.linear_layers.2", "self_attn.v_proj", None),
    ("self_attn.final_linear", "self_attn.o_proj", None),
    ("feed_forward.linear_gate", "mlp.gate_proj", None),
    ("feed_forward.linear_1", "mlp.up_proj", None),
    ("feed_forward.linear_2", "mlp.down_proj", None),
)
_LAYER_NORMS = (("layer_norm_1", "input_layernorm"), ("layer_norm_2", "post_attention_layernorm"))
ROPE_THETA_HOST = 10000.0   # tencentpretrain/utils/rope.py: precompute_freqs_cis(theta=10000.0)


@dataclass(frozen=True)
class KeyMapping:
    """One tensor's name on both sides and how its rows move: rotary is "q", "k" or None."""
    tp: str
    hf: str
    rotary: str | None = None


@dataclass(frozen=True)
class LlamaShape:
    """The numbers a key mapping and the rotary permutation need."""
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    attention_bias: bool = False   # biases on q, k, v and o
    mlp_bias: bool = False
    tied: bool = False   # HF only: lm_head.weight absent, tied to the embedding
    qkv_only_bias: bool = False    # HF only: biases on q, k and v but not o (Qwen2)


def key_mappings(shape: LlamaShape) -> list[KeyMapping]:
    """Every tensor of a LLaMA checkpoint, in model order (embedding, layers, final norm, output)."""
    maps = [KeyMapping(TP_EMBEDDING, HF_EMBEDDING)]
    for i in range(shape.layers):
        tp_pre, hf_pre = f"encoder.transformer.{i}.", f"model.layers.{i}."
        for tp_name, hf_name, rotary in _LAYER_KEYS:
            maps.append(KeyMapping(f"{tp_pre}{tp_name}.weight", f"{hf_pre}{hf_name}.weight", rotary))
            is_attn = tp_name.startswith("self_attn")
            qkv = tp_name.startswith("self_attn.linear_layers")
            biased = shape.attention_bias or (shape.qkv_only_bias and qkv) if is_attn else shape.mlp_bias
            if biased:
                maps.append(KeyMapping(f"{tp_pre}{tp_name}.bias", f"{hf_pre}{hf_name}.bias", rotary))
        for tp_name, hf_name in _LAYER_NORMS:
            maps.append(KeyMapping(f"{tp_pre}{tp_name}.weight", f"{hf_pre}{hf_name}.weight"))
    maps.append(KeyMapping(TP_FINAL_NORM, HF_FINAL_NORM))
    maps.append(KeyMapping(TP_OUTPUT, HF_OUTPUT))
    return maps


# How the host's tensor parallelism (tencentpretrain/mpu) splits each tensor across ranks: column-parallel
# linears and the vocab-parallel embedding by rows (dim 0), row-parallel linears by columns (dim 1);
# norms are replicated. Its own merge script (convert_llama_from_megatron_checkpoint_to_pytorch_checkpoint.py)
# concatenates the same way.
_TP_ROW_SPLIT = ("self_attn.linear_layers.", "feed_forward.linear_gate.", "feed_forward.linear_1.")
_TP_COLUMN_SPLIT = ("self_attn.final_linear.weight", "feed_forward.linear_2.weight")


def tp_parallel_dim(name: str) -> int | None:
    """The dimension along which tensor-parallel ranks hold slices of ``name`` (None: replicated)."""
    if name in (TP_EMBEDDING, TP_OUTPUT) or any(part in name for part in _TP_ROW_SPLIT):
        return 0
    if name.endswith(_TP_COLUMN_SPLIT):
        return 1
    return None


def detect_layout(keys) -> str:
    """``"tp"`` or ``"hf"`` from a checkpoint's tensor names; a clear error for anything else."""
    keys = set(keys)
    if TP_EMBEDDING in keys or any(k.startswith("encoder.transformer.") for k in keys):
        return "tp"
    if HF_EMBEDDING in keys or any(k.startswith("model.layers.") for k in keys):
        return "hf"
    sample = ", ".join(sorted(keys)[:5]) or "(no tensors)"
    raise ChatflowError(
        "unknown checkpoint key layout: expected TencentPretrain LLaMA keys "
        f"({TP_EMBEDDING}, encoder.transformer.N...) or HuggingFace LlamaForCausalLM keys "
        f"({HF_EMBEDDING}, model.layers.N...); found e.g. {sample}")


def count_layers(keys, layout: str) -> int:
    pattern = re.compile(r"^encoder\.transformer\.(\d+)\." if layout == "tp" else r"^model\.layers\.(\d+)\.")
    found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    if not found:
        raise ChatflowError(f"checkpoint has no transformer layers ({layout} layout)")
    if found != set(range(max(found) + 1)):
        missing = sorted(set(range(max(found) + 1)) - found)
        raise ChatflowError(f"checkpoint is missing transformer layers {missing}")
    return max(found) + 1


def check_keys(present, expected, what: str, allow_missing=()) -> None:
    """Missing or extra tensors are an error naming them (at most 8 of each)."""
    present, expected = set(present), set(expected)
    missing = sorted(expected - present - set(allow_missing))
    extra = sorted(present - expected)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if extra:
        problems.append(f"unexpected {len(extra)} tensor(s): {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
    if problems:
        raise ChatflowError(f"{what}: " + "; ".join(problems))


def _check_rotary_rows(w: torch.Tensor, heads: int, head_dim: int) -> None:
    if head_dim % 2:
        raise ChatflowError(f"rotary embeddings need an even head dimension, got {head_dim}")
    if w.shape[0] != heads * head_dim:
        raise ChatflowError(f"q/k projection has {w.shape[0]} rows, expected heads*head_dim = "
                            f"{heads}*{head_dim} = {heads * head_dim}")


def interleaved_to_half(w: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """Rows of a q/k weight (or bias) from TencentPretrain/Meta pair order to HuggingFace rotate-half order."""
    _check_rotary_rows(w, heads, head_dim)
    rest = w.shape[1:]
    return w.reshape(heads, head_dim // 2, 2, *rest).transpose(1, 2).reshape(heads * head_dim, *rest)


def half_to_interleaved(w: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """Inverse of :func:`interleaved_to_half`."""
    _check_rotary_rows(w, heads, head_dim)
    rest = w.shape[1:]
    return w.reshape(heads, 2, head_dim // 2, *rest).transpose(1, 2).reshape(heads * head_dim, *rest)


# ---- configs ----------------------------------------------------------------------------------

_TP_REQUIRED = ("hidden_size", "heads_num", "layers_num", "feedforward_size")
_TP_LLAMA_TRAITS = {   # option -> value the host's LLaMA configs set; anything else is another model
    "encoder": "transformer", "feed_forward": "gated", "layernorm": "rms", "layernorm_positioning": "pre",
    "rotary_position_embedding": True, "mask": "causal", "remove_embedding_layernorm": True,
}


def check_tp_config(cfg: dict, where: str) -> None:
    """A TencentPretrain config must describe a LLaMA (gated FFN, RMSNorm, pre-norm, rotary, causal)."""
    missing = [k for k in _TP_REQUIRED if k not in cfg]
    if missing:
        raise ChatflowError(f"{where}: TencentPretrain config lacks {', '.join(missing)}")
    for key, want in _TP_LLAMA_TRAITS.items():
        if key in cfg and cfg[key] != want:
            raise ChatflowError(f"{where}: {key} = {cfg[key]!r}; a LLaMA config has {want!r}")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ChatflowError(f"{where}: hidden_act = {cfg['hidden_act']!r}; LLaMA uses 'silu'")
    if cfg.get("emb_size", cfg["hidden_size"]) != cfg["hidden_size"]:
        raise ChatflowError(f"{where}: emb_size {cfg['emb_size']} != hidden_size {cfg['hidden_size']} "
                            "(factorized embeddings are not LLaMA)")
    if cfg.get("has_lmtarget_bias"):
        raise ChatflowError(f"{where}: has_lmtarget_bias is set; LlamaForCausalLM has no output bias")
    heads, hidden = cfg["heads_num"], cfg["hidden_size"]
    head_dim = cfg.get("attention_head_size", hidden // heads)
    if head_dim * heads != hidden:
        # The host sizes its rotary table by hidden_size // heads_num, so other head sizes cannot run there.
        raise ChatflowError(f"{where}: heads_num*attention_head_size = {heads}*{head_dim} != hidden_size {hidden}")
    kv = cfg.get("local_kv_heads_num", heads)
    if heads % kv:
        raise ChatflowError(f"{where}: heads_num {heads} is not a multiple of local_kv_heads_num {kv}")


def tp_shape(cfg: dict) -> LlamaShape:
    heads = cfg["heads_num"]
    has_bias = not cfg.get("remove_transformer_bias", True)
    return LlamaShape(layers=cfg["layers_num"], heads=heads, kv_heads=cfg.get("local_kv_heads_num", heads),
                      head_dim=cfg["hidden_size"] // heads, attention_bias=has_bias, mlp_bias=has_bias)


def hf_shape(cfg: dict, keys=None) -> LlamaShape:
    """The shape of an HF LLaMA-family config; with the checkpoint's tensor names, its biases are the ones
    present (Qwen2's config has no switch for its q/k/v biases)."""
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    tied = bool(cfg.get("tie_word_embeddings", False)) and (keys is None or HF_OUTPUT not in set(keys))
    if keys is not None:
        def has(suffix):
            return any(k.endswith(suffix) for k in keys)
        qkv, o = has("self_attn.q_proj.bias"), has("self_attn.o_proj.bias")
        mlp = has("mlp.gate_proj.bias") or has("mlp.down_proj.bias")
    else:
        o = bool(cfg.get("attention_bias", False))
        qkv = o or cfg.get("model_type") == "qwen2"
        mlp = bool(cfg.get("mlp_bias", False))
    return LlamaShape(layers=cfg["num_hidden_layers"], heads=heads, kv_heads=cfg.get("num_key_value_heads") or heads,
                      head_dim=head_dim, attention_bias=qkv and o, mlp_bias=mlp, tied=tied,
                      qkv_only_bias=qkv and not o)


def hf_rope_theta(cfg: dict) -> float:
    """rope theta from a transformers 4.x (``rope_theta``) or 5.x (``rope_parameters``) config dict."""
    params = cfg.get("rope_parameters") or {}
    return float(params.get("rope_theta", cfg.get("rope_theta", ROPE_THETA_HOST)))


def hf_config_from_tp(cfg: dict, vocab_size: int, bos_id: int | None, eos_id: int | None,
                      dtype: str, max_position_embeddings: int | None = None) -> dict:
    """``config.json`` for ``LlamaForCausalLM`` equivalent to a TencentPretrain LLaMA config."""
    shape = tp_shape(cfg)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(vocab_size),
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["feedforward_size"],
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": int(max_position_embeddings or cfg.get("max_seq_length", 2048)),
        "rms_norm_eps": float(cfg.get("layernorm_eps", 1e-6)),   # the host's default when unset
        "rope_theta": ROPE_THETA_HOST,
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA_HOST},
        "attention_bias": shape.attention_bias,
        "mlp_bias": shape.mlp_bias,
        "attention_dropout": 0.0,
        "tie_word_embeddings": bool(cfg.get("tie_weights", False)),
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": None,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


LLAMA_FAMILY = ("llama", "mistral", "qwen2")   # model types whose checkpoints use these tensor names


def hf_rope_type(cfg: dict) -> str:
    """The rope scaling type of a transformers 4.x (``rope_scaling``) or 5.x (``rope_parameters``) config."""
    scaling = cfg.get("rope_scaling") or {}
    params = cfg.get("rope_parameters") or {}
    return str(params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default")


def host_limitations(cfg: dict, shape: LlamaShape) -> list[str]:
    """What of an HF LLaMA-family config TencentPretrain's LLaMA cannot represent, each named (empty: it converts)."""
    model_type = cfg.get("model_type", "llama")
    if model_type not in LLAMA_FAMILY:
        return [f"model_type {model_type!r} (the host's LLaMA converts {', '.join(LLAMA_FAMILY)} checkpoints)"]
    problems = []
    theta = hf_rope_theta(cfg)
    if abs(theta - ROPE_THETA_HOST) > 1e-6:
        problems.append(f"rope theta {theta:g} (the host fixes it at 10000: tencentpretrain/utils/rope.py)")
    if hf_rope_type(cfg) != "default":
        problems.append(f"rope scaling {hf_rope_type(cfg)!r} (the host has none)")
    window = cfg.get("sliding_window")
    active = window and (model_type != "qwen2" or cfg.get("use_sliding_window"))
    if active and int(window) < int(cfg.get("max_position_embeddings") or 0):
        problems.append(f"sliding-window attention over {window} tokens (the host attends to the whole sequence)")
    if cfg.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {cfg['hidden_act']!r} (the host's LLaMA uses silu)")
    if shape.head_dim * shape.heads != cfg["hidden_size"]:
        problems.append(f"head_dim {shape.head_dim} * heads {shape.heads} != hidden_size {cfg['hidden_size']} "
                        "(the host sizes heads as hidden_size / heads_num)")
    if float(cfg.get("partial_rotary_factor", 1.0)) != 1.0:
        problems.append(f"partial rotary ({cfg['partial_rotary_factor']} of each head; the host rotates all of it)")
    if shape.qkv_only_bias:
        problems.append("biases on q/k/v but not on o_proj (the host has one switch, remove_transformer_bias, for "
                        "every linear layer)")
    elif shape.attention_bias != shape.mlp_bias:
        problems.append(f"attention_bias={shape.attention_bias} but mlp_bias={shape.mlp_bias} (the host has one "
                        "switch, remove_transformer_bias, for both)")
    return problems


def tp_config_from_hf(cfg: dict, where: str, max_seq_length: int | None = None, keys=None) -> dict:
    """A TencentPretrain LLaMA config (the host's ``--config_path`` JSON) equivalent to an HF config (``keys``:
    the checkpoint's tensor names, which say which biases it has)."""
    shape = hf_shape(cfg, keys)
    problems = host_limitations(cfg, shape)
    if problems:
        raise ChatflowError(f"{where}: TencentPretrain's LLaMA cannot represent this {cfg.get('model_type', 'llama')} "
                            f"model, so the converted model would compute differently: " + "; ".join(problems))
    out = {
        "emb_size": cfg["hidden_size"],
        "feedforward_size": cfg["intermediate_size"],
        "hidden_size": cfg["hidden_size"],
        "hidden_act": "silu",
        "heads_num": shape.heads,
        "layers_num": shape.layers,
        "dropout": 0.0,
        "data_processor": "lm",
        "max_seq_length": int(max_seq_length or cfg.get("max_position_embeddings", 2048)),
        "embedding": ["word"],
        "remove_transformer_bias": not shape.attention_bias,
        "remove_embedding_layernorm": True,
        "rotary_position_embedding": True,
        "encoder": "transformer",
        "feed_forward": "gated",
        "mask": "causal",
        "layernorm_positioning": "pre",
        "layernorm": "rms",
        "layernorm_eps": float(cfg.get("rms_norm_eps", 1e-6)),
        "target": ["lm"],
    }
    if shape.kv_heads != shape.heads:
        out["local_kv_heads_num"] = shape.kv_heads
    if bool(cfg.get("tie_word_embeddings", False)):
        out["tie_weights"] = True
    return out
