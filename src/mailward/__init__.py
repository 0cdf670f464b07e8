"""mailward: a self-hosted email security gateway.

It stands in front of an organisation's mail servers as their MX, decides
what each inbound message is, acts on it, and keeps watching what it
delivered.
"""

__version__ = "0.1.0"
