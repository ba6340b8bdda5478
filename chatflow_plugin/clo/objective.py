"""The Cross-Lingual Optimization objective (Lee et al., ACL 2025, arXiv 2505.14297).

For one English instruction pair (x_en, y_en) and its translation (x_l, y_l) there are two
preference triples, (x_en, y_en > y_l) and (x_l, y_l > y_en). The loss over a batch is

    L = lambda * L_NLL + (1 - lambda) * L_CL

- ``L_NLL``: negative log-likelihood of the target-language responses y_l given x_l, averaged over
  their response tokens (all target-language responses of the batch pooled, as a causal-LM loss).
- ``L_CL``: the DPO loss averaged over both triples of every pair,
  ``-log sigmoid(beta * [(log pi(c|x) - log ref(c|x)) - (log pi(r|x) - log ref(r|x))])``,
  with sequence log-probabilities summed over response tokens and ``ref`` the frozen start model
  (its log-probabilities come precomputed from :mod:`chatflow_plugin.clo.reference`).

Also here: the sequence log-probability helper and the attention-only parameter selection (the
paper trains only the q/k/v/o projections).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ChatflowError

DEFAULT_LAMBDA = 0.5   # assumption: not in the public record (docs/clo.md)
DEFAULT_BETA = 0.1     # assumption: DPO's customary value (docs/clo.md)
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


def token_logps(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(tokens[:, j+1] | tokens[:, :j+1]) for every position: shape (B, T-1), float32.

    ``logits`` (B, T, V) are the model outputs for ``tokens`` (B, T). Gather minus logsumexp keeps
    memory at one (B, T, V) float32 copy instead of a full log-softmax plus its gradient buffer.
    """
    logits = logits[:, :-1].float()
    targets = tokens[:, 1:].unsqueeze(-1)
    return logits.gather(-1, targets).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def sequence_logps(logits: torch.Tensor, tokens: torch.Tensor, response_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each sequence's response tokens, and how many there are.

    ``response_mask`` (B, T) is True on tokens that belong to the response (the first token, BOS,
    can never be one: nothing predicts it). Returns ``(logp_sum (B,), n_tokens (B,))``.
    """
    if logits.shape[:2] != tokens.shape or tokens.shape != response_mask.shape:
        raise ValueError(f"shape mismatch: logits {tuple(logits.shape)}, tokens {tuple(tokens.shape)}, "
                         f"mask {tuple(response_mask.shape)}")
    mask = response_mask[:, 1:].to(torch.float32)
    per_token = token_logps(logits, tokens)
    return (per_token * mask).sum(-1), mask.sum(-1)


@dataclass
class CLOTerms:
    """The loss and what the log keeps of it (all scalars except the per-triple tensors)."""

    loss: torch.Tensor
    nll: torch.Tensor                 # target-language response NLL per token
    contrastive: torch.Tensor         # mean DPO loss over all triples
    margins: torch.Tensor             # (n_triples,) beta-scaled reward margins, chosen - rejected
    chosen_rewards: torch.Tensor      # (n_triples,) beta * (log pi - log ref) of chosen
    rejected_rewards: torch.Tensor    # (n_triples,) same for rejected

    def metrics(self, is_target: torch.Tensor) -> dict[str, float]:
        """Scalars for the training log, split by the prompt's language (``en`` = source side)."""
        out = {"loss": self.loss.item(), "nll": self.nll.item(), "contrastive": self.contrastive.item(),
               "reward_margin": self.margins.mean().item(),
               "reward_accuracy": (self.margins > 0).float().mean().item(),
               "chosen_reward": self.chosen_rewards.mean().item(),
               "rejected_reward": self.rejected_rewards.mean().item()}
        for name, rows in (("target", is_target), ("source", ~is_target)):
            if rows.any():
                out[f"reward_margin_{name}"] = self.margins[rows].mean().item()
        return out


def clo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             chosen_tokens: torch.Tensor, is_target: torch.Tensor,
             lam: float = DEFAULT_LAMBDA, beta: float = DEFAULT_BETA) -> CLOTerms:
    """The CLO loss from per-triple summed response log-probabilities.

    All arguments are (n_triples,): policy and reference log-probabilities of each triple's chosen and
    rejected response, the chosen response's token count, and whether the triple's prompt is in the
    target language (its chosen response is then y_l, the NLL term's data).
    """
    if not 0.0 <= lam <= 1.0:
        raise ChatflowError(f"lambda must be in [0, 1], got {lam}")
    if beta <= 0:
        raise ChatflowError(f"beta must be positive, got {beta}")
    if not is_target.any():
        raise ValueError("a CLO batch needs at least one target-language triple")
    chosen_rewards = beta * (policy_chosen - ref_chosen.to(policy_chosen))
    rejected_rewards = beta * (policy_rejected - ref_rejected.to(policy_rejected))
    margins = chosen_rewards - rejected_rewards
    contrastive = -F.logsigmoid(margins).mean()
    target_tokens = chosen_tokens[is_target].sum().clamp_min(1)
    nll = -policy_chosen[is_target].sum() / target_tokens
    loss = lam * nll + (1.0 - lam) * contrastive
    return CLOTerms(loss, nll, contrastive, margins.detach(), chosen_rewards.detach(), rejected_rewards.detach())


def attention_parameter_names(model: torch.nn.Module, projections: tuple[str, ...] = ATTENTION_PROJECTIONS
                              ) -> list[str]:
    """Names of the attention projection weights (and biases) of a LLaMA-style model.

    A parameter qualifies when its owning module is named one of ``projections`` and sits inside an
    attention block (a module path containing ``attn``), so an MLP ``o_proj`` in some other
    architecture is never picked up.
    """
    names = []
    for name, _ in model.named_parameters():
        parts = name.split(".")
        if len(parts) >= 2 and parts[-2] in projections and any("attn" in p for p in parts[:-2]):
            names.append(name)
    return names


def select_trainable(model: torch.nn.Module, mode: str) -> dict[str, int]:
    """Set ``requires_grad``: ``all`` parameters or only the ``attention`` projections.

    Returns parameter counts ``{"trainable": n, "total": n}``; an architecture without recognisable
    attention projections is an error rather than a silent no-op run.
    """
    if mode not in ("all", "attention"):
        raise ChatflowError(f"trainable parameters must be 'all' or 'attention', got {mode!r}")
    chosen = set(attention_parameter_names(model)) if mode == "attention" else None
    if chosen is not None and not chosen:
        raise ChatflowError(f"no attention projections ({', '.join(ATTENTION_PROJECTIONS)}) found in "
                            f"{type(model).__name__}; use --trainable all")
    trainable = total = 0
    for name, param in model.named_parameters():
        param.requires_grad_(chosen is None or name in chosen)
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return {"trainable": trainable, "total": total}
