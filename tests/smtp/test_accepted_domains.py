"""accepted_domains: example.com is that domain only; *.example.com the ones under it."""

from __future__ import annotations


def _codes(gateway, recipients: list[str]) -> list[int]:
    with gateway.smtp() as client:
        assert client.mail("dana.reyes@example.org")[0] == 250
        return [client.rcpt(address)[0] for address in recipients]


RECIPIENTS = ["sam@example.com", "sam@sub.example.com", "sam@a.b.example.com",
              "sam@badexample.com", "sam@example.com.evil.example"]


def test_a_domain_covers_itself_only(gateway_factory):
    gateway = gateway_factory(config={"smtp": {"accepted_domains": ["example.com"]}})
    assert _codes(gateway, RECIPIENTS) == [250, 550, 550, 550, 550]
    assert not (gateway.data_dir / "mailboxes" / "sub.example.com").exists()


def test_a_wildcard_covers_the_domains_under_it_and_not_itself(gateway_factory):
    gateway = gateway_factory(config={"smtp": {"accepted_domains": ["*.example.com"]}})
    assert _codes(gateway, RECIPIENTS) == [550, 250, 250, 550, 550]


def test_both_together_cover_the_whole_tree(gateway_factory, shared):
    gateway = gateway_factory(config={"smtp": {"accepted_domains": ["example.com",
                                                                    "*.example.com"]}})
    assert _codes(gateway, RECIPIENTS) == [250, 250, 250, 550, 550]
    gateway.send(b"From: dana.reyes@example.org\r\nTo: sam@sub.example.com\r\n"
                 b"Subject: hello\r\n\r\nHello Sam.\r\n", rcpts=["sam@sub.example.com"])
    gateway.wait_log("delivered to <sam@sub.example.com> via maildir")
    assert list((gateway.data_dir / "mailboxes/sub.example.com/sam/new").iterdir())
