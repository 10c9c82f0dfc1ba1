"""Stage 3, hash: decode originals and perturbed copies and hash them exactly as the client does."""
