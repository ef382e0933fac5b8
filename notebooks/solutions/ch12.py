"""Worked solutions to the exercises of chapter 12, DSA training.

Each name matches an answer cell in ``notebooks/12_dsa_training.ipynb``; for example
``print(ch12.check_selected_kl(answer_selected_kl))`` passes with the function below.
"""

from __future__ import annotations

import math

import torch

from attnlab.dsa import indexer_loss, selection_mask, set_training_stage
from attnlab.exercises import ch12


# Exercise 1. Stage 2's loss compares the attention and the indexer on the selected set S_t only.
# allowed marks the keys that are both visible (finite score) and selected (the -1 padding selects
# nothing). p_t is the attention summed over heads, kept on S_t and renormalised there; it is a target,
# so it is detached. q_t is the softmax of the index scores over S_t. KL(p || q) = sum p log p - p log q,
# with 0 log 0 = 0 (xlogy) and the log q of unselected keys set to 0 (their p is 0 anyway).
def answer_selected_kl(attn_weights: torch.Tensor, index_scores: torch.Tensor,
                       selected: torch.Tensor) -> torch.Tensor:
    """sum_t KL(p_{t,S_t} || Softmax(I_{t,S_t})): weights (b, h, s, t), scores (b, s, t), selected (b, s, k)."""
    allowed = torch.isfinite(index_scores) & selection_mask(selected, index_scores.shape[-1])  # (b, s, t)
    p = attn_weights.detach().sum(dim=1) * allowed  # summed over heads, zero off S_t
    p = p / p.sum(dim=-1, keepdim=True)  # renormalised over S_t
    log_q = torch.log_softmax(index_scores.masked_fill(~allowed, float("-inf")), dim=-1)
    log_q = log_q.masked_fill(~allowed, 0.0)
    return (torch.xlogy(p, p) - p * log_q).sum()


# Exercise 2. Undo the detach in every layer, run the model, back-propagate the KL alone and keep the
# parameters whose gradient is not zero. Each indexer reads its block's (normalised) input, so the KL
# reaches everything that input depends on: the embedding, all of block 0, and block 1's input norm,
# besides the indexers themselves. Block 1's attention and MLP and the final norm come later.
def _reach() -> set[str]:
    model = ch12.exercise_model()
    set_training_stage(model, "sparse")
    for block in model.blocks:
        block.attn.detach_indexer_input = False
    model(ch12.exercise_ids())
    indexer_loss(model).backward()
    return {name for name, p in model.named_parameters() if p.grad is not None and bool(p.grad.abs().any())}


answer_kl_reach = _reach()


# Exercise 3 (predict). KL(p || q) = sum_s p_s log(p_s / q_s). With p one-hot and q uniform over k = 2048
# tokens only one term survives: 1 x log(1 / (1/2048)) = log 2048, about 7.62 nats.
prediction_flat_kl = math.log(2048)
