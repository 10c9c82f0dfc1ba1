"""Stage 7, derive: population-level figures (false matches per day, accounts flagged) from the measured rates."""
