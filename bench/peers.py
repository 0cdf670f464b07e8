"""SpamAssassin and rspamd on the same held-out mail, beside mailward.

Usage: .venv/bin/python bench/peers.py [--skip-ours] [--no-embedding] [--only spamassassin|rspamd]

Needs the Debian packages ``spamassassin``, ``spamd``, ``spamc``, ``rspamd``
and ``redis-server``. Everything runs on loopback from a temporary
directory: the peers' own configuration files are not touched.

- SpamAssassin: ``spamd -L`` (local tests only) with one child and a
  private site configuration whose Bayes database ``sa-learn`` fills from
  the training part (ham against spam and phishing, no autolearn); each
  held-out message is scored with ``spamc``.
- rspamd: one normal worker with a private configuration (RBL, fuzzy and
  other network modules off, DNS pointed at a local server that answers
  NXDOMAIN at once), Bayes in a private Redis, trained with ``rspamc
  learn_ham``/``learn_spam`` on the same training part, no autolearn; each
  held-out message is scored through ``/checkv2``.

The split is ``bench/corpus_split.py``'s, the same as ``bench/accuracy.py``;
mailward's figures come from that script's ``evaluate`` in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from corpus_split import Split, split  # noqa: E402
from figures import Result, print_results  # noqa: E402

MAX_SIZE = 4 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}; see {log}:\n"
                               + log.read_text(errors="replace")[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"nothing listens on port {port} after {seconds:.0f} s; see {log}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def link_training(work: Path, parts: Split) -> tuple[Path, Path]:
    """link_training - folders of copies: ham, and spam plus phishing (rspamc
    skips symbolic links)."""
    ham, bad = work / "train-ham", work / "train-spam"
    for folder, files in ((ham, parts.train["ham"]),
                          (bad, parts.train["spam"] + parts.train["phishing"])):
        folder.mkdir()
        for path in files:
            shutil.copyfile(path, folder / f"{path.parent.name}__{path.name}")
    return ham, bad


def group_cpu(group: int) -> float:
    """group_cpu - CPU seconds used so far by the processes of a process group."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            # Own time, and that of children it has reaped (spamd replaces its child).
            total += sum(int(value) for value in fields[11:15])
    return total / ticks


def decisions(scores: dict[str, np.ndarray], limits: dict[str, float]
              ) -> dict[str, dict[str, np.ndarray]]:
    return {name: {c: s >= limit for c, s in scores.items()} for name, limit in limits.items()}


# SpamAssassin


@contextmanager
def spamd(work: Path) -> Iterator[tuple[int, int]]:
    """spamd - a local-tests-only spamd with a private site config and Bayes."""
    site = work / "sa-site"
    shutil.copytree("/etc/spamassassin", site, symlinks=False,
                    ignore=shutil.ignore_patterns("sa-update*"))
    bayes = work / "sa-bayes"
    bayes.mkdir()
    (site / "local.cf").write_text(
        "use_bayes 1\nbayes_auto_learn 0\nbayes_auto_expire 0\n"
        f"bayes_path {bayes}/bayes\nbayes_file_mode 0777\n"
        "skip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\n", encoding="utf-8")
    os.chmod(work, 0o755)
    port = free_port()
    log = work / "spamd.log"
    process = subprocess.Popen(
        ["spamd", "-L", "-x", "--siteconfigpath", str(site), "-i", "127.0.0.1",
         "-p", str(port), "-m", "1", "--min-children=1", "--max-children=1",
         "-u", "nobody", "-s", str(log), "-r", str(work / "spamd.pid")],
        stdout=subprocess.DEVNULL, stderr=open(log.with_suffix(".err"), "wb"),
        start_new_session=True)
    try:
        wait_port(port, process, 120, log.with_suffix(".err"))
        yield port, process.pid
    finally:
        stop(process)


def sa_learn(work: Path, ham: Path, bad: Path) -> None:
    site, bayes = work / "sa-site", work / "sa-bayes"
    for flag, folder in (("--ham", ham), ("--spam", bad)):
        subprocess.run(["sa-learn", "-L", "--siteconfigpath", str(site), "--dbpath",
                        str(bayes), "--no-sync", flag, str(folder)], check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run(["sa-learn", "--siteconfigpath", str(site), "--dbpath", str(bayes),
                    "--sync"], check=True, stdout=subprocess.DEVNULL)
    for path in [bayes, *bayes.iterdir()]:
        os.chmod(path, 0o777)


def spamc_score(port: int, raw: bytes) -> float:
    answer = subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(port), "-c",
                             "-s", str(MAX_SIZE)], input=raw, capture_output=True,
                            timeout=120)
    text = answer.stdout.decode().strip()
    try:
        return float(text.split("/")[0])
    except ValueError:
        raise RuntimeError(f"spamc answered {text!r}") from None


def run_spamassassin(parts: Split) -> Result:
    with tempfile.TemporaryDirectory(prefix="peer-sa-") as name:
        work = Path(name)
        ham, bad = link_training(work, parts)
        with spamd(work) as (port, group):
            started = time.perf_counter()
            sa_learn(work, ham, bad)
            trained = time.perf_counter() - started
            scores, seconds, cpu = score_all(parts, lambda raw: spamc_score(port, raw),
                                             group)
    return Result("SpamAssassin + Bayes", scores,
                  decisions(scores, {"its default (score >= 5)": 5.0}), seconds, cpu,
                  f"(spamd -L, one child; Bayes learnt in {trained:.0f} s; CPU is spamd's)")


# rspamd


