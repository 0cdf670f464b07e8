"""Malformed mail is data: every message gets a verdict, the gateway keeps running,
and what is delivered is the original plus our headers."""

from __future__ import annotations

import pytest

NESTED = b"".join(f"Content-Type: multipart/mixed; boundary=\"n{i}\"\r\n\r\n--n{i}\r\n".encode()
                  for i in range(100)) + b"Content-Type: text/plain\r\n\r\ndeep\r\n" + \
    b"".join(f"--n{i}--\r\n".encode() for i in reversed(range(100)))

BAD = {
    "malformed_mime": b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\nno parts\r\n--x",
    "missing_headers": b"\r\njust a body, no headers at all\r\n",
    "garbage_8bit_headers": b"Subject: \xff\xfe\x80\x81\r\nFrom: \xc3\x28 <\xe9@ex\xe4mple.org>\r\n"
                            b"Content-Type: text/plain; charset=\"\xff\"\r\n\r\n\xfe\xff body\r\n",
    "nested_100_deep": NESTED,
    "header_line_1mb": b"X-Pad: " + b"z" * (1024 * 1024) + b"\r\nSubject: pad\r\n\r\nb\r\n",
    "only_headers": b"From: a@example.org\r\nSubject: only headers",
    "base64_garbage": b"Content-Type: application/zip; name=x.zip\r\n"
                      b"Content-Transfer-Encoding: base64\r\n\r\n!!!@@@###\r\nUEsDBA==\r\n",
    "nul_in_charset": b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
                      b"Content-Type: text/plain; charset=\"a\x00b\"\r\n\r\nhello\r\n",
    "html_nul_in_charset": b"From: a@example.org\r\nContent-Type: text/html; "
                           b"charset=\"\x00\"\r\n\r\n<p>hello <b>there</b></p>\r\n",
    "from_180kb": b"From: " + b"Jane, " * 30000 + b"<jane@example.org>\r\nTo: " +
                  b"\"a\\\" " * 30000 + b"<b@example.com>\r\nSubject: long\r\n\r\nhi\r\n",
    "truncated_zip": b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
                     b"Content-Type: application/zip\r\nContent-Disposition: attachment; "
                     b"filename=a.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                     b"UEsDBBQAAAAIAA==\r\n--z--\r\n",
}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    from tests.support.gateway import RunningGateway
    from tests.support.sink import SmtpSink

    sink = SmtpSink().start()
    directory = tmp_path_factory.mktemp("bad-input")
    gateway = RunningGateway(directory, relay=sink.url,
                             config={"pipeline": {"disabled_checks": ["spam_model"]}}).start()
    yield gateway, sink
    gateway.stop()
    sink.stop()


def wait_delivered(sink, queue_id: str, timeout: float = 20) -> bytes:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in sink.messages:
            if f"X-Mailward-Queue-Id: {queue_id}\r\n".encode() in message.data[:300]:
                return message.data
        time.sleep(0.05)
    raise AssertionError(f"{queue_id} never reached the relay")


def decision(gateway, queue_id: str) -> str:
    text = gateway.wait_log(f"{queue_id}: peer=", timeout=15)
    return text.split(f"{queue_id}: peer=")[1].split("\n")[0]


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_malformed_message_gets_a_verdict(running, name):
    gateway, sink = running
    raw = BAD[name]
    with gateway.smtp() as client:
        client.mail("sender@example.org")
        client.rcpt("user@example.com")
        code, text = client.data(raw)
    assert code in (250, 550), (code, text)
    if code == 250:
        queue_id = text.decode().rsplit(" ", 1)[-1]
        if "action=deliver" in decision(gateway, queue_id):
            delivered = wait_delivered(sink, queue_id)
            sent = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
            assert delivered.endswith(sent)
            added = delivered[: len(delivered) - len(sent)]
            fields = [line.split(b":")[0] for line in added.split(b"\r\n")
                      if line and line[:1] not in (b" ", b"\t")]
            assert fields == [b"X-Mailward-Queue-Id", b"X-Mailward-Verdict",
                              b"Authentication-Results", b"Received"]
            assert b"Authentication-Results: mx.test.example; " in added
            assert b"Received: from client.test.example" in added
    assert "Traceback" not in gateway.log()
    with gateway.smtp() as client:  # the gateway is still serving
        assert client.noop()[0] == 250
