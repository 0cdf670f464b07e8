"""Real servers for the tests: a DNS server, an SMTP sink, a running gateway."""
