"""Alerts to the SOC: signed webhook, email, and syslog for SIEMs.

Webhook: the alert as JSON in a POST; ``X-Mailward-Timestamp`` is the Unix
time and ``X-Mailward-Signature`` is ``sha256=`` followed by the hex
HMAC-SHA256 of ``TIMESTAMP.BODY`` under the shared key, so a receiver can
check both origin and freshness (``verify_signature``).

Syslog: one RFC 5424 message per alert (facility security/authorization,
severity by assessment) whose MSG is an ArcSight CEF record, sent over UDP
or TCP (octet-counted framing, RFC 6587).

Email: a short plain-text summary through the configured relay.

SECURITY: the signing key is generated into the data directory with mode
0600 when none is configured; alert text is built from indexed fields only
(never message bodies), and CEF and syslog special characters are escaped.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from mailward.config import Settings

log = logging.getLogger("mailward.trap")

SIGNATURE_HEADER = "X-Mailward-Signature"
TIMESTAMP_HEADER = "X-Mailward-Timestamp"
_SEVERITY = {"compromise suspected": (2, 10), "exposed": (3, 8), "pull failed": (3, 8),
             "refused": (4, 5), "contained": (5, 5)}


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(key: bytes, timestamp: str, body: bytes, signature: str,
                     max_age: float = 300.0, now: float | None = None) -> bool:
    """verify_signature - what a webhook receiver checks: the HMAC and its age."""
    try:
        age = abs((now or time.time()) - float(timestamp))
    except ValueError:
        return False
    return age <= max_age and hmac.compare_digest(sign(key, timestamp, body), signature)


def load_key(settings: "Settings") -> bytes:
    """load_key - the webhook signing key: configured, or generated once."""
    if settings.alerts.webhook_secret:
        return settings.alerts.webhook_secret.encode()
    path = settings.data_dir / "alert.key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key


def _cef_escape(text: str, header: bool = False) -> str:
    text = str(text).replace("\\", "\\\\").replace("\r", " ").replace("\n", " ")
    return text.replace("|", "\\|") if header else text.replace("=", "\\=")


def cef(alert: dict[str, Any], version: str) -> str:
    """cef - the alert as an ArcSight CEF:0 record."""
    incident = alert.get("incident", {})
    indicator = incident.get("indicator", {})
    assessment = alert.get("assessment") or incident.get("assessment", "")
    severity = _SEVERITY.get(assessment, (4, 5))[1]
    summary = incident.get("summary", {})
    clicked = summary.get("human_clicks_before_pull", [])
    extension = {
        "rt": int(time.time() * 1000),
        "cs1Label": "incident", "cs1": incident.get("id", ""),
        "cs2Label": "assessment", "cs2": assessment,
        "cs3Label": "indicator", "cs3": f"{indicator.get('type', '')}:"
                                        f"{indicator.get('value', '')}"[:1000],
        "cs4Label": "clickedBy", "cs4": ",".join(c["recipient"] for c in clicked)[:1000],
        "cn1Label": "copies", "cn1": summary.get("copies", 0),
        "cn2Label": "pulled", "cn2": summary.get("pulled", 0),
        "msg": alert.get("text", "")[:1000],
    }
    head = "|".join(_cef_escape(part, header=True) for part in (
        "mailward", "mailward", version, alert.get("event", "incident"),
        alert.get("title", "")[:200], severity))
    return f"CEF:0|{head}|" + " ".join(f"{k}={_cef_escape(v)}" for k, v in extension.items())


def rfc5424(message: str, assessment: str, hostname: str, msgid: str = "incident") -> bytes:
    """rfc5424 - one syslog line: PRI VERSION TIMESTAMP HOST APP PROCID MSGID SD MSG."""
    facility = 10  # security/authorization
    severity = _SEVERITY.get(assessment, (4, 5))[0]
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = "".join(ch for ch in hostname if 33 <= ord(ch) <= 126)[:255] or "-"
    return (f"<{facility * 8 + severity}>1 {stamp} {host} mailward {os.getpid()} "
            f"{msgid} - \ufeff{message}").encode("utf-8")


class Notifier:
    """Sends every alert to every configured channel; a channel down is logged."""

    def __init__(self, settings: "Settings") -> None:
        self.settings = settings
        self.alerts = settings.alerts
        self.key = load_key(settings) if self.alerts.webhook_urls else b""
        self.sent: list[dict[str, Any]] = []

    async def send(self, alert: dict[str, Any]) -> dict[str, str]:
        """send - deliver one alert; channel -> "ok" or the error."""
        alert = {"at": datetime.now(UTC).isoformat(), **alert}
        outcome: dict[str, str] = {}
        jobs = [(f"webhook {url}", self._webhook(url, alert)) for url in self.alerts.webhook_urls]
        if self.alerts.email_to:
            jobs.append(("email", self._email(alert)))
        if self.alerts.syslog:
            jobs.append(("syslog", self._syslog(alert)))
        for name, job in jobs:
            try:
                await asyncio.wait_for(job, self.alerts.timeout)
                outcome[name] = "ok"
            except Exception as error:  # one channel down must not stop the others
                outcome[name] = f"{type(error).__name__}: {error}"
                log.error("alert %s via %s failed: %s", alert.get("event"), name, error)
        self.sent.append(alert)
        return outcome

    async def _webhook(self, url: str, alert: dict[str, Any]) -> None:
        body = json.dumps(alert, sort_keys=True, default=str).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign(self.key, timestamp, body)}
        async with httpx.AsyncClient(timeout=self.alerts.timeout) as client:
            for attempt in (1, 2, 3):
                try:
                    response = await client.post(url, content=body, headers=headers)
                    if response.status_code < 500:
                        response.raise_for_status()
                        return
                except httpx.TransportError:
                    if attempt == 3:
                        raise
                await asyncio.sleep(0.5 * attempt)
            response.raise_for_status()

    async def _email(self, alert: dict[str, Any]) -> None:
        import aiosmtplib

        from mailward.config import parse_hostport

        sender = self.alerts.email_from or f"mailward@{self.settings.hostname}"
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(self.alerts.email_to)
        message["Subject"] = f"[mailward] {alert.get('title', 'alert')}"[:200]
        message.set_content(alert.get("text", "") + "\n\n" +
                            json.dumps(alert.get("incident", {}).get("summary", {}), indent=2,
                                       default=str))
        relay = self.alerts.smtp_relay or self.settings.delivery.relay
        if relay:
            host, port = parse_hostport(urlsplit(relay).netloc or relay, 25)
        else:
            host, port = parse_hostport(self.settings.smtp.listen, 25)
        if relay.startswith("lmtp://"):
            raise RuntimeError("alerts.smtp_relay: alert email needs an SMTP relay, "
                               "not LMTP; set alerts.smtp_relay")
        await aiosmtplib.send(message, hostname=host, port=port, start_tls=False,
                              timeout=self.alerts.timeout)

    async def _syslog(self, alert: dict[str, Any]) -> None:
        from mailward import __version__

        target = urlsplit(self.alerts.syslog)
        if target.scheme not in ("udp", "tcp") or not target.hostname or not target.port:
            raise RuntimeError(f"alerts.syslog: {self.alerts.syslog!r} is not "
                               "udp://host:port or tcp://host:port")
        assessment = alert.get("assessment", "")
        line = rfc5424(cef(alert, __version__), assessment, self.settings.hostname,
                       alert.get("event", "incident")[:32])
        if target.scheme == "udp":
            await asyncio.to_thread(_udp_send, target.hostname, target.port, line[:8192])
        else:
            _, writer = await asyncio.open_connection(target.hostname, target.port)
            writer.write(f"{len(line)} ".encode() + line)
            await writer.drain()
            writer.close()
            await writer.wait_closed()


def _udp_send(host: str, port: int, data: bytes) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, (host, port))


def incident_alert(event: str, incident: dict[str, Any]) -> dict[str, Any]:
    """incident_alert - the alert for an opened or changed incident, saying who and when."""
    summary = incident.get("summary", {})
    clicked = summary.get("human_clicks_before_pull", [])
    indicator = incident["indicator"]
    text = (f"Incident {incident['id']} ({incident['assessment']}): "
            f"{indicator['category']} {indicator['type']} {indicator['value']} from "
            f"{indicator['source']}; {summary.get('copies', 0)} copies to "
            f"{summary.get('recipients', 0)} recipients, {summary.get('pulled', 0)} pulled, "
            f"{summary.get('read', 0)} had been read.")
    if clicked:
        text += " Clicked before the pull: " + "; ".join(
            f"{c['recipient']} at {c['at']}" for c in clicked[:20]) + "."
    return {"event": event, "title": incident["title"], "assessment": incident["assessment"],
            "text": text, "incident": incident}


def pull_failure_alert(result: dict[str, Any]) -> dict[str, Any]:
    text = (f"A copy for {result['recipient']} (queue id {result['queue_id']}) could not be "
            f"pulled after {result['attempts']} attempts: {result['error']}")
    return {"event": "pull-failed", "title": f"pull failed for {result['recipient']}",
            "assessment": "pull failed", "text": text, "result": result,
            "incident": {"id": "", "indicator": {}, "summary": {}}}
