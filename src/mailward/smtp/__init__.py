"""SMTP: the server, the spool, the delivery queue and bounces."""
