"""Checks for chapter 12, DSA training.

    from attnlab.exercises import ch12
    print(ch12.check_selected_kl(answer_selected_kl))          # a function (weights, scores, selected) -> scalar
    print(ch12.check_kl_reach(answer_kl_reach))                # a set of parameter names
    print(ch12.check_prediction_flat_kl(prediction_flat_kl))    # predict, then run: a float

Each check compares the answer with :mod:`attnlab.dsa` (``indexer_kl_loss``, ``set_training_stage``,
``indexer_loss``); exercise 1 may not call ``indexer_kl_loss``. ``None`` returns a reminder, a right answer
"✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import math

import torch

from attnlab import dsa
from attnlab.dsa import indexer_kl_loss, indexer_loss, selection_mask, set_training_stage, topk_indices
from attnlab.exercises._common import Shortcut, as_number, call_answer, run_check, run_prediction
from attnlab.model import TinyLM, TinyLMConfig

#: Exercise 2's model: a two-layer DSA TinyLM, seeded (its weights do not matter, only who reaches whom).
EXERCISE_2 = {"config": TinyLMConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=32, attention="dsa",
                                     kv_lora_rank=16, qk_rope_head_dim=4, index_n_heads=2, index_head_dim=8,
                                     index_topk=4),
              "seed": 12, "seq_len": 12}

#: Exercise 1 writes the loss, so it may not call the library's.
KL_SHORTCUT = Shortcut("attnlab.dsa.indexer_kl_loss", (dsa.indexer_kl_loss,),
                       "sum the heads, renormalise over S_t, detach, and take the KL against log_softmax yourself")


# ----------------------------------------------------------------------------------------------------
# exercise 1: the KL over the selected set


def _kl_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Random float64 (attention weights (b, h, s, t), index scores (b, s, t), selected (b, s, k)) with the
    weights dense over all visible keys (so p must be renormalised over S_t) and -1 padding in early rows."""
    g = torch.Generator().manual_seed(12)
    cases = []
    for batch, heads, seq, k in [(1, 2, 6, 3), (2, 3, 9, 4), (1, 4, 8, 5), (2, 1, 7, 2)]:
        allowed = torch.ones(seq, seq).tril().bool()
        logits = torch.randn(batch, heads, seq, seq, generator=g, dtype=torch.float64) * 2
        weights = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
        scores = torch.randn(batch, seq, seq, generator=g, dtype=torch.float64) * 2
        scores = scores.masked_fill(~allowed, float("-inf"))
        selected = topk_indices(scores + torch.randn(batch, seq, seq, generator=g, dtype=torch.float64), k)
        cases.append((weights, scores, selected))
    return cases


