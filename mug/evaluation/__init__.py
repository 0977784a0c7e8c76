"""Frozen-encoder transfer evaluation of any checkpoint: probes, kNN, captions, zero-shot, reconstruction."""
