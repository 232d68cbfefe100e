"""separation."""
