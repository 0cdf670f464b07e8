"""Configuration: one schema, embedded defaults, errors that name the key."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from mailward.config import ConfigError, Settings, defaults_toml, load_settings


def write(tmp_path, text: str):
    path = tmp_path / "mailward.toml"
    path.write_text(text)
    return path


def test_no_file_gives_the_embedded_defaults():
    settings = load_settings()
    assert settings.smtp.listen == "127.0.0.1:2525"
    assert settings.web.listen == "127.0.0.1:8025"
    assert settings.storage.data_dir == "./mailward-data"
    assert settings.delivery.relay == ""
    assert settings.smtp.accepted_domains == []
    assert settings.smtp.max_message_size == 25 * 1024 * 1024
    assert settings.delivery.max_age == 5 * 86400
    assert settings.pipeline.deadline == 60


def test_a_file_overrides_only_what_it_names(tmp_path):
    settings = load_settings(write(tmp_path, '[smtp]\nmax_recipients = 5\naccepted_domains = ["Example.COM."]\n'))
    assert settings.smtp.max_recipients == 5
    assert settings.smtp.accepted_domains == ["example.com"]
    assert settings.smtp.listen == "127.0.0.1:2525"


def test_accepted_domains_take_a_wildcard_for_the_domains_under_one():
    settings = Settings.model_validate(
        {"smtp": {"accepted_domains": ["Example.COM.", "*.Example.COM."]}})
    assert settings.smtp.accepted_domains == ["example.com", "*.example.com"]


@pytest.mark.parametrize("text, key", [
    ('[smtp]\nlisten = "nonsense"', "smtp.listen"),
    ('[smtp]\nmax_message_size = "lots"', "smtp.max_message_size"),
    ('[smtp]\nmax_message_size = -1', "smtp.max_message_size"),
    ('[smtp]\nlisen = "127.0.0.1:25"', "smtp.lisen: unknown key"),
    ('[delivery]\nmax_age = "forever"', "delivery.max_age"),
    ('[connection]\nallow = ["10.0.0.300/8"]', "connection.allow.0"),
    ('[ratelimit]\nmessages_per_ip = "lots"', "messages_per_ip"),
    ('[smtp]\nlisten = "0.0.0.0:25"', "smtp.accepted_domains"),
    ('[outbound]\nenabled = true', "outbound.relay"),
    ('[delivery]\nrelay = "127.0.0.1:2599"', "delivery.relay: '127.0.0.1:2599' is not smtp://"),
    ('[delivery]\nbounce_relay = "lmtp://127.0.0.1:24"', "delivery.bounce_relay"),
    ('[alerts]\nsmtp_relay = "mail.example"', "alerts.smtp_relay"),
])
def test_a_config_error_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text))
    assert key in str(error.value)


def test_public_listener_with_accepted_domains_is_allowed(tmp_path):
    settings = load_settings(write(tmp_path, '[smtp]\nlisten = "0.0.0.0:25"\n'
                                              'accepted_domains = ["example.com"]\n'))
    assert settings.smtp.listen == "0.0.0.0:25"


def test_defaults_print_every_key_with_a_comment_and_parse_back():
    text = defaults_toml()
    data = tomllib.loads(text)
    for section, field in Settings.model_fields.items():
        assert section in data
        for key, item in field.annotation.model_fields.items():
            assert key in data[section], f"{section}.{key}"
            assert item.description, f"{section}.{key} has no comment"
            assert f"# {item.description}\n{key} = " in text
    assert Settings.model_validate(data) == Settings()


def test_the_command_prints_defaults_and_refuses_bad_files(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mailward", "config", "defaults"],
                         capture_output=True, text=True, check=True).stdout
    assert "[smtp]" in out and "accepted_domains = []" in out
    bad = write(tmp_path, "[web]\nlisten = 8025\n")
    result = subprocess.run([sys.executable, "-m", "mailward", "config", "check", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "web.listen" in result.stderr


def test_a_relay_url_with_a_scheme_is_accepted(tmp_path):
    settings = load_settings(write(tmp_path, '[delivery]\nrelay = "smtps://mx.example:465"\n'))
    assert settings.delivery.relay == "smtps://mx.example:465"


@pytest.mark.parametrize("data_dir, says", [
    ("/proc/mailward-nope", "cannot create /proc/mailward-nope"),
    ("{tmp}/a-file", "a-file is a file, not a directory"),
])
def test_an_unusable_data_dir_is_one_line_from_check_and_serve(tmp_path, data_dir, says):
    # serve stops at the data directory, before it would listen on port 9.
    (tmp_path / "a-file").write_text("not a directory\n")
    path = write(tmp_path, f'[storage]\ndata_dir = "{data_dir.format(tmp=tmp_path)}"\n'
                           '[smtp]\nlisten = "127.0.0.1:9"\n[web]\nlisten = "127.0.0.1:9"\n')
    for args in (["config", "check", str(path)], ["serve", "--config", str(path)]):
        result = subprocess.run([sys.executable, "-m", "mailward", *args], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert "storage.data_dir: " in result.stderr and says in result.stderr


def test_a_missing_tls_certificate_is_named_by_check_and_serve(tmp_path):
    path = write(tmp_path, '[smtp]\nlisten = "127.0.0.1:9"\ntls_cert = "/nonexistent.pem"\n'
                           f'[web]\nlisten = "127.0.0.1:9"\n'
                           f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    for args in (["config", "check", str(path)], ["serve", "--config", str(path)]):
        result = subprocess.run([sys.executable, "-m", "mailward", *args], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and "smtp.tls_cert" in result.stderr


def refused_by_check_and_serve(tmp_path, path, says: str, one_line: bool = False) -> None:
    """Both `config check` and `serve` exit 2 saying `says`, without a traceback."""
    for args in (["config", "check", str(path)], ["serve", "--config", str(path)]):
        result = subprocess.run([sys.executable, "-m", "mailward", *args], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and says in result.stderr, result.stderr
        if one_line and args[0] == "config":
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("key, value, says", [
    ("model", "/nonexistent.npz", "spam.model: /nonexistent.npz does not exist"),
    ("model", "/etc/passwd", "spam.model: /etc/passwd: not a model file"),
    ("model", "{tmp}/empty.npz", "empty.npz: not a model file"),
    ("language_model", "/nonexistent.npz",
     "spam.language_model: /nonexistent.npz does not exist"),
    ("language_model", "/etc/passwd", "spam.language_model: /etc/passwd: not a model file"),
])
def test_a_model_file_that_does_not_load_is_named_by_check_and_serve(tmp_path, key, value, says):
    (tmp_path / "empty.npz").write_bytes(b"")
    path = write(tmp_path, f'[spam]\n{key} = "{value.format(tmp=tmp_path)}"\n'
                           '[smtp]\nlisten = "127.0.0.1:9"\n[web]\nlisten = "127.0.0.1:9"\n'
                           f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    refused_by_check_and_serve(tmp_path, path, says, one_line=True)


def test_model_files_that_load_pass_the_check(tmp_path):
    from importlib import resources

    model = resources.files("mailward").joinpath("data/spam-model.npz")
    path = write(tmp_path, f'[spam]\nmodel = "{model}"\nlanguage_model = "{model}"\n'
                           f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    result = subprocess.run([sys.executable, "-m", "mailward", "config", "check", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout


@pytest.mark.parametrize("scores, says", [
    ("[symbols]\nSPAM_MODEL = 3\n", "scores.toml: actions: no thresholds"),
    ("[actions]\ntag = 6\n[symbols]\nSPAM_MODLE = 3\n",
     "symbols.SPAM_MODLE (did you mean SPAM_MODEL?): no check emits this symbol"),
    ("[actions]\ntag = 20\nquarantine = 10\n",
     "actions.tag = 20 is not below actions.quarantine = 10"),
])
def test_a_scores_file_that_would_not_filter_is_refused_by_check_and_serve(tmp_path, scores,
                                                                          says):
    (tmp_path / "scores.toml").write_text(scores)
    path = write(tmp_path, f'[policy]\nscores_file = "{tmp_path / "scores.toml"}"\n'
                           '[smtp]\nlisten = "127.0.0.1:9"\n[web]\nlisten = "127.0.0.1:9"\n'
                           f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    refused_by_check_and_serve(tmp_path, path, says)


def test_a_copy_of_the_shipped_scores_with_other_thresholds_passes_the_check(tmp_path):
    from importlib import resources

    text = resources.files("mailward").joinpath("scores.toml").read_text(encoding="utf-8")
    (tmp_path / "scores.toml").write_text(text.replace("tag = 6.0\n", "tag = 8.0\n", 1))
    path = write(tmp_path, f'[policy]\nscores_file = "{tmp_path / "scores.toml"}"\n'
                           f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    result = subprocess.run([sys.executable, "-m", "mailward", "config", "check", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"scored symbols from {tmp_path / 'scores.toml'}" in result.stdout


def config_check(tmp_path, text: str) -> subprocess.CompletedProcess:
    """config_check - `mailward config check` on a file holding text."""
    data_dir = f'data_dir = "{tmp_path / "data"}"\n'
    text = (text.replace("[storage]\n", "[storage]\n" + data_dir, 1) if "[storage]\n" in text
            else f"{text}\n[storage]\n{data_dir}")
    path = write(tmp_path, text)
    return subprocess.run([sys.executable, "-m", "mailward", "config", "check", str(path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("text, says", [
    # An unsupported database is refused before serve would try to open it.
    ('[storage]\ndatabase_url = "mysql://mailward:hunter2@db/mailward"',
     "storage.database_url: the scheme 'mysql' is not supported (supported: postgresql"),
    ('[storage]\ndatabase_url = "mailward.db"', "storage.database_url: is not a database URL"),
    ('[storage]\ndatabase_url = "sqlite://"', "storage.database_url: SQLite needs a file"),
    # A listener names its port; none is assumed.
    ('[smtp]\nlisten = "localhost"', "smtp.listen: 'localhost' has no port; write HOST:PORT, "
                                     "e.g. localhost:25"),
    ('[web]\nlisten = "localhost"', "web.listen: 'localhost' has no port; write HOST:PORT, "
                                    "e.g. localhost:8025"),
    ('[smtp]\nlisten = "::1"', "smtp.listen: '::1' has no port; write an IPv6 address in "
                               "brackets with its port, e.g. [::1]:25"),
    ('[web]\nlisten = "[::1]"', "web.listen: '[::1]' has no port"),
    ('[web]\nlisten = ":8025"', "web.listen: ':8025' has no host; write 0.0.0.0:8025"),
    ('[web]\nlisten = "*:8025"', "web.listen: '*:8025': '*' is not an IP address or host name"),
    # Host lists: an empty name or a wildcard would match nothing, silently.
    ('[spam]\ninternal_hosts = [""]', "spam.internal_hosts.0: '' is not a host name, domain "
                                      "or IP address"),
    ('[spam]\ninternal_hosts = ["mx.example.com", "*.example.com"]',
     "spam.internal_hosts.1: '*.example.com' is not a host name, domain or IP address (no "
     "wildcards: example.com also covers every host under it)"),
    ('[smtp]\naccepted_domains = ["mail.*.example.com"]',
     "smtp.accepted_domains.0: 'mail.*.example.com': a wildcard is understood only as a "
     "whole first label, e.g. *.example.com"),
    ('[smtp]\naccepted_domains = ["*.example..com"]',
     "smtp.accepted_domains.0: '*.example..com' is not *. and a domain name"),
    ('[impostor]\npartner_domains = ["supplier..example"]',
     "impostor.partner_domains.0: 'supplier..example' is not a domain name"),
    ('[policy]\nallow_senders = ["example.org"]',
     "policy.allow_senders.0: 'example.org' is neither an address nor @domain; write "
     "@example.org for the whole domain"),
    ('[policy]\nblock_senders = [""]', "policy.block_senders.0: '' is neither an address"),
    ('[reports]\nsimulation_senders = ["*@phish-test.example"]',
     "reports.simulation_senders.0: '*@phish-test.example': wildcards are not understood"),
    ('[dns]\nnameservers = ["dns.example"]', "dns.nameservers.0: 'dns.example' is not IP"),
    # URLs are checked where they are set, not when first used.
    ('[web]\npublic_url = "mail.example.com"',
     "web.public_url: 'mail.example.com' is not an http(s) URL"),
    ('[sandbox]\ncape_url = "cape:8000/apiv2"', "sandbox.cape_url: 'cape:8000/apiv2' is not"),
    ('[trap]\nmisp_url = "misp.example"', "trap.misp_url: 'misp.example' is not an http(s)"),
    ('[alerts]\nsyslog = "siem.example:514"',
     "alerts.syslog: 'siem.example:514' is not udp://host:port or tcp://host:port"),
    ('[reports]\nnotify_relay = "smtp://"', "reports.notify_relay: 'smtp://' is not smtp://"),
    ('[reports]\nqueue = "amqp://broker"', "reports.queue: 'amqp://broker' is neither empty"),
    ('[ratelimit]\nbackend = "memcached://cache:11211"',
     "ratelimit.backend: 'memcached://cache:11211' is neither memory nor redis://"),
    # Names written into protocol lines and headers: no spaces, CR or LF.
    ('[smtp]\nhostname = "bad host name!\\r\\n250 fake"',
     "smtp.hostname: 'bad host name!\\r\\n250 fake' is not a host name"),
    ('[smtp]\nhostname = "mx.example.com\\r\\n"', "smtp.hostname: "),
    ('[auth]\nauthserv_id = "mx example"', "auth.authserv_id: 'mx example' is not one word"),
    ('[delivery]\nbounce_from = "daemon@mx\\r\\nBcc: x@evil.example"',
     "delivery.bounce_from: "),
    ('[web]\ndigest_from = "quarantine @example.com"', "web.digest_from: "),
    # TOML's types must match: no booleans for numbers, no strings for booleans.
    ('[smtp]\nmax_recipients = true', "smtp.max_recipients: expected an integer, got true"),
    ('[smtp]\nrequire_starttls = "yes"',
     "smtp.require_starttls: expected true or false, got the string 'yes'"),
    ('[smtp]\nmax_sessions = "500"', "smtp.max_sessions: expected an integer, got the string"),
    ('[smtp]\nhostname = 5', "smtp.hostname: expected a string"),
    ('[smtp]\nmax_recipients = 99999999999999999999999',
     "smtp.max_recipients: 99999999999999999999999 is too large (at most 2147483647)"),
    ('[smtp]\nmax_message_size = "9999TiB"', "smtp.max_message_size: 9999TiB is too large"),
    ('[delivery]\nmax_age = 1e300', "delivery.max_age: 1e+300 is too long"),
    ('[sandbox]\ncape_malicious_score = nan', "sandbox.cape_malicious_score: nan is not a finite"),
    # A database URL names its database.
    ('[storage]\ndatabase_url = "postgresql://"',
     "storage.database_url: names no database; write postgresql://user@host/DATABASE"),
    ('[storage]\ndatabase_url = "postgresql://mailward:hunter2@db.example"',
     "storage.database_url: names no database"),
])
def test_config_check_refuses_a_setting_that_would_fail_or_do_nothing(tmp_path, text, says):
    result = config_check(tmp_path, text)
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr and says in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "hunter2" not in result.stderr  # a database password is never echoed


def test_an_unsupported_database_is_refused_by_serve_without_a_traceback(tmp_path):
    path = write(tmp_path, '[storage]\ndatabase_url = "mysql://mailward@db/mailward"\n'
                           f'data_dir = "{tmp_path / "data"}"\n'
                           '[smtp]\nlisten = "127.0.0.1:9"\n[web]\nlisten = "127.0.0.1:9"\n')
    refused_by_check_and_serve(tmp_path, path, "storage.database_url: the scheme 'mysql'",
                               one_line=True)


def test_config_check_accepts_the_forms_these_settings_document(tmp_path):
    result = config_check(tmp_path, f'''
[smtp]
listen = "[::1]:2525"
accepted_domains = ["Example.COM."]
[web]
listen = "localhost:8025"
public_url = "https://mail.example.com/"
[storage]
database_url = "sqlite:///{tmp_path / "mailward.db"}"
[spam]
internal_hosts = [".Example.COM", "mx1.example.net.", "192.0.2.25", "localhost"]
[policy]
allow_senders = ["@example.org", "ceo@example.net"]
[dns]
nameservers = ["127.0.0.1:5353", "::1", "[::1]:53"]
[alerts]
syslog = "udp://127.0.0.1:514"
[ratelimit]
backend = "memory"
''')
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout
    settings = load_settings(tmp_path / "mailward.toml")
    assert settings.spam.internal_hosts == ["example.com", "mx1.example.net", "192.0.2.25",
                                            "localhost"]
    assert settings.database_url.startswith("sqlite+aiosqlite:///")


def test_an_empty_data_dir_is_refused_not_taken_as_the_current_directory(tmp_path):
    path = write(tmp_path, '[storage]\ndata_dir = ""\n'
                           '[smtp]\nlisten = "127.0.0.1:9"\n[web]\nlisten = "127.0.0.1:9"\n')
    refused_by_check_and_serve(tmp_path, path, "storage.data_dir: is empty", one_line=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mailward.toml"]


def test_a_config_file_that_is_not_utf8_is_one_line_from_check_and_serve(tmp_path):
    path = tmp_path / "mailward.toml"
    path.write_bytes(b'[smtp]\nhostname = "caf\xe9.example"\n')
    refused_by_check_and_serve(tmp_path, path, "is not UTF-8 text (byte 0xe9 at offset 22); "
                                               "save it as UTF-8", one_line=True)


def test_a_sqlite_file_in_a_directory_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "a-file").write_text("not a directory\n")
    path = write(tmp_path, f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                           f'database_url = "sqlite:///{tmp_path}/a-file/db/x.db"\n'
                           '[smtp]\nlisten = "127.0.0.1:9"\n[web]\nlisten = "127.0.0.1:9"\n')
    refused_by_check_and_serve(tmp_path, path, "storage.database_url: cannot create "
                                               f"{tmp_path}/a-file/db", one_line=True)
    result = subprocess.run([sys.executable, "-m", "mailward", "--config", str(path), "db",
                             "upgrade"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "storage.database_url: cannot create" in result.stderr


def test_a_sqlite_directory_is_made_like_the_data_dir(tmp_path):
    path = write(tmp_path, f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                           f'database_url = "sqlite:///{tmp_path}/new/dir/x.db"\n')
    assert config_run(path, "config", "check").returncode == 0
    assert not (tmp_path / "new").exists()  # the check makes nothing
    assert config_run(path, "db", "upgrade").returncode == 0
    assert (tmp_path / "new" / "dir" / "x.db").is_file()


def test_a_database_that_does_not_answer_is_one_line_from_serve(tmp_path):
    import socket

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    path = write(tmp_path, f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                           f'database_url = "postgresql://mailward:hunter2@127.0.0.1:{port}/mw"\n'
                           '[smtp]\nlisten = "127.0.0.1:9"\n[web]\nlisten = "127.0.0.1:9"\n')
    for args in (["serve"], ["db", "upgrade"]):
        result = config_run(path, *args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if "storage.database_url" in line]
        assert lines and f"cannot open postgresql://mailward:***@127.0.0.1:{port}/mw" in lines[0]
        assert "Connect call failed" in lines[0] or "refused" in lines[0].lower()


def test_env_and_override_values_still_load():
    settings = load_settings(overrides={"smtp.max_recipients": 7, "dns.timeout": "0.2s",
                                        "smtp.require_starttls": True,
                                        "web.trusted_proxies": ["10.0.0.1"]})
    assert settings.smtp.max_recipients == 7 and settings.dns.timeout == 0.2
    assert settings.web.trusted_proxies == ["10.0.0.1/32"]


def test_overrides_from_python_are_read_as_toml_would_give_them(tmp_path):
    # A tuple is an array and a path is a string, as written in a file.
    settings = load_settings(overrides={"spam.internal_hosts": ("mx.example.org", "lan"),
                                        "storage.data_dir": tmp_path / "data"})
    assert settings.spam.internal_hosts == ["mx.example.org", "lan"]
    assert str(settings.storage.data_dir) == str(tmp_path / "data")


def config_run(path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailward", "--config", str(path), *args],
                          cwd=path.parent, capture_output=True, text=True, timeout=120)
