"""Connection filtering: allow and block lists, IP reputation, DNSBL, rate limits."""
