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
