"""Post-delivery response: retro-scan, retraction, incidents and alerts."""
