"""Stage 4, decide: each protocol variant's decision rule over hash distances.

Exact, multi-probe or Hamming ≤ r; the simulated set; accuracy tables.
"""
