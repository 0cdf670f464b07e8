"""Shared fixtures: real local servers, and skips that CI refuses.

Outside CI a test that needs a missing service skips with the reason; with
CI=true nothing may skip, so a missing service fails the run instead.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.support.dnsserver import DnsTestServer
from tests.support.gateway import SHARED, RunningGateway
from tests.support.sink import SmtpSink

IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """need - skip (or, in CI, fail) when a service the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def shared() -> Path:
    need(SHARED.is_dir(), f"the shared corpus at {SHARED}")
    return SHARED


@pytest.fixture
def dns_server():
    with DnsTestServer() as server:
        yield server


@pytest.fixture
def smtp_sink():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def gateway_factory(tmp_path):
    started: list[RunningGateway] = []

    def make(config=None, relay=None, start=True) -> RunningGateway:
        directory = tmp_path / f"gw{len(started)}"
        directory.mkdir()
        gateway = RunningGateway(directory, config, relay)
        started.append(gateway)
        return gateway.start() if start else gateway

    yield make
    for gateway in started:
        gateway.stop()


@pytest.fixture
def postgres_url():
    need(port_open("127.0.0.1", 5432), "PostgreSQL at 127.0.0.1:5432")
    import asyncio
    import secrets

    import asyncpg

    name = f"mailward_test_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(user="postgres", host="127.0.0.1", database="postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """database_url - each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")
