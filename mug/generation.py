"""Caption generation from MUG's caption decoder: greedy, top-k/top-p sampling and beam search.

All strategies continue a prefix (BOS + tokens), stop at EOS or `max_len` tokens, and never emit a special
token. With `use_cache` (the default) each step feeds only the newest token through the decoder, reusing the
self-attention keys/values and the cross-attention memory; without it every step recomputes the whole
sequence, which is slower but is the reference the cache is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mug.config import ConfigError
from mug.models.text import KVCache, TextTransformer

STRATEGIES = ("greedy", "topk", "beam")


@dataclass
class GenerationConfig:
    max_len: int = 20  # tokens in the caption, prefix included, BOS and EOS not counted
    strategy: str = "greedy"
    num_beams: int = 4
    length_penalty: float = 0.0  # beam score = log-prob sum / length ** penalty
    top_k: int = 0  # 0 = no top-k cut
    top_p: float = 1.0
    temperature: float = 1.0
    use_cache: bool = True

    def __post_init__(self):
        """A value no strategy can use is named here, before any checkpoint is loaded."""
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy '{self.strategy}' is unknown; choose one of {', '.join(STRATEGIES)}")
        for name, low in (("max_len", 1), ("num_beams", 1), ("top_k", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"generation {name} must be an integer >= {low}, got {value!r}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"generation top_p must be in (0, 1], got {self.top_p}")
        if not self.temperature > 0:
            raise ConfigError(f"generation temperature must be > 0, got {self.temperature}")


class _Stepper:
    """Next-token log-probabilities for a growing batch of sequences, with or without the KV cache."""

    def __init__(self, decoder: TextTransformer, memory: torch.Tensor, banned: list[int], use_cache: bool):
        self.decoder, self.memory, self.use_cache = decoder, memory, use_cache
        self.cache = KVCache.empty(len(decoder.blocks)) if use_cache else None
        self.banned = torch.tensor(banned, dtype=torch.long, device=memory.device)

    def logprobs(self, seqs: torch.Tensor, new: int) -> torch.Tensor:
        """[N, V] log-probabilities after `seqs` [N, T], whose last `new` tokens the cache has not seen."""
        if self.use_cache:
            logits = self.decoder(seqs[:, -new:], self.memory, self.cache)[:, -1]
        else:
            logits = self.decoder(seqs, self.memory)[:, -1]
        logits = logits.float()
        logits[:, self.banned] = float("-inf")
        return logits.log_softmax(dim=-1)

    def select(self, index: torch.Tensor) -> None:
        self.memory = self.memory.index_select(0, index)
        if self.cache is not None:
            self.cache = self.cache.select(index)


def _filter_top_k_top_p(logprobs: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k > 0:
        kth = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1).values[:, -1:]
        logprobs = logprobs.masked_fill(logprobs < kth, float("-inf"))
    if top_p < 1.0:
        sorted_lp, order = logprobs.sort(dim=-1, descending=True)
        cumulative = sorted_lp.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - sorted_lp.softmax(dim=-1) >= top_p  # keep the smallest set reaching top_p
        logprobs = logprobs.scatter(1, order, sorted_lp.masked_fill(drop, float("-inf")))
    return logprobs


@torch.no_grad()
def generate(
    decoder: TextTransformer,
    latent: torch.Tensor,
    prefix: list[int],
    eos_id: int,
    special_ids: set[int] | frozenset[int],
    cfg: GenerationConfig | None = None,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Continue `prefix` (starting with BOS) for each image latent [N, 1 + keep, D]; returns token ids
    after BOS, EOS excluded."""
    cfg = cfg or GenerationConfig()
    max_total = min(cfg.max_len + 1, decoder.cfg.context_length)  # + BOS
    if len(prefix) >= max_total:
        words = len(prefix) - 1
        room = f"max_len {cfg.max_len}" if cfg.max_len <= words else f"the context of {max_total - 1} tokens"
        raise ConfigError(f"the prefix is {words} tokens long, and {room} leaves no token to generate after it")
    banned = sorted(set(special_ids) - {eos_id})
    stepper = _Stepper(decoder, decoder.project_memory(latent), banned, cfg.use_cache)
    seqs = torch.tensor(prefix, device=latent.device).expand(latent.shape[0], -1)
    if cfg.strategy == "beam":
        return _beam_search(stepper, seqs, eos_id, max_total, cfg)
    return _sample(stepper, seqs, eos_id, max_total, cfg, generator)


