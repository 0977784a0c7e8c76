"""Classifiers on frozen features: a logistic-regression linear probe, DINO's weighted kNN, and the seeded
train/test split and confusion matrix both are reported with.

The probe is L-BFGS logistic regression on standardised cached features (method.md: a cheap stand-in for MAE's
BatchNorm + linear head trained with LARS), fast on two cores for a few thousand samples. Its regularisation is
chosen as linear-probe protocols do: a small sweep of C, each fitted on part of the training half and scored on
the rest (the validation part), never on the held-out half.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

PROBE_CS = (0.01, 0.1, 1.0, 10.0)  # inverse regularisation strengths the sweep tries
VALIDATION_FRACTION = 0.2  # of the training half, held back to choose C
PROBE_MAX_ITER = 1000
KNN_K = 20
KNN_TEMPERATURE = 0.07


def split(labels: np.ndarray, seed: int = 0, test_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: stratified when every class has two samples or more, else plain random."""
    index = np.arange(len(labels))
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 and len(counts) <= len(labels) * test_fraction else None
    train, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


def _fit(train_x: np.ndarray, train_y: np.ndarray, c: float) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(train_x)
    probe = LogisticRegression(C=c, max_iter=PROBE_MAX_ITER)
    # One BLAS thread: L-BFGS on a few thousand rows multiplies small matrices, where threads cost more than they
    # save (measured 3-10x slower with two). An unconverged probe still predicts; its accuracy says how well.
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(scaler.transform(train_x), train_y)
    return scaler, probe


def choose_c(train_x: np.ndarray, train_y: np.ndarray, seed: int = 0) -> float:
    """The C of `PROBE_CS` that scores best on a validation part of the training data (the smaller C on a tie)."""
    fit, val = split(train_y, seed, VALIDATION_FRACTION)
    if len(np.unique(train_y[fit])) < 2:  # too few samples to validate: scikit-learn's default
        return 1.0
    scores = []
    for c in PROBE_CS:
        scaler, probe = _fit(train_x[fit], train_y[fit], c)
        scores.append(accuracy(probe.predict(scaler.transform(train_x[val])), train_y[val]))
    return PROBE_CS[int(np.argmax(scores))]


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Predicted labels of `test_x` from a logistic regression fitted on standardised `train_x`, with C chosen
    on a validation part of `train_x` (`choose_c`) and the probe then refitted on all of it."""
    scaler, probe = _fit(train_x, train_y, choose_c(train_x, train_y, seed))
    return probe.predict(scaler.transform(test_x))


def linear_probes(
    jobs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], seed: int = 0, workers: int | None = None
) -> list[np.ndarray]:
    """`linear_probe` of each (train_x, train_y, test_x), one per core at once: each fit is single-threaded,
    and L-BFGS spends its time in NumPy, which lets other threads run. Same results as one after another."""
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:  # limits held around all the threads
        return list(pool.map(lambda job: linear_probe(*job, seed), jobs))


@torch.no_grad()
def knn(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int = KNN_K, temperature: float = KNN_TEMPERATURE
) -> np.ndarray:
    """DINO's kNN: cosine similarity to the training features, the k nearest vote with weight exp(sim / T)."""
    classes, train_idx = np.unique(train_y, return_inverse=True)
    train = F.normalize(torch.from_numpy(train_x).float(), dim=1)
    test = F.normalize(torch.from_numpy(test_x).float(), dim=1)
    targets = torch.from_numpy(train_idx)
    k = min(k, len(train))
    predictions = []
    for chunk in test.split(1024):  # bounds the [chunk, train] similarity matrix
        sims, nearest = (chunk @ train.t()).topk(k, dim=1)  # [C, k]
        votes = torch.zeros(len(chunk), len(classes)).scatter_add_(1, targets[nearest], (sims / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return classes[torch.cat(predictions).numpy()]


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(predicted == truth))


def confusion(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """{"labels": [...], "matrix": rows = true label, columns = predicted}: what a KFP ClassificationMetrics
    artifact's `log_confusion_matrix(categories, matrix)` takes."""
    labels = sorted(set(truth.tolist()) | set(predicted.tolist()))
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(matrix, ([index[t] for t in truth], [index[p] for p in predicted]), 1)
    return {"labels": labels, "matrix": matrix.tolist()}
