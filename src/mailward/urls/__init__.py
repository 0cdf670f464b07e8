"""URL defence: extraction, reputation, rewriting and the click-time service."""
