"""Bounces: delivery status notifications (RFC 3464) to the envelope sender.

A bounce is a multipart/report with a readable explanation, the
machine-readable message/delivery-status part, and the headers of the
original (never its body, which may be what was refused). No bounce is ever
sent for a message with a null sender (RFC 5321 section 4.5.5), so bounces
cannot loop.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import datetime
import secrets


@dataclass(frozen=True, slots=True)
class Failure:
    recipient: str
    status: str  # RFC 3463 enhanced code, e.g. 5.1.1
    diagnostic: str
    action: str = "failed"  # or "delayed"


def build_dsn(*, reporting_mta: str, sender: str, bounce_from: str, queue_id: str,
              arrival: datetime, original_headers: bytes, failures: list[Failure]) -> bytes:
    """build_dsn - the bytes of one RFC 3464 report for the given failures."""
    boundary = f"=_mailward_{secrets.token_hex(12)}"
    explanation = [f"This is the mail system at {reporting_mta}.", "",
                   "Your message could not be delivered to one or more recipients.", ""]
    explanation += [f"<{f.recipient}>: {' '.join(f.diagnostic.split())[:900]}"
                    for f in failures]
    status = [f"Reporting-MTA: dns; {reporting_mta}", f"X-Mailward-Queue-ID: {queue_id}",
              f"Arrival-Date: {email.utils.format_datetime(arrival)}"]
    for failure in failures:
        status += ["", f"Final-Recipient: rfc822; {failure.recipient}",
                   f"Action: {failure.action}", f"Status: {failure.status}",
                   f"Diagnostic-Code: smtp; {' '.join(failure.diagnostic.split())[:900]}"]
    head = [f"From: Mail Delivery System <{bounce_from}>", f"To: <{sender}>",
            "Subject: Undelivered Mail Returned to Sender",
            f"Date: {email.utils.format_datetime(email.utils.localtime())}",
            f"Message-ID: {email.utils.make_msgid(domain=reporting_mta)}",
            "Auto-Submitted: auto-replied", "MIME-Version: 1.0",
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
            ""]
    parts = ["This is a MIME-encapsulated message.", "", f"--{boundary}",
             "Content-Type: text/plain; charset=us-ascii", "", *explanation, "",
             f"--{boundary}", "Content-Type: message/delivery-status", "", *status, "",
             f"--{boundary}", "Content-Type: text/rfc822-headers",
             "Content-Transfer-Encoding: 8bit", ""]
    text = "\r\n".join(head + parts).encode("ascii", "replace") + b"\r\n"
    headers = original_headers.rstrip(b"\r\n") + b"\r\n"
    return text + headers + f"\r\n--{boundary}--\r\n".encode()
