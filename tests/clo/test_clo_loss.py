"""The CLO loss against hand computations; lambda = 1 is target-language NLL; parameter selection."""
from __future__ import annotations

import math

import pytest
import torch

from chatflow_plugin.clo.objective import (ATTENTION_PROJECTIONS, attention_parameter_names, clo_loss, select_trainable,
                                 sequence_logps, token_logps)
from chatflow_plugin.clo.tokens import encode_prompt_response, pad_sequences
from chatflow_plugin.tokenizer import load_tokenizer
from chatflow_plugin.errors import ChatflowError
from test_clo_support import tiny_llama_dir


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_clo_loss_equals_hand_computation_on_fixed_tensors():
    pc = torch.tensor([-10.0, -12.0, -7.5, -20.0])    # policy chosen, 2 pairs = 4 triples
    pr = torch.tensor([-11.0, -9.0, -8.0, -19.0])     # policy rejected
    rc = torch.tensor([-10.5, -12.5, -7.0, -21.0])    # reference chosen
    rr = torch.tensor([-10.0, -9.5, -8.5, -18.0])     # reference rejected
    n = torch.tensor([5.0, 6.0, 3.0, 10.0])
    is_target = torch.tensor([False, True, False, True])
    lam, beta = 0.3, 0.2
    terms = clo_loss(pc, pr, rc, rr, n, is_target, lam=lam, beta=beta)
    margins = [beta * ((a - c) - (b - d)) for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    contrastive = -sum(_log_sigmoid(m) for m in margins) / 4
    nll = (12.0 + 20.0) / (6 + 10)           # target triples' chosen: -(-12 - 20) / (6 + 10) tokens
    assert terms.contrastive.item() == pytest.approx(contrastive, rel=1e-6)
    assert terms.nll.item() == pytest.approx(nll, rel=1e-6)
    assert terms.loss.item() == pytest.approx(lam * nll + (1 - lam) * contrastive, rel=1e-6)
    assert terms.margins.tolist() == pytest.approx(margins, rel=1e-5)
    metrics = terms.metrics(is_target)
    assert metrics["reward_margin"] == pytest.approx(sum(margins) / 4, rel=1e-5)
    assert metrics["reward_margin_target"] == pytest.approx((margins[1] + margins[3]) / 2, rel=1e-5)
    assert metrics["reward_margin_source"] == pytest.approx((margins[0] + margins[2]) / 2, rel=1e-5)
    assert metrics["reward_accuracy"] == pytest.approx(sum(m > 0 for m in margins) / 4)
    # lambda = 0 is the DPO term alone; identical policy and reference give log 2
    assert clo_loss(pc, pr, rc, rr, n, is_target, lam=0.0, beta=beta).loss.item() == pytest.approx(contrastive, rel=1e-6)
    assert clo_loss(pc, pr, pc, pr, n, is_target, lam=0.0).loss.item() == pytest.approx(math.log(2), rel=1e-6)


def test_clo_loss_rejects_bad_settings():
    x = torch.zeros(2)
    t = torch.tensor([False, True])
    with pytest.raises(ChatflowError, match="lambda"):
        clo_loss(x, x, x, x, x + 1, t, lam=1.5)
    with pytest.raises(ChatflowError, match="beta"):
        clo_loss(x, x, x, x, x + 1, t, beta=0)
    with pytest.raises(ValueError, match="target-language"):
        clo_loss(x, x, x, x, x + 1, torch.tensor([False, False]))


def test_sequence_logps_by_hand():
    logits = torch.tensor([[[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [2.0, 1.0, 1.0]]])
    tokens = torch.tensor([[0, 1, 2]])
    mask = torch.tensor([[False, True, True]])

    def lp(row, k):
        return row[k] - math.log(sum(math.exp(v) for v in row))

    rows = logits[0].tolist()
    expected = lp(rows[0], 1) + lp(rows[1], 2)
    total, count = sequence_logps(logits, tokens, mask)
    assert total.item() == pytest.approx(expected, rel=1e-6) and count.item() == 2
    total, count = sequence_logps(logits, tokens, torch.tensor([[False, False, True]]))
    assert total.item() == pytest.approx(lp(rows[1], 2), rel=1e-6) and count.item() == 1
    assert token_logps(logits, tokens).shape == (1, 2)
    with pytest.raises(ValueError, match="shape"):
        sequence_logps(logits, tokens[:, :2], mask[:, :2])


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, spm_model):
    return tiny_llama_dir(tmp_path_factory.mktemp("clo_loss_model"), spm_model)


def _pair_batch(encoder, max_length=96):
    pair = ("repeat: the model learns", "the model learns", "重复：模型学习", "模型学习")
    seqs = [encode_prompt_response(encoder, pair[0], pair[1], max_length),
            encode_prompt_response(encoder, pair[0], pair[3], max_length),
            encode_prompt_response(encoder, pair[2], pair[3], max_length),
            encode_prompt_response(encoder, pair[2], pair[1], max_length)]
    return seqs, pad_sequences(seqs, encoder.padding_id)


def test_loss_on_tiny_model_matches_hand_computation(tiny_model_dir):
    """Per-token log-softmax by explicit loops over one tiny model's outputs, then the formula."""
    from transformers import AutoModelForCausalLM

    encoder = load_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    seqs, batch = _pair_batch(encoder)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    hand, counts = [], []
    for row, s in enumerate(seqs):
        total = 0.0
        for j in range(1, len(s.ids)):
            if s.response[j]:
                total += torch.log_softmax(logits[row, j - 1].double(), -1)[int(s.ids[j])].item()
        hand.append(total)
        counts.append(int(s.response[1:].sum()))
    logp, n = sequence_logps(logits, batch["input_ids"], batch["response_mask"])
    assert logp.tolist() == pytest.approx(hand, rel=1e-5)
    ref = [h + d for h, d in zip(hand, (0.3, -0.2, 0.1, 0.4))]   # a reference that differs a little
    lam, beta = 0.4, 0.5
    terms = clo_loss(logp[[0, 2]], logp[[1, 3]], torch.tensor([ref[0], ref[2]]), torch.tensor([ref[1], ref[3]]),
                     n[[0, 2]], torch.tensor([False, True]), lam=lam, beta=beta)
    m_src = beta * ((hand[0] - ref[0]) - (hand[1] - ref[1]))
    m_tgt = beta * ((hand[2] - ref[2]) - (hand[3] - ref[3]))
    expected = lam * (-hand[2] / counts[2]) + (1 - lam) * -(_log_sigmoid(m_src) + _log_sigmoid(m_tgt)) / 2
    assert terms.loss.item() == pytest.approx(expected, rel=1e-5)


def test_lambda_one_is_target_language_nll(tiny_model_dir):
    """lambda = 1: the loss is the HF causal-LM loss of y_l given x_l (labels only on the response)."""
    from transformers import AutoModelForCausalLM

    encoder = load_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    seqs, batch = _pair_batch(encoder)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logp, n = sequence_logps(logits, batch["input_ids"], batch["response_mask"])
        terms = clo_loss(logp[[0, 2]], logp[[1, 3]], logp[[0, 2]] + 5, logp[[1, 3]] - 5, n[[0, 2]],
                         torch.tensor([False, True]), lam=1.0)
        target = seqs[2]
        ids = torch.from_numpy(target.ids)[None]
        labels = torch.where(torch.from_numpy(target.response)[None], ids, torch.full_like(ids, -100))
        hf_loss = model(input_ids=ids, labels=labels).loss
    assert terms.loss.item() == pytest.approx(hf_loss.item(), rel=1e-5)
    assert terms.contrastive.item() > 0   # the DPO term exists but carries weight 0


def test_attention_parameter_selection(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    names = attention_parameter_names(model)
    assert len(names) == 2 * len(ATTENTION_PROJECTIONS)   # 2 layers, no biases
    assert all(".self_attn." in n and n.split(".")[-2] in ATTENTION_PROJECTIONS for n in names)
    counts = select_trainable(model, "attention")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(names)
    assert counts["trainable"] == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert select_trainable(model, "all")["trainable"] == counts["total"]
    with pytest.raises(ChatflowError, match="no attention projections"):
        select_trainable(torch.nn.Sequential(torch.nn.Linear(2, 2)), "attention")
    with pytest.raises(ChatflowError, match="'all' or 'attention'"):
        select_trainable(model, "mlp")
