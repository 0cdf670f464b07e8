"""A real Dovecot (IMAP and LMTP) on loopback, with its own configuration.

The server runs in the foreground from a private directory: users come from
a passwd-file, an administrator logs in to any mailbox as a Dovecot master
user (``user*admin``), mail is Maildir under the directory. Nothing of the
system's Dovecot configuration is read.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.dnsserver import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MASTER_USER = "admin"
MASTER_PASSWORD = "master-secret"
USER_PASSWORD = "user-secret"


def available() -> bool:
    return Path(DOVECOT).exists()


class Dovecot:
    """dovecot -F with IMAP and LMTP listeners on free loopback ports."""

    def __init__(self, users: list[str], capabilities: str = "") -> None:
        # Login processes run as dovenull and must reach base_dir: not under a
        # private pytest directory but a world-traversable one of its own.
        self.root = Path(tempfile.mkdtemp(prefix="mailward-dovecot-"))
        os.chmod(self.root, 0o755)
        self.users = users
        self.imap_port = free_port()
        self.lmtp_port = free_port()
        self.capabilities = capabilities
        self.process: subprocess.Popen | None = None

    def _write_config(self) -> Path:
        uid, gid = os.getuid(), os.getgid()
        mail = self.root / "mail"
        mail.mkdir()
        if uid == 0:
            # Dovecot refuses to give mail to root: the mail belongs to its own user.
            entry = pwd.getpwnam("dovecot")
            uid, gid = entry.pw_uid, entry.pw_gid
            os.chown(mail, uid, gid)
        users = "".join(f"{u}:{{PLAIN}}{USER_PASSWORD}:{uid}:{gid}::{mail}/{u}\n"
                        for u in self.users)
        (self.root / "users").write_text(users)
        (self.root / "masters").write_text(f"{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}\n")
        login_user = "dovenull" if os.getuid() == 0 else os.environ.get("USER", "nobody")
        capability = f"imap_capability = {self.capabilities}\n" if self.capabilities else ""
        config = f"""
protocols = imap lmtp
listen = 127.0.0.1
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = mailward-test-{self.imap_port}
log_path = {self.root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = 0
default_login_user = {login_user}
default_internal_user = {'dovecot' if os.getuid() == 0 else login_user}
mail_location = maildir:~/Maildir
{capability}
passdb {{
  driver = passwd-file
  master = yes
  args = {self.root}/masters
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = username_format=%u {self.root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.root}/users
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Quarantine {{
    auto = create
  }}
  mailbox Junk {{
    auto = create
    special_use = \\Junk
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
lmtp_save_to_detail_mailbox = no
"""
        path = self.root / "dovecot.conf"
        path.write_text(config)
        return path

    def start(self, timeout: float = 20.0) -> "Dovecot":
        config = self._write_config()
        log = open(self.root / "stdout.log", "ab")
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited {self.process.returncode}:\n{self.log()}")
            if _listening(self.imap_port) and _listening(self.lmtp_port):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        text = ""
        for name in ("stdout.log", "dovecot.log"):
            path = self.root / name
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user / "Maildir"

    @property
    def lmtp_url(self) -> str:
        return f"lmtp://127.0.0.1:{self.lmtp_port}"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
