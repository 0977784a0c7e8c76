"""Caption metrics, probes, kNN and zero-shot marginals on cases worked out by hand."""

import math

import numpy as np
import pytest
import torch

from mug.evaluation.caption_metrics import bleu4, cider_d, perplexity, sequence_logprob
from mug.evaluation.digits import digit_images, to_model_input
from mug.evaluation.probes import accuracy, confusion, knn, linear_probe, split
from mug.evaluation.zero_shot import PromptGrid


def test_bleu4_of_identical_captions_is_one_and_of_disjoint_ones_zero():
    refs = [["a photo of a small red circle"], ["two large blue squares on a grey background"]]
    assert bleu4([r[0] for r in refs], refs) == pytest.approx(1.0)
    assert bleu4(["green hexagon star ring", "navy teal beige grey"], refs) == 0.0


def test_bleu4_by_hand():
    # hyp: "the cat sat on the mat" (6 words), ref: "the cat sat on a mat" (6 words).
    # Clipped matches: 1-grams 5/6 (one 'the' only), 2-grams 3/5, 3-grams 2/4, 4-grams 1/3; same length, no penalty.
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert bleu4(["The cat sat on the mat"], [["the cat sat on a mat"]]) == pytest.approx(expected)
    # A hypothesis half as long as its reference pays exp(1 - 12 / 6).
    long_ref = "the cat sat on the mat the cat sat on the mat"
    assert bleu4(["the cat sat on the mat"], [[long_ref]]) == pytest.approx(math.exp(1 - 2))


def test_cider_d_ranks_better_captions_higher_and_identical_at_ten():
    refs = [["a small red circle on a grey background"], ["a large blue square on a teal background"],
            ["two green stars on a beige background"]]  # fmt: skip
    exact = cider_d([r[0] for r in refs], refs)
    close = cider_d(["a small red circle on a teal background", "a large blue square on a teal background",
                     "two green stars on a grey background"], refs)  # fmt: skip
    far = cider_d(["a star", "a circle", "a square"], refs)
    assert exact == pytest.approx(10.0)  # cosine 1 at every order, no length penalty
    assert exact > close > far >= 0.0


def test_cider_d_gives_no_credit_for_ngrams_every_reference_has():
    # "a photo of" is in every image's references: IDF log(2/2) = 0, so saying only that scores nothing.
    refs = [["a photo of cats"], ["a photo of dogs"]]
    assert cider_d(["a photo of", "a photo of"], refs) == 0.0


def test_perplexity_of_uniform_guesses_is_the_vocabulary_size():
    assert perplexity(10 * math.log(7), 10) == pytest.approx(7.0)


def test_sequence_logprob_sums_real_tokens_only():
    class Uniform(torch.nn.Module):  # a decoder that knows nothing: log p = -log V everywhere
        def forward(self, tokens, memory):
            return torch.zeros(*tokens.shape, 5)

    tokens = torch.tensor([[2, 4, 3, 0, 0], [2, 4, 4, 4, 3]])
    logprob, count = sequence_logprob(Uniform(), tokens, torch.zeros(2, 1, 1), pad_id=0)
    assert count.tolist() == [2, 4]
    assert logprob.tolist() == pytest.approx([-2 * math.log(5), -4 * math.log(5)])


def _clusters(n_per_class: int, classes: int, dim: int = 16, spread: float = 0.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    y = np.repeat(np.arange(classes), n_per_class).astype(str)
    x = centres[y.astype(int)] + spread * rng.normal(size=(len(y), dim))
    return x.astype(np.float32), y


def test_probe_and_knn_separate_clusters():
    x, y = _clusters(40, 4)
    train, test = split(y)
    assert accuracy(linear_probe(x[train], y[train], x[test]), y[test]) == 1.0
    assert accuracy(knn(x[train], y[train], x[test]), y[test]) == 1.0


def test_probe_and_knn_on_random_labels_are_near_chance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    y = rng.integers(0, 4, size=400).astype(str)
    train, test = split(y)
    assert abs(accuracy(linear_probe(x[train], y[train], x[test]), y[test]) - 0.25) < 0.1
    assert abs(accuracy(knn(x[train], y[train], x[test]), y[test]) - 0.25) < 0.1


def test_split_is_seeded_disjoint_and_stratified():
    y = np.array(["a"] * 30 + ["b"] * 10)
    train, test = split(y, seed=3)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 40
    assert (y[test] == "b").sum() == 5
    assert np.array_equal(split(y, seed=3)[1], test)


def test_knn_weights_votes_by_similarity():
    # One very close "y" outvotes two distant "x": weights exp(0.995 / 0.07) vs 2 exp(0.0995 / 0.07).
    train = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    labels = np.array(["y", "x", "x"])
    assert knn(train, labels, np.array([[1.0, 0.1]], dtype=np.float32), k=3).tolist() == ["y"]


def test_confusion_rows_are_truth_and_columns_predictions():
    out = confusion(np.array(["a", "a", "b"]), np.array(["a", "b", "b"]))
    assert out == {"labels": ["a", "b"], "matrix": [[1, 1], [0, 1]]}


def test_zero_shot_marginalises_the_other_slots():
    grid = PromptGrid.build("{size} {colour}", {"size": ("small", "large"), "colour": ("red", "blue")})
    assert grid.prompts == ("small red", "small blue", "large red", "large blue")
    # "large red" is the single best prompt, but "small" holds more mass in total (0.3 + 0.3 > 0.4 + 0.0).
    scores = np.log(np.array([[0.3, 0.3, 0.4, 1e-9]]))
    predicted = grid.predict(scores)
    assert predicted["size"].tolist() == ["small"] and predicted["colour"].tolist() == ["red"]


def test_digits_subset_is_balanced_and_upsampled_like_eval_images():
    images, labels = digit_images(max_samples=100, seed=0)
    assert images.shape == (100, 3, 8, 8) and images.dtype == torch.uint8
    assert np.unique(labels, return_counts=True)[1].tolist() == [10] * 10
    assert images.float().mean() > 128  # dark ink on white paper
    batch = to_model_input(images[:2], 32)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float32
    assert np.array_equal(digit_images(100, seed=0)[1], labels)


def test_the_benchmark_ranking_shows_each_score_with_its_interval_best_first():
    from mug.evaluation.comparison import html_page, markdown_table

    def result(name, score=None):
        ends = {} if score is None else {"": score, "_low": score - 0.04, "_high": score + 0.04}
        return {"objective": name, "metrics": {f"transfer/score{e}": v for e, v in ends.items()}}

    results = [result("mae", -0.03), result("mug", 0.12), result("clip")]
    lines = markdown_table(results).splitlines()
    assert lines[0].startswith("| rank | objective | transfer/score | transfer/score_low | transfer/score_high |")
    assert [line.split("|")[2].strip() for line in lines[2:]] == ["mug", "mae", "clip"]  # no score goes last
    assert "| -0.0700 | 0.0100 |" in lines[3]
    page = html_page(results, "tiny, 3 steps")
    assert page.count("data:image/png;base64,") == 1 and "transfer/score_low" in page
