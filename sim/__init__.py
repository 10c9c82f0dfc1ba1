"""Simulator: accuracy under perturbations, cost, latency and capacity, with reports.

The pipeline reads from the folders, in order: the corpus (``blindmatch.corpus`` or a
folder of photos) → ``perturb`` → ``hashing`` → ``decide`` → ``verify`` → ``cost`` →
``derive`` → ``report``; ``runner`` drives the stages and ``cache`` keeps their results.
"""
