"""Learning from people: learn, relearn, unlearn, and the check sees it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.content.conftest import corpus_slice

SPAMMY = (b"From: Winner Desk <prize@lotto.example>\r\nTo: you@example.com\r\n"
          b"Subject: You have WON $1,000,000 claim your prize now\r\n"
          b"Content-Type: text/html\r\n\r\n<html><body><font color=red size=5>"
          b"CONGRATULATIONS! You have won our international lottery. Claim your "
          b"prize of ONE MILLION DOLLARS now, click here to remove yourself. "
          b"<a href='http://lotto.example/claim'>CLICK HERE</a></font></body></html>\r\n")


def spam_probability(services, raw: bytes) -> float:
    from mailward.content.features import spam_tokens
    from mailward.content.spam import content_findings, load_model
    from mailward.message import Message

    message = Message(raw)
    return load_model(services).probability(spam_tokens(message, content_findings(message)))


def test_learn_moves_the_message_and_unlearn_takes_it_back_exactly(services):
    from mailward.content.learn import learn, unlearn

    original = spam_probability(services, SPAMMY)
    assert original > 0.9
    result = learn(services, SPAMMY, "ham")
    assert result.changed and result.before == pytest.approx(original)
    assert result.after < 0.2 and spam_probability(services, SPAMMY) == pytest.approx(result.after)
    assert (services.data_dir / "feedback" / "ham" / f"{result.sha256}.eml").read_bytes() == SPAMMY

    again = learn(services, SPAMMY, "ham")
    assert not again.changed and again.note == "already learnt"

    # Changing one's mind replaces the earlier lesson instead of stacking on it.
    flipped = learn(services, SPAMMY, "spam")
    assert "relearnt" in flipped.note and spam_probability(services, SPAMMY) > 0.8
    assert not (services.data_dir / "feedback" / "ham" / f"{result.sha256}.eml").exists()

    undone = unlearn(services, SPAMMY)
    assert undone.changed and spam_probability(services, SPAMMY) == pytest.approx(original, abs=1e-5)
    assert not unlearn(services, SPAMMY).changed


def test_line_endings_do_not_make_a_new_message(services):
    from mailward.content.learn import learn

    learn(services, SPAMMY, "ham")
    assert learn(services, SPAMMY.replace(b"\r\n", b"\n"), "ham").note == "already learnt"


def test_learning_one_message_leaves_the_others_alone(corpus, services):
    from mailward.content.learn import learn

    others = [p.read_bytes() for p in corpus_slice("spam/spam", 200, 20)]
    before = [spam_probability(services, raw) for raw in others]
    learn(services, SPAMMY, "ham")
    after = [spam_probability(services, raw) for raw in others]
    assert sum(b > 0.5 for b in before) - sum(a > 0.5 for a in after) <= 1


def test_a_label_other_than_spam_or_ham_is_refused(services):
    from mailward.content.learn import learn

    with pytest.raises(ValueError, match="spam.*ham"):
        learn(services, SPAMMY, "phish")  # type: ignore[arg-type]


async def test_a_running_check_picks_up_what_was_learnt(services):
    from mailward.content.learn import learn
    from mailward.content.spam import SpamModelCheck
    from mailward.envelope import Envelope
    from mailward.message import Message
    from mailward.pipeline import Task

    check = SpamModelCheck.from_services(services)
    task = Task(Envelope(queue_id="q1", mail_from="", rcpt_to=[]), services, Message(SPAMMY))
    assert [f.symbol for f in await check.check(task)] == ["SPAM_MODEL"]
    learn(services, SPAMMY, "ham")
    task = Task(Envelope(queue_id="q2", mail_from="", rcpt_to=[]), services, Message(SPAMMY))
    assert [f.symbol for f in await check.check(task)] == ["HAM_MODEL"]


def test_learn_and_unlearn_commands(tmp_path):
    from mailward.cli import main

    message = tmp_path / "in.eml"
    message.write_bytes(SPAMMY)
    config = tmp_path / "mailward.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    runner = CliRunner()
    answer = runner.invoke(main, ["-c", str(config), "learn", "--ham", str(message)])
    assert answer.exit_code == 0, answer.output
    assert "learnt as ham" in answer.output and (tmp_path / "data" / "spam-model.npz").exists()
    answer = runner.invoke(main, ["-c", str(config), "learn", str(message)])
    assert answer.exit_code == 2 and "--spam or --ham" in answer.output
    answer = runner.invoke(main, ["-c", str(config), "unlearn", str(message)])
    assert answer.exit_code == 0 and "unlearnt" in answer.output


def test_learn_refuses_both_labels_at_once(tmp_path):
    from mailward.cli import main

    message = tmp_path / "in.eml"
    message.write_bytes(SPAMMY)
    config = tmp_path / "mailward.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    answer = CliRunner().invoke(main, ["-c", str(config), "learn", "--spam", "--ham",
                                       str(message)])
    assert answer.exit_code == 2, answer.output
    assert "--spam and --ham exclude each other" in answer.output
    assert not (tmp_path / "data" / "spam-model.npz").exists()


def test_learn_refuses_files_that_are_not_mail_and_learns_the_others(tmp_path, services):
    from mailward.cli import main

    config = tmp_path / "mailward.toml"
    config.write_text(f'[storage]\ndata_dir = "{services.data_dir}"\n')
    message, empty, text = tmp_path / "in.eml", tmp_path / "empty.eml", tmp_path / "passwd"
    message.write_bytes(SPAMMY)
    empty.write_bytes(b"")
    text.write_bytes(b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/bin/sh\n")
    original = spam_probability(services, SPAMMY)
    for path in (empty, text):
        answer = CliRunner().invoke(main, ["-c", str(config), "learn", "--ham", str(path)])
        assert answer.exit_code == 1, answer.output
        assert f"{path}: not learnt, not a mail message" in answer.output
        assert not (services.data_dir / "spam-model.npz").exists()
        assert spam_probability(services, SPAMMY) == pytest.approx(original)
    answer = CliRunner().invoke(main, ["-c", str(config), "learn", "--ham", str(empty),
                                       str(message), str(text)])
    assert answer.exit_code == 1, answer.output
    assert f"{message}: learnt as ham" in answer.output
    assert "the file is empty" in answer.output and "2 of the files were refused" in answer.output
    assert spam_probability(services, SPAMMY) < 0.2
    assert len(list((services.data_dir / "feedback" / "ham").iterdir())) == 1


@pytest.mark.parametrize("raw", [SPAMMY, SPAMMY.replace(b"\r\n", b"\n"),
                                 b"From prize@lotto.example Thu Dec  3 09:00:00 2026\n" + SPAMMY,
                                 b"X-Spam: yes\nReceived: from a\n  by b\nSubject: hi\n\nbody\n"])
def test_a_mail_file_is_mail(raw):
    import mailward.cli  # noqa: F401 (the sub-commands register with the main command)
    from mailward.content.commands import not_mail

    assert not_mail(raw) is None


@pytest.mark.parametrize("raw, says", [
    (b"", "empty"), (b"\r\n\r\n", "empty"),
    (b"hello world\nSubject: no\n", "does not start with a mail header"),
    (b" Subject: folded first\n\nbody", "does not start with a mail header"),
    (b"root:x:0:0:root:/root:/bin/bash\n", "none of From, Subject"),
    (b"Name: value\n\nFrom: in the body\n", "none of From, Subject"),
])
def test_a_file_that_is_not_mail_says_why(raw, says):
    import mailward.cli  # noqa: F401 (the sub-commands register with the main command)
    from mailward.content.commands import not_mail

    assert says in not_mail(raw)



def test_releasing_one_spam_as_ham_does_not_teach_that_its_relays_are_clean(services, corpus):
    from mailward.content.features import GROUPS, LEARNT_GROUPS, spam_tokens
    from mailward.content.learn import learn
    from mailward.content.model import grouped_row
    from mailward.content.spam import content_findings, load_model
    from mailward.message import Message

    # Spam of the same collection shares its Received chain with the released one.
    released, *others = [p.read_bytes() for p in corpus_slice("spam/spam", 2, 6)]
    assert all(spam_probability(services, raw) > 0.99 for raw in others)
    before = load_model(services).coef.copy()
    assert learn(services, released, "ham").after < 0.5
    changed = load_model(services).coef != before
    message = Message(released)
    buckets, _, group = grouped_row(spam_tokens(message, content_findings(message)),
                                    load_model(services).groups)
    relays = {i for i, name in enumerate(GROUPS) if i not in LEARNT_GROUPS}
    assert GROUPS.index("header_values") in relays
    assert not changed[buckets[[g in relays for g in group]]].any()
    assert changed.sum() > 100
    assert all(spam_probability(services, raw) > 0.5 for raw in others)
