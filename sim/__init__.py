"""Simulator: accuracy under perturbations, cost, latency and capacity, with reports."""

from .corpus import generate_image, iter_corpus, write_corpus

__all__ = ["generate_image", "iter_corpus", "write_corpus"]
