"""Attachment defence: file types, containers, documents and the sandbox."""
