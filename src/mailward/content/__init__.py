"""Content analysis: spam model, antivirus engines, impostor and language checks."""
