"""Grammar masks and seeded sampling per batch row, as one transformers logits processor.

transformers samples a whole batch from one global RNG and takes one grammar for all rows, but a
batch here mixes requests with different schemas, seeds and temperatures. So generation runs in
greedy mode and this processor does the sampling itself with the Gumbel-max trick: adding Gumbel
noise drawn from the row's own seeded generator to its tempered, top-p-filtered logits makes the
greedy argmax an exact sample from that row's distribution. A row's noise therefore depends on its
own seed only, not on what else is in the batch (its logits may still differ in the last bits with
padding, and the noise stream differs between CPU and CUDA generators).

Imports torch and xgrammar at module level: only ``TransformersChatBackend`` imports this module,
inside its methods.
"""

from __future__ import annotations

import torch
import xgrammar as xgr

from groundedit.models.chat.request import Sampling


class RowSampler:
    """A ``logits_processor`` for one ``generate`` call (it keeps per-call state; make a new one each call).

    ``grammars[i]`` constrains row i (None: free text); ``prompt_len`` is the padded prompt length,
    used to tell the first call (nothing generated yet) from later ones.
    """

    def __init__(
        self,
        grammars: list[xgr.CompiledGrammar | None],
        sampling: list[Sampling],
        stop_ids: list[int],
        vocab_size: int,
        tokenizer_size: int,
        prompt_len: int,
    ):
        self.matchers = [None if g is None else xgr.GrammarMatcher(g) for g in grammars]
        self.sampling = sampling
        self.generators: list[torch.Generator] | None = None  # made on the scores' device, at first call
        self.stop_ids = list(stop_ids)
        self.vocab_size = vocab_size
        self.tokenizer_size = tokenizer_size
        self.prompt_len = prompt_len
        self.finished = [False] * len(grammars)
        self.broken = [False] * len(grammars)
        self.bitmask = xgr.allocate_token_bitmask(len(grammars), vocab_size)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_len
        if step > 0:
            self._advance(input_ids[:, -1].tolist())
        self._mask(scores, step)
        device, vocab = scores.device, scores.shape[-1]
        if self.generators is None:
            self.generators = [torch.Generator(device=device).manual_seed(s.seed) for s in self.sampling]
        # Noise for every row at every step, so each row's stream depends only on its own seed.
        uniform = torch.stack([torch.rand(vocab, generator=g, device=device) for g in self.generators])
        rows = [i for i, s in enumerate(self.sampling) if s.temperature > 0 and not self.finished[i]]
        if rows:
            index = torch.tensor(rows, device=device)
            temperature = torch.tensor([self.sampling[i].temperature for i in rows], device=device)
            top_p = torch.tensor([self.sampling[i].top_p for i in rows], device=device)
            scores[index] = _tempered_top_p(scores[index], temperature, top_p) + _gumbel(uniform[index])
        return scores

    def _advance(self, last_tokens: list[int]) -> None:
        for i, token in enumerate(last_tokens):
            if self.finished[i]:
                continue
            if token in self.stop_ids:
                self.finished[i] = True
                continue
            matcher = self.matchers[i]
            # A refused token cannot happen under the mask; if it ever does, end the row and let
            # validation reject the text rather than crash the batch.
            if matcher is not None and not matcher.accept_token(token):
                self.broken[i] = True

    def _mask(self, scores: torch.Tensor, step: int) -> None:
        rows = [i for i, m in enumerate(self.matchers) if m is not None and not self.finished[i]]
        for i in rows:
            self.matchers[i].fill_next_token_bitmask(self.bitmask, i)  # type: ignore[union-attr]
        if rows:
            xgr.apply_token_bitmask_inplace(
                scores, self.bitmask.to(scores.device), vocab_size=self.vocab_size, indices=rows
            )
        # Ids past the tokenizer (vocabulary padding) decode to nothing; never pick them.
        scores[:, self.tokenizer_size :] = float("-inf")
        for i, params in enumerate(self.sampling):
            if self.broken[i] or step >= params.max_new_tokens:
                scores[i] = float("-inf")
                scores[i, self.stop_ids[0]] = 0.0


def _tempered_top_p(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Rows of ``logits`` divided by their temperature, tokens outside each row's top-p nucleus at -inf."""
    logits = logits / temperature[:, None]
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    # Drop a token when the mass before it already reaches top_p (the top token always stays);
    # top_p = 1 keeps everything, whatever the rounding of the cumulative sum.
    drop_sorted = ((torch.cumsum(probs, dim=-1) - probs) >= top_p[:, None]) & (top_p[:, None] < 1.0)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _gumbel(uniform: torch.Tensor) -> torch.Tensor:
    eps = torch.finfo(uniform.dtype).tiny
    return -torch.log(-torch.log(uniform.clamp(min=eps, max=1.0 - 1e-7)))