def _sample(stepper, seqs, eos_id, max_total, cfg, generator) -> list[list[int]]:
    """Greedy (argmax) or top-k/top-p sampling; finished rows keep emitting EOS, trimmed at the end."""
    finished = torch.zeros(seqs.shape[0], dtype=torch.bool, device=seqs.device)
    new = seqs.shape[1]
    while seqs.shape[1] < max_total and not finished.all():
        logprobs = stepper.logprobs(seqs, new)
        if cfg.strategy == "greedy":
            token = logprobs.argmax(dim=-1)
        else:
            filtered = _filter_top_k_top_p(logprobs / cfg.temperature, cfg.top_k, cfg.top_p)
            token = torch.multinomial(filtered.softmax(dim=-1), 1, generator=generator).squeeze(1)
        token = token.masked_fill(finished, eos_id)
        finished |= token == eos_id
        seqs, new = torch.cat([seqs, token[:, None]], dim=1), 1
    return [_strip(row.tolist(), eos_id) for row in seqs]


def _strip(ids: list[int], eos_id: int) -> list[int]:
    ids = ids[1:]  # BOS
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


def _beam_search(stepper, seqs, eos_id, max_total, cfg) -> list[list[int]]:
    """Standard beam search: each step keeps the `num_beams` best unfinished continuations per image; a
    hypothesis ends when EOS ranks among them. An image is done once it has `num_beams` finished hypotheses
    that no live beam can still beat (exact for length_penalty = 0, where scores only fall)."""
    n, beams = seqs.shape[0], cfg.num_beams
    device = seqs.device
    stepper.select(torch.arange(n, device=device).repeat_interleave(beams))
    seqs = seqs.repeat_interleave(beams, dim=0)  # [N*K, T]
    scores = torch.full((n, beams), float("-inf"), device=device)
    scores[:, 0] = 0.0  # identical beams at the start: let only the first one expand
    scores = scores.flatten()
    done: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    new = seqs.shape[1]

    def norm(score: float, length: int) -> float:
        return score / max(length, 1) ** cfg.length_penalty

    while seqs.shape[1] < max_total:
        logprobs = stepper.logprobs(seqs, new) + scores[:, None]  # [N*K, V]
        vocab = logprobs.shape[1]
        top_scores, top_ids = logprobs.view(n, beams * vocab).topk(2 * beams, dim=1)  # [N, 2K]
        next_rows, next_tokens, next_scores = [], [], []
        for i in range(n):
            kept = 0
            for rank in range(2 * beams):
                score, flat = top_scores[i, rank].item(), top_ids[i, rank].item()
                row, token = i * beams + flat // vocab, flat % vocab
                if token == eos_id:
                    if rank < beams:
                        hyp = seqs[row, 1:].tolist()
                        done[i].append((norm(score, len(hyp)), hyp))
                    continue
                next_rows.append(row)
                next_tokens.append(token)
                next_scores.append(score)
                kept += 1
                if kept == beams:
                    break
        index = torch.tensor(next_rows, device=device)
        seqs = torch.cat([seqs.index_select(0, index), torch.tensor(next_tokens, device=device)[:, None]], dim=1)
        scores = torch.tensor(next_scores, device=device)
        stepper.select(index)
        new = 1
        if all(
            _beam_done(done[i], scores[i * beams : (i + 1) * beams], beams, norm, seqs.shape[1] - 1) for i in range(n)
        ):
            break
    for i in range(n):  # live beams compete with the finished ones at the end
        for k in range(beams):
            row = i * beams + k
            done[i].append((norm(scores[row].item(), seqs.shape[1] - 1), seqs[row, 1:].tolist()))
    return [max(hyps, key=lambda h: h[0])[1] for hyps in done]


def _beam_done(finished, live_scores, beams, norm, length) -> bool:
    if len(finished) < beams:
        return False
    worst_kept = sorted(s for s, _ in finished)[-beams]
    return norm(live_scores.max().item(), length) <= worst_kept
