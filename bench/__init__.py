"""placeholder, filled below."""
