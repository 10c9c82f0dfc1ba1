"""Stage 4, decide: each protocol variant's decision rule over hash distances (exact, multi-probe, Hamming ≤ r), the simulated set, accuracy tables."""
