"""Stage 6, cost: measured client/server CPU and bytes per query, capacity fits and the network model."""
