"""The web service: REST API, click endpoint and console."""
