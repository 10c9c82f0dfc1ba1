"""Stage 7, derive: population-level figures from the measured rates.

False matches per day and accounts flagged.
"""
