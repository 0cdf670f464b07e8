"""Sender-authentication commands: debug look-ups and DMARC aggregate reports.

``mailward spf check``, ``dkim verify``, ``dmarc check`` and ``arc verify``
evaluate one identity or one message file exactly as the gateway would,
each printing the result word first; ``--nameserver HOST[:PORT]`` and
``--zone FILE`` choose where the DNS answers come from. ``mailward dmarc
report`` writes the aggregate reports of a period and can mail them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from mailward.auth.dns import Resolver
from mailward.config import DnsSettings, Settings, parse_duration
from mailward.mime import canonicalize


def _context_settings() -> Settings:
    """_context_settings - the settings of ``mailward --config``, or the defaults."""
    settings = getattr(click.get_current_context().obj, "settings", None)
    if settings is None:
        from mailward.config import load_settings

        settings = load_settings()
    return settings


def dns_options(function):
    """dns_options - --nameserver and --zone, shared by every debug command."""
    function = click.option("--zone", "zone", type=click.Path(exists=True, dir_okay=False),
                            help="Answer from this RFC 1035 master file.")(function)
    return click.option("--nameserver", "nameservers", multiple=True,
                        help="Resolver as HOST or HOST:PORT (repeatable).")(function)


def make_resolver(settings: Settings, nameservers: tuple[str, ...], zone: str | None
                  ) -> Resolver:
    """make_resolver - the configured resolver, or the one the options name."""
    values = settings.dns.model_dump()
    if nameservers:
        values["nameservers"] = list(nameservers)
    if zone:
        values["zone_file"] = zone
    try:
        return Resolver(DnsSettings.model_validate(values))
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _read(path: str) -> bytes:
    return canonicalize(Path(path).read_bytes())[0]


# spf


@click.group()
def spf() -> None:
    """SPF (RFC 7208) look-ups."""


@spf.command("check")
@click.option("--ip", required=True, help="Client IP address.")
@click.option("--mail-from", "mail_from", default="", help="MAIL FROM address (empty = <>).")
@click.option("--helo", default="", help="HELO/EHLO name.")
@dns_options
def spf_check(ip: str, mail_from: str, helo: str, nameservers: tuple[str, ...],
              zone: str | None) -> None:
    """Evaluate SPF; prints the result word, then the explanation."""
    import ipaddress

    from mailward.auth.spf import SpfEvaluator

    try:
        ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        raise click.BadParameter(f"{ip!r} is not an IP address",
                                 param_hint="--ip") from None
    if "@" not in mail_from and not helo:
        raise click.UsageError("give --mail-from ADDRESS, whose domain is checked, or "
                               "--helo NAME, which is checked for the null sender <>")
    settings = _context_settings()
    evaluator = SpfEvaluator(make_resolver(settings, nameservers, zone),
                             receiver=settings.hostname,
                             max_void_lookups=settings.spf.max_void_lookups,
                             timeout=settings.spf.timeout)
    outcome = asyncio.run(evaluator.check_mail_from(ip, mail_from, helo))
    click.echo(str(outcome.result))
    click.echo(outcome.explanation or outcome.reason)
    if outcome.explanation:
        click.echo(outcome.reason)


# dkim


@click.group()
def dkim() -> None:
    """DKIM (RFC 6376) verification."""


@dkim.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@dns_options
def dkim_verify(path: str, nameservers: tuple[str, ...], zone: str | None) -> None:
    """Verify every DKIM signature; prints the best result word, then one line each."""
    from mailward.auth.dkim import DkimVerifier

    settings = _context_settings()
    verifier = DkimVerifier(make_resolver(settings, nameservers, zone),
                            min_key_bits=settings.dkim.min_key_bits,
                            accept_sha1=settings.dkim.accept_sha1,
                            max_signatures=settings.dkim.max_signatures)
    results = asyncio.run(verifier.verify(_read(path)))
    words = [r.result for r in results]
    click.echo("pass" if "pass" in words else (words[0] if words else "none"))
    for result in results:
        click.echo(f"{result.result} d={result.domain} s={result.selector} "
                   f"a={result.algorithm}: {result.reason}")


# arc


@click.group()
def arc() -> None:
    """ARC (RFC 8617) chain validation."""


@arc.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@dns_options
def arc_verify(path: str, nameservers: tuple[str, ...], zone: str | None) -> None:
    """Validate the ARC chain; prints pass, fail or none, then the sets."""
    from mailward.auth.arc import ArcVerifier

    settings = _context_settings()
    verifier = ArcVerifier(make_resolver(settings, nameservers, zone),
                           min_key_bits=settings.dkim.min_key_bits)
    result = asyncio.run(verifier.verify(_read(path)))
    click.echo(result.cv)
    click.echo(result.reason)
    for arc_set in result.sets:
        click.echo(f"i={arc_set.instance} sealer={arc_set.seal_domain} cv={arc_set.cv}: "
                   f"{arc_set.aar[:200]}")


# dmarc


@click.group()
def dmarc() -> None:
    """DMARC (RFC 7489) evaluation and aggregate reports."""


@dmarc.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--ip", default="", help="Client IP address (SPF is skipped without it).")
@click.option("--mail-from", "mail_from", default="", help="MAIL FROM address.")
@click.option("--helo", default="", help="HELO/EHLO name.")
@dns_options
def dmarc_check(path: str, ip: str, mail_from: str, helo: str,
                nameservers: tuple[str, ...], zone: str | None) -> None:
    """Evaluate SPF, DKIM, ARC and DMARC for a message; prints the DMARC result first."""
    settings = _context_settings()
    resolver = make_resolver(settings, nameservers, zone)
    outcome, lines = asyncio.run(_dmarc_check(settings, resolver, _read(path), ip,
                                              mail_from, helo))
    click.echo(str(outcome.result))
    click.echo(f"{outcome.from_domain or '(no From domain)'}: {outcome.reason}")
    for line in lines:
        click.echo(line)


async def _dmarc_check(settings: Settings, resolver: Resolver, raw: bytes, ip: str,
                       mail_from: str, helo: str):
    """_dmarc_check - the checks of the gateway, in order, for one file."""
    from mailward.auth.arc import ArcVerifier, trusted_pass
    from mailward.auth.dkim import DkimVerifier
    from mailward.auth.dmarc import (AuthInputs, DmarcEvaluator, PolicyFinder,
                                     from_header_domains)
    from mailward.auth.spf import SpfEvaluator
    from mailward.message import Message

    message = Message(raw)
    lines = []
    spf_domain, spf_result = "", "none"
    if ip:
        spf_outcome = await SpfEvaluator(resolver, receiver=settings.hostname).check_mail_from(
            ip, mail_from, helo)
        spf_domain, spf_result = spf_outcome.domain, str(spf_outcome.result)
        lines.append(f"spf={spf_result} {spf_domain}: {spf_outcome.reason}")
    signatures = await DkimVerifier(resolver, min_key_bits=settings.dkim.min_key_bits,
                                    accept_sha1=settings.dkim.accept_sha1).verify(message.raw)
    for s in signatures:
        lines.append(f"dkim={s.result} d={s.domain} s={s.selector}: {s.reason}")
    chain = await ArcVerifier(resolver).verify(message.raw)
    lines.append(f"arc={chain.cv}: {chain.reason}")
    finder = PolicyFinder(resolver, settings.dmarc.org_domain, settings.dmarc.psl_file)
    evaluator = DmarcEvaluator(finder)
    inputs = AuthInputs(spf_domain, spf_result,
                        tuple((s.domain, s.selector, s.result) for s in signatures))
    if message.from_domain is None:
        from mailward.auth.dmarc import DmarcOutcome, DmarcResult

        domains = from_header_domains(message)
        policy, owner = await evaluator.strictest(domains)
        outcome = DmarcOutcome(DmarcResult.PERMERROR, ",".join(domains),
                               f"{message.count_header('from')} From header(s); strictest "
                               f"policy p={policy}" + (f" of {owner}" if owner else ""))
        return outcome, lines
    outcome = await evaluator.evaluate(message.from_domain, inputs)
    if outcome.result == "fail":
        trusted = trusted_pass(chain, settings.arc.trusted_sealers, message.from_domain)
        if trusted:
            lines.append(f"override: trusted ARC sealer {trusted.seal_domain} recorded "
                         "dmarc=pass")
    return outcome, lines


@dmarc.command("report")
@click.option("--since", default="1d", show_default=True,
              help="Start of the period: a duration back from --until (1d) or an ISO date.")
@click.option("--until", "until", default=None, help="End of the period (default: now).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Directory for the .xml.gz files.")
@click.option("--send", is_flag=True, help="Mail each report to its rua mailto: addresses.")
def dmarc_report(since: str, until: str | None, out: str, send: bool) -> None:
    """Write RFC 7489 aggregate reports, one per policy domain, for a period."""
    settings = _context_settings()
    end = _when(until) if until else datetime.now(UTC)
    try:
        begin = end - timedelta(seconds=parse_duration(since))
    except ValueError:
        begin = _when(since)
    written = asyncio.run(_reports(settings, begin, end, Path(out), send))
    if not written:
        click.echo("no DMARC evaluations in the period")
    for line in written:
        click.echo(line)


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration (1d) nor an ISO date") \
            from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _reports(settings: Settings, begin: datetime, end: datetime, out: Path,
                   send: bool) -> list[str]:
    """_reports - build, write and (optionally) send every report of the period."""
    from mailward.auth.dmarc import PolicyFinder
    from mailward.auth.reports import build_report, collect
    from mailward.auth.results import authserv_id
    from mailward.store import Store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.database_url)
    receiver = authserv_id(settings)
    email = settings.dmarc.report_email or f"dmarc-reports@{settings.hostname}"
    org = settings.dmarc.report_org or receiver
    lines = []
    try:
        await store.migrate()
        grouped = await collect(store, begin, end)
        out.mkdir(parents=True, exist_ok=True)
        finder = PolicyFinder(Resolver(settings.dns), "psl", settings.dmarc.psl_file)
        for domain, rows in sorted(grouped.items()):
            report = build_report(domain, rows, begin, end, org, email, receiver)
            (out / report.filename).write_bytes(report.gzipped)
            lines.append(f"{out / report.filename}: {report.messages} messages in "
                         f"{report.rows} rows")
            if send:
                lines.extend(await _send(settings, finder, report, email, receiver))
    finally:
        await store.close()
    return lines


async def _send(settings: Settings, finder, report, sender: str, receiver: str) -> list[str]:
    """_send - mail one report to its authorised rua addresses through the relay."""
    from mailward.auth.reports import authorised, mailto_addresses, report_mail
    from mailward.smtp.relay import RelayTarget, relay

    if not settings.delivery.relay:
        return [f"{report.policy_domain}: not sent: delivery.relay is not configured"]
    recipients = []
    for address in mailto_addresses(report.rua):
        if await authorised(finder.resolver, report.policy_domain, address,
                            finder.org_domain_psl):
            recipients.append(address)
    if not recipients:
        return [f"{report.policy_domain}: no authorised rua mailto: address"]
    data = report_mail(report, sender, recipients, receiver)
    target = RelayTarget.parse(settings.delivery.relay)
    results = await relay(target, sender, recipients, data, helo=settings.hostname,
                          timeout=settings.delivery.relay_timeout)
    return [f"{report.policy_domain}: sent to {address}: {result.code}"
            for address, result in results.items()]