def check_selected_kl(answer: object) -> str:
    """Exercise 1: a function ``(attn_weights, index_scores, selected) -> scalar`` returning the stage-2
    loss sum_t KL(p_{t,S_t} || Softmax(I_{t,S_t})), summed over batch and queries, with p_t the attention
    summed over heads and renormalised over S_t and the target detached; compared with
    :func:`attnlab.dsa.indexer_kl_loss` on random float64 cases."""

    def check(fn: object) -> str:
        assert callable(fn), (
            f"answer should be a function (attn_weights, index_scores, selected), got {type(fn).__name__}"
        )
        cases = _kl_cases()
        for weights, scores, selected in cases:
            w = weights.clone().requires_grad_(True)
            i = scores.clone().requires_grad_(True)
            got = call_answer(fn, w, i, selected.clone(), shortcuts=[KL_SHORTCUT])
            shape = f" of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else ""
            assert isinstance(got, torch.Tensor) and got.numel() == 1, (
                f"return one number (a 0-dim tensor): the sum over batch and queries, got {type(got).__name__}{shape}"
            )
            value = float(got.detach())
            want = float(indexer_kl_loss(weights, scores, selected, "sum"))
            b, s = scores.shape[:2]
            dense = float(indexer_kl_loss(weights, scores, None, "sum"))
            assert not math.isclose(value, dense, rel_tol=1e-6), (
                "that is stage 1's KL over every visible token; stage 2 compares p and Softmax(I) on S_t only"
            )
            assert not math.isclose(value, want / (b * s), rel_tol=1e-6), (
                "that is the mean over queries; the exercise asks for the sum over batch and queries"
            )
            assert not math.isclose(value, float(_kl_slip(weights, scores, selected, "reverse")), rel_tol=1e-6), (
                "the KL is the wrong way round: KL(p || q) = sum p log(p / q), with p the attention (the target)"
            )
            assert not math.isclose(value, float(_kl_slip(weights, scores, selected, "no_renorm")), rel_tol=1e-6), (
                "renormalise p over S_t: after dropping the unselected keys, p_{t,S_t} must sum to 1 again"
            )
            assert not math.isclose(value, float(_kl_slip(weights, scores, selected, "softmax_all")), rel_tol=1e-6), (
                "the softmax of the index scores must run over S_t only, not over every visible key"
            )
            assert math.isfinite(value), (
                "the result is not finite: the -1 padding in `selected` marks no token (try "
                "attnlab.dsa.selection_mask), and 0 log 0 counts as 0 (torch.xlogy)"
            )
            assert math.isclose(value, want, rel_tol=1e-6, abs_tol=1e-9), (
                f"your loss is {value:.6g}, expected {want:.6g}: p_t = attention summed over heads, kept on S_t and "
                "renormalised; q = softmax of I over S_t; sum_t sum_{s in S_t} p log(p / q)"
            )
            got.backward()
            assert w.grad is None or not w.grad.abs().any(), (
                "the value is right but the gradient reaches the attention weights: p_t is a target, detach it "
                "(the KL must train the indexer towards the attention, never the attention towards the indexer)"
            )
            assert i.grad is not None and i.grad.abs().any(), "the loss must be differentiable in the index scores"
        return f"equals indexer_kl_loss over the selected set on {len(cases)} random cases, target detached"

    return run_check("KL over the selected set", answer, check)


def _kl_slip(weights: torch.Tensor, scores: torch.Tensor, selected: torch.Tensor, slip: str) -> torch.Tensor:
    """The usual slips: the KL reversed, p not renormalised over S_t, the softmax over every visible key."""
    weights = weights.detach()
    allowed = torch.isfinite(scores) & selection_mask(selected, scores.shape[-1])
    p = weights.sum(dim=1) * allowed
    if slip != "no_renorm":
        p = p / p.sum(dim=-1, keepdim=True)
    else:
        p = p / weights.sum(dim=1).sum(dim=-1, keepdim=True)
    over = torch.isfinite(scores) if slip == "softmax_all" else allowed
    log_q = torch.log_softmax(scores.masked_fill(~over, float("-inf")), dim=-1).masked_fill(~allowed, 0.0)
    if slip == "reverse":
        q = log_q.exp() * allowed
        return (torch.xlogy(q, q) - q * torch.log(p.where(allowed, torch.ones_like(p)))).sum()
    return (torch.xlogy(p, p) - p * log_q).sum()


# ----------------------------------------------------------------------------------------------------
# exercise 2: where the KL would reach without the detach


def exercise_model() -> TinyLM:
    """Exercise 2's model: :data:`EXERCISE_2`'s config, seeded, float32."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EXERCISE_2["seed"])
        return TinyLM(EXERCISE_2["config"])


def exercise_ids() -> torch.Tensor:
    """Exercise 2's input: one sequence of seq_len token ids (1, seq_len), seeded."""
    g = torch.Generator().manual_seed(EXERCISE_2["seed"])
    return torch.randint(0, EXERCISE_2["config"].vocab_size, (1, EXERCISE_2["seq_len"]), generator=g)


def kl_reach(detach: bool) -> set[str]:
    """Names of :func:`exercise_model`'s parameters that get a nonzero gradient from the indexer loss
    alone, in stage 2 with the indexers' inputs detached (as DeepSeek does) or not."""
    model = exercise_model()
    set_training_stage(model, "sparse")
    for block in model.blocks:
        block.attn.detach_indexer_input = detach
    model(exercise_ids())
    indexer_loss(model).backward()
    return {name for name, p in model.named_parameters() if p.grad is not None and bool(p.grad.abs().any())}


