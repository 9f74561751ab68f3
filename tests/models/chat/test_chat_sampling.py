"""RowSampler, the per-row grammar + seeded sampling logits processor, on synthetic scores."""

from __future__ import annotations

import pytest
import torch
import xgrammar as xgr
from transformers import AutoTokenizer

from groundedit.models.chat import Sampling
from groundedit.models.chat.hf_sampling import RowSampler, _tempered_top_p

VOCAB = 1024


@pytest.fixture(scope="module")
def tokenizer(tiny_q3_dir):
    return AutoTokenizer.from_pretrained(tiny_q3_dir)


@pytest.fixture(scope="module")
def compiler(tokenizer):
    stop = [tokenizer.eos_token_id]
    return xgr.GrammarCompiler(
        xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=VOCAB, stop_token_ids=stop)
    )


def _run(sampler: RowSampler, steps: int, batch: int, seed: int = 0) -> torch.Tensor:
    """Drive the sampler like greedy generate does, on random logits shared by all rows."""
    noise = torch.Generator().manual_seed(seed)
    ids = torch.zeros(batch, sampler.prompt_len, dtype=torch.long)
    for _ in range(steps):
        scores = sampler(ids, torch.randn(1, VOCAB, generator=noise).repeat(batch, 1))
        ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=1)
    return ids[:, sampler.prompt_len :]


def _sampler(grammars, sampling, tokenizer, prompt_len=3):
    return RowSampler(grammars, sampling, [tokenizer.eos_token_id], VOCAB, len(tokenizer), prompt_len)


def test_grammar_rows_follow_their_grammar_and_free_rows_stay_in_the_vocabulary(tokenizer, compiler):
    grammar = compiler.compile_regex("(yes|no)")
    sampling = [Sampling(seed=1, max_new_tokens=20), Sampling(seed=2, max_new_tokens=20)]
    out = _run(_sampler([grammar, None], sampling, tokenizer), steps=8, batch=2)
    first = out[0].tolist()
    end = first.index(tokenizer.eos_token_id)
    assert tokenizer.decode(first[:end]) in {"yes", "no"}
    assert int(out[1].max()) < len(tokenizer)


def test_each_row_stops_at_its_own_token_cap(tokenizer):
    sampling = [Sampling(seed=1, max_new_tokens=2), Sampling(seed=2, max_new_tokens=6)]
    out = _run(_sampler([None, None], sampling, tokenizer), steps=6, batch=2)
    assert out[0, 2].item() == tokenizer.eos_token_id


def test_a_row_depends_on_its_own_seed_not_on_its_batch(tokenizer):
    alone = _run(_sampler([None], [Sampling(seed=5)], tokenizer), steps=6, batch=1)
    paired = _run(_sampler([None, None], [Sampling(seed=6), Sampling(seed=5)], tokenizer), steps=6, batch=2)
    assert torch.equal(alone[0], paired[1])
    assert not torch.equal(paired[0], paired[1])


def test_temperature_zero_is_argmax(tokenizer):
    sampler = _sampler([None], [Sampling(seed=3, temperature=0.0)], tokenizer, prompt_len=1)
    scores = torch.randn(1, VOCAB)
    expected = scores[0, : len(tokenizer)].argmax()
    assert sampler(torch.zeros(1, 1, dtype=torch.long), scores.clone()).argmax() == expected


def test_top_p_keeps_the_smallest_head_with_enough_mass_per_row():
    logits = torch.log(
        torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5], [0.25, 0.25, 0.25, 0.25]])
    )
    kept = torch.isfinite(_tempered_top_p(logits, torch.ones(3), torch.tensor([0.7, 0.1, 1.0])))
    assert kept.tolist() == [[True, True, False, False], [False, False, False, True], [True] * 4]
    hot = _tempered_top_p(logits[:1], torch.tensor([2.0]), torch.tensor([1.0]))
    assert torch.allclose(hot, logits[:1] / 2)
