"""One running console for the web tests of a module: users, a relay, test scores."""

from __future__ import annotations

import pytest

from tests.conftest import need
from tests.support.gateway import SHARED, RunningGateway
from tests.support.sink import SmtpSink
from tests.web.support import PASSWORD, PHISH_URL, Console, add_user, scores_file


def start_console(directory, sink: SmtpSink, *, quarantine_external: bool = False,
                  accepted_domains: list[str] | None = None, **web) -> RunningGateway:
    """start_console - mailward serve with four users and a phishing URL listed."""
    directory.mkdir(parents=True, exist_ok=True)
    scores = scores_file(directory / "scores.toml", spam_quarantine=3.0,
                         quarantine_external=quarantine_external)
    config = {"policy": {"scores_file": str(scores)},
              "smtp": {"accepted_domains": accepted_domains or []},
              "web": {"login_max_failures": 3, "login_max_failures_per_ip": 1000,
                      "login_max_failures_per_user": 6,
                      "digest_interval": "1h", **web}}
    gateway = RunningGateway(directory, config, relay=sink.url)
    gateway.cli("intel", "add", "--type", "url", PHISH_URL)
    add_user(gateway, "admin", "admin", "admin@example.com")
    gateway.start()
    admin = Console(gateway)
    assert admin.login("admin").status_code == 200
    for name, role, addresses in (("analyst", "analyst", ["analyst@example.com"]),
                                  ("alice", "user", ["alice@example.com",
                                                     "a.smith@example.com"]),
                                  ("bob", "user", ["bob@example.com"])):
        made = admin.post("/api/v1/users", json={"username": name, "role": role,
                                                 "password": PASSWORD,
                                                 "addresses": addresses})
        assert made.status_code == 201, made.text
    admin.close()
    return gateway


@pytest.fixture(scope="module")
def sink():
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory, sink):
    need(SHARED.is_dir(), f"the shared corpus at {SHARED}")
    gateway = start_console(tmp_path_factory.mktemp("console"), sink)
    yield gateway
    gateway.stop()


@pytest.fixture
def as_user(console):
    """as_user - log in as a named user; clients are closed after the test."""
    clients: list[Console] = []

    def make(name: str | None = None, token: str | None = None,
             source: str | None = None) -> Console:
        client = Console(console, token, source)
        if name:
            answer = client.login(name)
            assert answer.status_code == 200, answer.text
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