_RSPAMD_OFF = ("rbl", "fuzzy_check", "surbl", "emails", "asn", "dkim", "spf", "dmarc",
               "arc", "mx_check", "dcc", "replies", "greylist", "ratelimit", "neural",
               "history_redis", "reputation", "url_redirector", "external_services",
               "metadata_exporter", "clickhouse", "elastic", "rbl_dkim", "whitelist",
               "dkim_signing", "arc_signing", "p0f", "antivirus", "spamassassin",
               "maillist_reputation", "milter_headers")


@contextmanager
def rspamd(work: Path, dns_port: int) -> Iterator[tuple[int, int, int]]:
    """rspamd - a private rspamd (one normal worker, a controller) and Redis."""
    local = work / "rspamd-local"
    for sub in ("local.d", "override.d"):
        (local / sub).mkdir(parents=True)
    for sub in ("db", "run", "log"):
        (work / sub).mkdir()
    redis_port, normal, controller, proxy = (free_port() for _ in range(4))
    override = local / "override.d"
    (override / "worker-normal.inc").write_text(
        f'bind_socket = "127.0.0.1:{normal}";\ncount = 1;\n')
    (override / "worker-controller.inc").write_text(
        f'bind_socket = "127.0.0.1:{controller}";\ncount = 1;\n'
        'secure_ip = "127.0.0.1";\n')
    (override / "worker-proxy.inc").write_text(
        f'bind_socket = "127.0.0.1:{proxy}";\ncount = 1;\n')
    (override / "options.inc").write_text(
        f'dns {{ nameserver = ["127.0.0.1:{dns_port}"]; timeout = 1s; retransmits = 1; }}\n'
        'local_addrs = ["127.0.0.0/8"];\n')
    (override / "logging.inc").write_text('level = "error";\n')
    (override / "classifier-bayes.conf").write_text(
        f'backend = "redis";\nservers = "127.0.0.1:{redis_port}";\n'
        'min_learns = 10;\nautolearn = false;\n')
    for module in _RSPAMD_OFF:
        (local / "local.d" / f"{module}.conf").write_text("enabled = false;\n")
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(work / "db")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    log = work / "log" / "rspamd.err"
    daemon = subprocess.Popen(
        ["rspamd", "-f", "-i", "-c", "/etc/rspamd/rspamd.conf",
         f"--var=LOCAL_CONFDIR={local}", f"--var=DBDIR={work / 'db'}",
         f"--var=RUNDIR={work / 'run'}", f"--var=LOGDIR={work / 'log'}"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(redis_port, redis, 30, log)
        # Compiling its regular expressions takes minutes on a loaded machine.
        wait_port(normal, daemon, 600, log)
        wait_port(controller, daemon, 600, log)
        yield normal, controller, daemon.pid
    finally:
        stop(daemon)
        stop(redis)


def rspamc_learn(controller: int, ham: Path, bad: Path) -> None:
    for command, folder in (("learn_ham", ham), ("learn_spam", bad)):
        subprocess.run(["rspamc", "-h", f"127.0.0.1:{controller}", "-n", "2", command,
                        str(folder)], check=True, stdout=subprocess.DEVNULL, timeout=1800)


def run_rspamd(parts: Split) -> Result:
    import httpx

    from tests.support.dnsserver import DnsTestServer

    with tempfile.TemporaryDirectory(prefix="peer-rspamd-") as name, DnsTestServer() as dns:
        work = Path(name)
        ham, bad = link_training(work, parts)
        with rspamd(work, dns.port) as (normal, controller, group):
            started = time.perf_counter()
            rspamc_learn(controller, ham, bad)
            trained = time.perf_counter() - started
            with httpx.Client(base_url=f"http://127.0.0.1:{normal}", timeout=120) as client:
                def score(raw: bytes) -> float:
                    answer = client.post("/checkv2", content=raw)
                    answer.raise_for_status()
                    return float(answer.json()["score"])

                scores, seconds, cpu = score_all(parts, score, group)
    return Result("rspamd + Bayes", scores,
                  decisions(scores, {"its default (score >= 4, greylist)": 4.0,
                                     "score >= 6 (add header)": 6.0}), seconds, cpu,
                  f"(one normal worker; Bayes learnt in {trained:.0f} s; CPU is rspamd's; "
                  "wall time includes its DNS waits on the local server)")


def score_all(parts: Split, score, group: int) -> tuple[dict[str, np.ndarray], float, float]:
    """score_all - every held-out message through one scanner, in order, timed
    (wall time, and the CPU time of the scanner's process group)."""
    blobs = {c: [p.read_bytes()[:MAX_SIZE] for p in files] for c, files in parts.test.items()}
    scores: dict[str, list[float]] = {c: [] for c in blobs}
    started, cpu = time.perf_counter(), group_cpu(group)
    for name, items in blobs.items():
        for raw in items:
            scores[name].append(score(raw))
    return ({c: np.array(v) for c, v in scores.items()}, time.perf_counter() - started,
            group_cpu(group) - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-ours", action="store_true", help="only the peers")
    parser.add_argument("--only", choices=["spamassassin", "rspamd"], default=None)
    parser.add_argument("--no-embedding", action="store_true",
                        help="mailward without its embedding model (the default install)")
    options = parser.parse_args()
    parts = split()
    print(parts.describe(), flush=True)
    results: list[Result] = []
    runs = [] if options.skip_ours else [("mailward", None)]
    runs += [(name, run) for name, run in (("spamassassin", run_spamassassin),
                                           ("rspamd", run_rspamd))
             if options.only in (None, name)]
    for name, run in runs:
        # Each system's figures are printed as soon as they are in.
        try:
            if run is None:
                import accuracy

                results.extend(accuracy.evaluate(not options.no_embedding))
            else:
                results.append(run(parts))
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            print(f"{name} could not be measured: {error}", flush=True)
            continue
        print_results(results)
    print(f"load average: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