def check_kl_reach(answer: object) -> str:
    """Exercise 2: the set of parameter names of :func:`exercise_model` that the stage-2 KL loss would
    reach (nonzero gradient) if the indexers' inputs were NOT detached."""
    expected = kl_reach(detach=False)
    with_detach = kl_reach(detach=True)
    names = {name for name, _ in exercise_model().named_parameters()}

    def check(a: object) -> str:
        assert isinstance(a, (set, frozenset, list, tuple)) and all(isinstance(n, str) for n in a), (
            f"answer should be a set of parameter names (str), got {type(a).__name__}"
        )
        a = set(a)
        unknown = sorted(a - names)
        assert not unknown, (
            f"not parameters of exercise_model(): {unknown[:3]}; list them with model.named_parameters()"
        )
        assert a != with_detach, (
            "that is what the KL reaches WITH the detach (the indexers only); drop the detach: "
            "block.attn.detach_indexer_input = False for every block"
        )
        assert a != names, "not everything: think about what comes after the last indexer reads its input"
        assert "norm.weight" not in a and "blocks.1.mlp.w_2.weight" not in a, (
            "the final norm and the last block's MLP come after every indexer has read its input: "
            "the KL cannot reach them"
        )
        assert "embed.weight" in a, (
            "every indexer reads its block's input, which starts at the embedding: the KL reaches embed.weight"
        )
        missing, extra = sorted(expected - a), sorted(a - expected)
        assert not missing and not extra, (
            f"not yet: missing {missing[:4]}{' ...' if len(missing) > 4 else ''}, "
            f"should not be there {extra[:4]}{' ...' if len(extra) > 4 else ''}"
        )
        outside = len(expected - with_detach)
        return (f"without the detach the KL reaches {len(expected)} of {len(names)} parameters, {outside} of them "
                "outside the indexers (the embedding, block 0 entirely, block 1's input norm): the indexer loss "
                "would reshape the model to make the attention easier to predict")

    return run_check("where the KL reaches without the detach", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 3: predict, then run

#: Exercise 3: one query's selected set, this large (DeepSeek-V3.2's top-k).
KL_EXPERIMENT = {"top_k": 2048}


def flat_index_kl() -> dict[str, float]:
    """Stage 2's loss for one query over k selected tokens when every index score is equal: with the
    attention on ONE of them (one-hot p), and with the attention spread evenly (uniform p)."""
    k = KL_EXPERIMENT["top_k"]
    scores = torch.zeros(1, 1, k, dtype=torch.float64)  # I_{t,s} equal for every selected s
    selected = torch.arange(k).view(1, 1, k)
    one_hot = torch.zeros(1, 1, 1, k, dtype=torch.float64)
    one_hot[..., 0] = 1.0
    uniform = torch.full((1, 1, 1, k), 1.0 / k, dtype=torch.float64)
    return {"one_hot": float(indexer_kl_loss(one_hot, scores, selected)),
            "uniform": float(indexer_kl_loss(uniform, scores, selected))}


def check_prediction_flat_kl(prediction: object) -> str:
    """Exercise 3, predict then run: the stage-2 KL of one query over its k = 2048 selected tokens when the
    indexer scores them all alike and the main attention sits on a single one of them. Right within 0.1
    of :func:`attnlab.dsa.indexer_kl_loss`."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        k, m = KL_EXPERIMENT["top_k"], flat_index_kl()
        right = abs(value - m["one_hot"]) <= 0.1
        slip = ("The KL is not bounded by 1: it is measured in nats and grows with the size of the set. "
                if 0 < value <= 1 and not right else "")
        return right, (
            f"{slip}KL(p || q) = Σ p log(p / q): p puts 1 on one token, flat scores give q = 1/{k:,} everywhere, so "
            f"the loss is log {k:,} = {math.log(k):.3f}; indexer_kl_loss returns {m['one_hot']:.3f}. With the "
            f"attention spread evenly it would be {m['uniform']:.1e}: flat scores are already right. An indexer whose "
            "scores carry "
            "no information pays about log k for every query whose attention is sharp; training brings that down."
        )

    return run_prediction("KL of a flat indexer", prediction, judge)
