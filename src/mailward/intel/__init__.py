"""Threat intelligence: the indicator store and its feeds."""
