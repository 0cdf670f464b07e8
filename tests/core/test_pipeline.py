"""The pipeline: waves by dependency, deadline and failure answered with 451."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from mailward.config import load_settings
from mailward.envelope import Envelope, new_queue_id
from mailward.gateway import Gateway
from mailward.message import Message
from mailward.pipeline import Pipeline, Stage, Task, _sender, _waves
from mailward.verdict import Category, Finding
from tests.support.gateway import SHARED


class Probe:
    name: ClassVar[str] = "probe"
    stage: ClassVar[Stage] = Stage.DATA
    symbols: ClassVar[dict[str, str]] = {"PROBE": "test"}
    after: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name="probe", after=(), behaviour="ok"):
        self.name = name
        self.after = after
        self.behaviour = behaviour
        self.saw: list[str] = []

    async def check(self, task: Task) -> list[Finding]:
        self.saw = [f.symbol for f in task.findings]
        if self.behaviour == "slow":
            await asyncio.sleep(5)
        if self.behaviour == "crash":
            raise RuntimeError("boom")
        return [Finding(self.name.upper(), Category.SPAM, "probe")]


def test_waves_follow_dependencies_and_refuse_cycles():
    a, b, c = Probe("a"), Probe("b", after=("a",)), Probe("c", after=("b", "missing"))
    assert [[p.name for p in wave] for wave in _waves([c, b, a])] == [["a"], ["b"], ["c"]]
    with pytest.raises(ValueError, match="cycle"):
        _waves([Probe("x", after=("y",)), Probe("y", after=("x",))])


@pytest.fixture
async def gateway(tmp_path):
    instance = Gateway(load_settings(overrides={"storage.data_dir": str(tmp_path)}))
    await instance.start()
    yield instance
    await instance.close()


def with_checks(gateway: Gateway, checks, deadline=2.0) -> None:
    gateway.pipeline = Pipeline(checks, gateway.pipeline.policy, deadline)


async def test_a_later_wave_sees_the_findings_of_earlier_ones(gateway):
    first, second = Probe("first"), Probe("second", after=("first",))
    with_checks(gateway, [second, first])
    await gateway.judge(Envelope(new_queue_id()), b"Subject: x\r\n\r\nx")
    assert second.saw == ["FIRST"]


@pytest.mark.parametrize("behaviour", ["slow", "crash"])
async def test_failure_or_deadline_answers_451_and_keeps_the_bytes(gateway, behaviour):
    with_checks(gateway, [Probe(behaviour=behaviour)], deadline=0.5)
    envelope = Envelope(new_queue_id(), "a@example.org", ["u@example.com"])
    raw = b"Subject: keep me\r\n\r\nbody\r\n"
    reply = await gateway.receive(envelope, raw)
    assert reply.code == 451 and reply.text.startswith("4.3.0")
    parked = gateway.spool.parked / f"{envelope.queue_id}.eml"
    assert gateway.spool.read(parked)[1] == raw
    reason = parked.with_suffix(".reason").read_text()
    assert ("deadline" in reason) if behaviour == "slow" else ("boom" in reason)


def test_a_malformed_from_never_picks_the_list_address():
    message = Message((SHARED / "cases/C08_parseaddr_specials.eml").read_bytes())
    task = Task(envelope=Envelope("q", mail_from="bob@example.com"), services=None,
                message=message)
    assert _sender(task) == ""


async def test_block_and_allow_lists_ignore_a_malformed_from(tmp_path):
    settings = load_settings(overrides={
        "storage.data_dir": str(tmp_path),
        "policy.block_senders": ["alice@example.org", "bob@example.com"]})
    gateway = Gateway(settings)
    await gateway.start()
    try:
        raw = (SHARED / "cases/C08_parseaddr_specials.eml").read_bytes()
        _, verdict, _ = await gateway.judge(
            Envelope(new_queue_id(), "bob@example.com", ["sam.okafor@example.com"]), raw)
        assert verdict.has("HDR_FROM_MALFORMED")
        assert "block list" not in verdict.reason
    finally:
        await gateway.close()
