"""Caption metrics: corpus BLEU-4, CIDEr-D and perplexity, plus the log-probability the caption decoder gives a
token sequence (what perplexity and zero-shot prompt scoring share).

BLEU-4 and CIDEr-D are written out here rather than taken from coco-caption (Python 2 era, Java tokenizer) so
they stay small and are tested against hand-computed cases. Captions are compared as lowercase whitespace words.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from mug.models.text import TextTransformer

MAX_N = 4
CIDER_SIGMA = 6.0  # CIDEr-D's Gaussian length penalty


def words(text: str) -> list[str]:
    return text.lower().split()


def ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu4(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU-4 (Papineni et al. 2002): clipped n-gram precisions pooled over the corpus, their geometric
    mean, and the brevity penalty against the closest reference length. No smoothing: 0 if any order has no
    match, as the standard corpus score is."""
    matches, totals = [0] * MAX_N, [0] * MAX_N
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        hyp_words, ref_words = words(hyp), [words(r) for r in refs]
        hyp_len += len(hyp_words)
        ref_len += min((abs(len(r) - len(hyp_words)), len(r)) for r in ref_words)[1]
        for n in range(1, MAX_N + 1):
            counts = ngrams(hyp_words, n)
            most = Counter()
            for r in ref_words:
                most |= ngrams(r, n)  # per n-gram, the largest count in any one reference
            matches[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hyp_words) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / MAX_N
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


def _tfidf(tokens: list[str], doc_freq: Counter, log_docs: float) -> list[dict[tuple, float]]:
    """Per n-gram order, n-gram -> term frequency x IDF, the IDF taken over the reference sets."""
    return [
        {g: c * (log_docs - math.log(max(1.0, doc_freq[g]))) for g, c in ngrams(tokens, n).items()}
        for n in range(1, MAX_N + 1)
    ]


def _ngram_set(texts: list[list[str]]) -> set[tuple]:
    return {g for t in texts for n in range(1, MAX_N + 1) for g in ngrams(t, n)}


def _norm(vec: dict[tuple, float]) -> float:
    return math.sqrt(sum(v * v for v in vec.values()))


def cider_d(hypotheses: list[str], references: list[list[str]]) -> float:
    """CIDEr-D (Vedantam et al. 2015, as coco-caption computes it): per n-gram order, the cosine between TF-IDF
    vectors with the candidate's counts clipped at the reference's, times a Gaussian penalty on the length
    difference; averaged over orders and references, times 10, then over images. IDF comes from the reference
    sets, so n-grams every image's references share count for nothing."""
    ref_words = [[words(r) for r in refs] for refs in references]
    # Document frequency: in how many images' reference sets each n-gram occurs.
    doc_freq = Counter(g for refs in ref_words for g in _ngram_set(refs))
    log_docs = math.log(max(1, len(references)))
    scores = []
    for hyp, refs in zip(hypotheses, ref_words, strict=True):
        hyp_words = words(hyp)
        hyp_vec = _tfidf(hyp_words, doc_freq, log_docs)
        total = 0.0
        for ref in refs:
            ref_vec = _tfidf(ref, doc_freq, log_docs)
            penalty = math.exp(-((len(hyp_words) - len(ref)) ** 2) / (2 * CIDER_SIGMA**2))
            for h, r in zip(hyp_vec, ref_vec, strict=True):
                dot = sum(min(v, r.get(g, 0.0)) * r.get(g, 0.0) for g, v in h.items())
                norms = _norm(h) * _norm(r)
                total += penalty * (dot / norms if norms else 0.0) / MAX_N
        scores.append(10.0 * total / len(refs))
    return sum(scores) / len(scores) if scores else 0.0


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp of the mean token negative log-likelihood."""
    return math.exp(nll_sum / tokens)


@torch.no_grad()
def sequence_logprob(
    decoder: TextTransformer, tokens: torch.Tensor, memory: torch.Tensor, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log p(token | earlier tokens, image) over each row's real tokens after the first, their count),
    both [N], for tokens [N, T] (BOS first, then the text, EOS if it is a whole caption, PAD) and memory
    [N, M, D] (`decoder.project_memory` of the encoder latents)."""
    logprobs = decoder(tokens[:, :-1], memory).float().log_softmax(dim=-1)  # [N, T-1, V]
    targets = tokens[:, 1:]
    real = targets != pad_id
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [N, T-1]
    return (picked * real).sum(dim=1), real.sum(dim=1)
