"""Mailbox adapters: find a delivered copy and move it between folders."""
