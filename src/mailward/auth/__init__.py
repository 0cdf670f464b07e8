"""Sender authentication: DNS, SPF, DKIM, DMARC, ARC and Authentication-Results."""
