"""`mailward scan`: a verdict per file, named in full."""

from __future__ import annotations

from click.testing import CliRunner


def test_scan_names_every_file_in_full_and_judges_each(tmp_path, shared):
    from mailward.cli import main

    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "more"
    deep.mkdir(parents=True)
    files = []
    for name, raw in (("plain.eml", b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"),
                      ("nul-charset.eml", b"From: a@example.org\r\nContent-Type: text/plain;"
                                          b" charset=\"a\x00b\"\r\n\r\nhello\r\n")):
        path = deep / name
        path.write_bytes(raw)
        files.append(str(path))
    files.append(str(shared / "cases" / "C26_zerofont.eml"))
    config = tmp_path / "mailward.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    answer = CliRunner().invoke(main, ["-c", str(config), "scan", *files],
                                env={"COLUMNS": "80"})
    assert answer.exit_code == 0, answer.output
    folded = "".join(line.split("│")[1].strip() for line in answer.output.splitlines()
                     if line.count("│") >= 4)
    for path in files:
        assert path in folded, path
    assert "Traceback" not in answer.output and "error 0" in answer.output


def test_scan_json_names_the_category_and_the_reason(tmp_path, shared):
    import json

    from mailward.cli import main

    config = tmp_path / "mailward.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    spam = sorted((shared / "corpus" / "spam" / "spam").iterdir())[4]
    answer = CliRunner().invoke(main, ["-c", str(config), "scan", "--json", str(spam)])
    assert answer.exit_code == 0, answer.output
    [row] = [json.loads(line) for line in answer.output.splitlines() if line.startswith("{")]
    assert row["action"] in ("tag", "quarantine") and row["category"] == "spam"
    assert "threshold" in row["reason"]


def test_scan_skips_files_learn_would_refuse_and_judges_the_messages(tmp_path, shared):
    import json

    from mailward.cli import main

    config = tmp_path / "mailward.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    archive = shared / "corpus" / "malware" / "synthetic" / "eicar_com.zip"
    message = shared / "cases" / "C26_zerofont.eml"
    answer = CliRunner().invoke(main, ["-c", str(config), "scan", "--json", str(archive),
                                       str(message)])
    assert answer.exit_code == 0, answer.output
    rows = {row["file"]: row for row in (json.loads(line) for line in
                                         answer.output.splitlines() if line.startswith("{"))}
    assert rows[str(archive)]["action"] == "not mail"
    assert "mail header" in rows[str(archive)]["reason"]
    assert rows[str(message)]["action"] in ("deliver", "tag", "quarantine", "reject")
    assert "1 messages:" in answer.output and "1 files skipped, not mail" in answer.output
    only = CliRunner().invoke(main, ["-c", str(config), "scan", str(archive)],
                              env={"COLUMNS": "200"})
    assert only.exit_code == 1 and "not mail" in only.output
    assert "HDR_FROM_MISSING" not in only.output
