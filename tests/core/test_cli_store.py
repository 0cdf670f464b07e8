"""CLI commands find the gateway's data directory or refuse; none makes a stray one."""

from __future__ import annotations

import os
import subprocess
import sys


def mailward(cwd, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MAILWARD_CONFIG"}
    return subprocess.run([sys.executable, "-m", "mailward", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_store_command_refuses_a_relative_data_dir_missing_here(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for args in (["intel", "add", "--type", "domain", "evil.example"],
                 ["intel", "list"], ["token", "list"], ["quarantine", "list"],
                 ["user", "list"]):
        result = mailward(elsewhere, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert f"no data directory at {elsewhere / 'mailward-data'}" in result.stderr
        assert "--config FILE" in result.stderr and "Traceback" not in result.stderr
    assert list(elsewhere.iterdir()) == []
    # Commands that need no store still work there.
    assert mailward(elsewhere, "config", "check").returncode == 0
    assert list(elsewhere.iterdir()) == []


def test_the_store_is_found_by_directory_or_by_an_absolute_config(tmp_path):
    home = tmp_path / "gateway"
    home.mkdir()
    assert mailward(home, "db", "upgrade").returncode == 0
    added = mailward(home, "intel", "add", "--type", "domain", "evil.example")
    assert added.returncode == 0, added.stderr
    config = tmp_path / "mailward.toml"
    config.write_text(f'[storage]\ndata_dir = "{home / "mailward-data"}"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = mailward(elsewhere, "--config", str(config), "intel", "list")
    assert listed.returncode == 0, listed.stderr
    assert "evil.example" in listed.stdout
    relative = tmp_path / "relative.toml"
    relative.write_text('[storage]\ndata_dir = "data"\n')
    refused = mailward(elsewhere, "--config", str(relative), "intel", "list")
    assert refused.returncode == 2 and f"storage.data_dir in {relative}" in refused.stderr
    assert list(elsewhere.iterdir()) == []
