"""A real ``mailward serve`` process on loopback ports, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.dnsserver import free_port

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def merge(base: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]] | None):
    result = {section: dict(values) for section, values in base.items()}
    for section, values in (extra or {}).items():
        result.setdefault(section, {}).update(values)
    return result


class RunningGateway:
    """``mailward serve`` in a child process with its own data directory."""

    def __init__(self, directory: Path, config: dict[str, dict[str, Any]] | None = None,
                 relay: str | None = None) -> None:
        self.directory = directory
        self.smtp_port = free_port()
        self.web_port = free_port()
        base: dict[str, dict[str, Any]] = {
            "smtp": {"listen": f"127.0.0.1:{self.smtp_port}", "hostname": "mx.test.example"},
            "web": {"listen": f"127.0.0.1:{self.web_port}"},
            "storage": {"data_dir": str(directory / "data")},
            "delivery": {"retry_first": "1s", "retry_max": "2s"},
            "log": {"level": "debug"},
        }
        if relay:
            base["delivery"]["relay"] = relay
        self.sections = merge(base, config)
        self.config_path = write_config(directory / "mailward.toml", self.sections)
        self.log_path = directory / "serve.log"
        self.process: subprocess.Popen | None = None

    @property
    def data_dir(self) -> Path:
        return Path(self.sections["storage"]["data_dir"])

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, timeout: float = 120.0, ready: bool = True) -> "RunningGateway":
        """start - serve, and wait until /readyz says ready (or, not ready, answers)."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailward", "serve", "--config", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=self.directory)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mailward serve exited {self.process.returncode}:\n"
                                   f"{self.log()}")
            try:
                status = httpx.get(f"{self.web_url}/readyz", timeout=5).status_code
                if status == 200 or (not ready and status == 503):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"mailward serve did not become ready:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, check: bool = True, input: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "mailward", "--config",
                                 str(self.config_path), *args], capture_output=True,
                                env=self.env(), input=input, timeout=timeout,
                                cwd=self.directory)
        if check and result.returncode != 0:
            raise AssertionError(f"mailward {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout.decode(errors='replace')}\n"
                                 f"{result.stderr.decode(errors='replace')}")
        return result

    def token(self, name: str = "tests") -> str:
        return self.cli("token", "create", name).stdout.decode().strip()

    def smtp(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30)
        client.ehlo("client.test.example")
        return client

    def send(self, raw: bytes, mail_from: str = "sender@example.org",
             rcpts: list[str] | None = None) -> str:
        """send - one message over SMTP; the 250 reply text (raises on refusal)."""
        with self.smtp() as client:
            client.mail(mail_from)
            for rcpt in rcpts or ["user@example.com"]:
                code, text = client.rcpt(rcpt)
                if code != 250:
                    raise smtplib.SMTPRecipientsRefused({rcpt: (code, text)})
            code, text = client.data(raw)
            if code != 250:
                raise smtplib.SMTPDataError(code, text)
            return text.decode()

    def wait_log(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not in the log:\n{self.log()[-4000:]}")

    def verdict(self, subject: str, timeout: float = 20.0) -> dict:
        """verdict - the recorded verdict of the newest message with this subject."""
        import sqlite3

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with sqlite3.connect(self.data_dir / "mailward.db") as db:
                row = db.execute("SELECT verdict FROM messages WHERE subject = ? "
                                 "ORDER BY id DESC", (subject,)).fetchone()
            if row:
                return json.loads(row[0])
            time.sleep(0.1)
        raise AssertionError(f"no verdict for {subject!r}:\n{self.log()[-3000:]}")


def crlf(data: bytes) -> bytes:
    """crlf - corpus files (LF, mbox From line) as SMTP wants them."""
    if data.startswith(b"From ") and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
