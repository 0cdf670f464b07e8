"""The ``mailward`` command and its sub-commands.

Every sub-command reads the same configuration (``--config FILE``, or the
embedded defaults) and reports a configuration error by naming the key,
with exit status 2.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from mailward.config import (ConfigError, Settings, defaults_toml, load_settings,
                             parse_duration, parse_hostport, prepare_data_dir,
                             shown_duration)
from mailward.terminal import markup_cell, tsv_line
from mailward.verdict import Category

# Messages are not wrapped at the terminal's width: a path or a value in an
# error stays on one line, whole, for people and for scripts that read it.
console = Console(stderr=True, soft_wrap=True)


# Commands that make the data directory, or work without the site's store.
# Every other command refuses a relative data directory that does not exist
# where it runs: it would make a new, empty store that the gateway never sees.
NO_STORE_NEEDED = ("serve", "config", "scan", "train", "db upgrade", "spf", "dkim",
                   "arc", "dmarc check", "url extract")


def _command_path(current: click.Context | None) -> str:
    """_command_path - the sub-command's names below ``mailward``, e.g. "intel add"."""
    names = []
    while current is not None and current.parent is not None:
        names.append(current.info_name or "")
        current = current.parent
    return " ".join(reversed(names))


class Context:
    def __init__(self, config: str | None) -> None:
        self.config_path = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_path)
            except ConfigError as error:
                console.print(f"[red]{escape(str(error))}[/red]")
                sys.exit(2)
            path = _command_path(click.get_current_context(silent=True))
            if path and not any(path == name or path.startswith(name + " ")
                                for name in NO_STORE_NEEDED):
                self.need_store()
        return self._settings

    def need_store(self) -> None:
        """need_store - exit 2 if the data directory would be made anew here."""
        assert self._settings is not None
        configured = Path(self._settings.storage.data_dir).expanduser()
        where = self._settings.data_dir
        if configured.is_absolute() or where.is_dir():
            return
        source = (f"storage.data_dir in {self.config_path}" if self.config_path
                  else "the default storage.data_dir (no --config given)")
        console.print(
            f"[red]no data directory at {where}: {source} is {configured}, relative to "
            f"the current directory. Run this from the directory `mailward serve` runs "
            f"in, or give the gateway's configuration with --config FILE (or "
            f"MAILWARD_CONFIG); `mailward db upgrade` makes a new store here.[/red]")
        sys.exit(2)


pass_context = click.make_pass_decorator(Context)


def run(coroutine: Awaitable[Any]) -> Any:
    try:
        return asyncio.run(coroutine)
    except ConfigError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        sys.exit(2)


async def with_gateway(settings: Settings, body: Callable[[Any], Awaitable[Any]]) -> Any:
    """with_gateway - start a gateway (no listeners), run body, close it."""
    from mailward.gateway import Gateway

    gateway = Gateway(settings)
    try:
        await gateway.start()
        return await body(gateway)
    finally:
        await gateway.close()


@click.group()
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False),
              envvar="MAILWARD_CONFIG", help="TOML configuration file (default: embedded).")
@click.version_option(package_name="mailward")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """mailward: a self-hosted email security gateway."""
    ctx.obj = Context(config)


# serve


@main.command()
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False), default=None,
              help="TOML configuration file (default: embedded).")
@pass_context
def serve(context: Context, config: str | None) -> None:
    """Run the gateway: SMTP, the web service and the delivery queue."""
    if config:
        context.config_path = config
    settings = context.settings
    from mailward.log import setup_logging

    setup_logging(settings.log.level, settings.log.format)
    run(_serve(settings))


async def _serve(settings: Settings) -> None:
    import importlib
    import logging

    import uvicorn

    from mailward.gateway import Gateway
    from mailward.smtp.server import start_smtp
    from mailward.web.app import create_app

    log = logging.getLogger("mailward")
    gateway = Gateway(settings)
    await gateway.start()
    smtp_host, smtp_port = parse_hostport(settings.smtp.listen, 25)
    web_host, web_port = parse_hostport(settings.web.listen, 8025)
    try:
        smtp = await start_smtp(gateway, smtp_host, smtp_port)
    except OSError as error:
        raise ConfigError(f"smtp.listen: cannot listen on {settings.smtp.listen}: {error}") from None
    # A rewritten link carries its original URL, so request lines can be long.
    # Forwarded headers are believed only from the configured proxies: uvicorn's
    # own default would believe them from 127.0.0.1, so any local process could
    # pick the client address that login throttling and the audit log use.
    proxies = list(settings.web.trusted_proxies)
    web = uvicorn.Server(uvicorn.Config(create_app(gateway), host=web_host, port=web_port,
                                        log_config=None, access_log=False, lifespan="off",
                                        proxy_headers=bool(proxies),
                                        forwarded_allow_ips=proxies,
                                        h11_max_incomplete_event_size=256 * 1024))
    web.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(gateway.queue.run(), name="delivery"),
             asyncio.create_task(gateway.services.intel_cache.watch(), name="intel"),
             asyncio.create_task(web.serve(), name="web")]
    tasks += [asyncio.create_task(holder.run(), name=name)
              for name, holder in gateway.holders.items()]
    for path in BACKGROUND:
        module, _, attribute = path.partition(":")
        job = getattr(importlib.import_module(module), attribute)
        tasks.append(asyncio.create_task(job(gateway), name=path))
    log.info("mailward ready: SMTP %s, web %s, data %s", settings.smtp.listen,
             settings.web.listen, settings.data_dir)
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not waiter and task.exception():
            log.error("%s stopped: %s", task.get_name(), task.exception())
    log.info("stopping")
    smtp.close()
    web.should_exit = True
    await smtp.wait_closed()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await gateway.close()


# config


@main.group()
def config() -> None:
    """Show and check the configuration."""


@config.command("defaults")
def config_defaults() -> None:
    """Print every key with its default and a one-line comment."""
    click.echo(defaults_toml())


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False), required=False)
@pass_context
def config_check(context: Context, path: str | None) -> None:
    """Check a configuration file (and the scores and model files it names)."""
    from mailward.registry import load_site_scores

    if path:
        context.config_path = path
    settings = context.settings
    try:
        scores = load_site_scores(settings)
        prepare_data_dir(settings, create=False)
        for key in ("tls_cert", "tls_key"):
            value = getattr(settings.smtp, key)
            if value and not Path(value).is_file():
                raise ConfigError(f"smtp.{key}: {value} is not a readable file")
        for key in ("model", "language_model"):
            value = getattr(settings.spam, key)
            if value:
                _check_model(f"spam.{key}", Path(value))
        if settings.spam.embedding_model:
            _check_embedding_model(Path(settings.spam.embedding_model))
    except ConfigError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        sys.exit(2)
    click.echo(f"configuration ok; {len(scores.symbols)} scored symbols from {scores.source}")


def _check_model(key: str, path: Path) -> None:
    """_check_model - ConfigError naming key unless path holds a model that loads."""
    from mailward.content.model import LinearModel

    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist")
    try:
        LinearModel.load(path)
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None


def _check_embedding_model(path: Path) -> None:
    """_check_embedding_model - ConfigError unless the extra is there and path loads."""
    from mailward.content.embedding import EXTRA, available, load_embedding_model

    if not available():
        raise ConfigError(f"spam.embedding_model: reading {path} needs the embeddings "
                          f"extra ({EXTRA})")
    try:
        load_embedding_model(path, str(path))
    except ValueError as error:
        raise ConfigError(str(error)) from None


# scan


def _scan_files(paths: tuple[str, ...]) -> list[Path]:
    from mailward.content.train import message_files

    return message_files(Path(p) for p in paths)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@pass_context
def scan(context: Context, paths: tuple[str, ...], as_json: bool) -> None:
    """Judge message files offline with the same pipeline (nothing is delivered)."""
    settings = context.settings
    from mailward.log import setup_logging

    setup_logging("warning", settings.log.format)
    files = _scan_files(paths)
    if not files:
        console.print("[red]no message files found[/red]")
        sys.exit(1)
    counts = run(with_gateway(settings, lambda gateway: _scan(gateway, files, as_json)))
    summary = ", ".join(f"{action} {counts.get(action, 0)}" for action in
                        ("deliver", "tag", "quarantine", "reject", "error"))
    skipped = counts.get(NOT_MAIL, 0)
    console.print(f"{len(files) - skipped} messages: {summary}"
                  + (f"; {skipped} files skipped, not mail" if skipped else ""))
    if skipped == len(files):
        sys.exit(1)


def scan_envelope(raw: bytes) -> Any:
    """scan_envelope - an envelope for a message read from a file."""
    from email.utils import getaddresses, parseaddr

    from mailward.envelope import Envelope, new_queue_id
    from mailward.mime import parse_header_block

    end = raw.find(b"\n\n")
    end = raw.find(b"\r\n\r\n") if end < 0 else end
    head = parse_header_block(raw[:end if 0 < end < 65536 else 65536])
    mail_from = parseaddr(str(head.get("return-path", "")))[1]
    rcpts = [a for _, a in getaddresses([str(v) for v in head.get_all("to", [])]) if "@" in a]
    return Envelope(queue_id=new_queue_id(), mail_from=mail_from, rcpt_to=rcpts[:100])


# What scan reports for a file that `mailward learn` would refuse as no message.
NOT_MAIL = "not mail"


async def _scan(gateway: Any, files: list[Path], as_json: bool) -> Counter:
    from mailward.content.commands import not_mail
    from mailward.pipeline import PipelineError

    counts: Counter = Counter()
    table = Table("file", "action", "score", "top symbols")
    table.columns[0].overflow = "fold"  # a path cut short names no file
    with Progress(console=console, transient=True, disable=as_json or len(files) < 2) as bar:
        job = bar.add_task("scanning", total=len(files))
        for path in files:
            raw = path.read_bytes()[:gateway.settings.smtp.max_message_size]
            problem = not_mail(raw)
            # Judged as mail, a zip or a PDF would get a meaningless verdict.
            if problem:
                counts[NOT_MAIL] += 1
                if as_json:
                    click.echo(json.dumps({"file": str(path), "action": NOT_MAIL,
                                           "reason": problem}))
                elif len(table.rows) < 200:
                    table.add_row(markup_cell(path), NOT_MAIL, "", problem)
                bar.advance(job)
                continue
            try:
                _, verdict, _ = await gateway.judge(scan_envelope(raw), raw)
            except Exception as error:  # one file's failure never hides the others'
                if not isinstance(error, PipelineError):
                    logging.getLogger("mailward.cli").exception("scan of %s failed", path)
                    error = PipelineError(f"{type(error).__name__}: {error}")
                counts["error"] += 1
                if as_json:
                    click.echo(json.dumps({"file": str(path), "action": "error",
                                           "error": str(error)}))
                elif len(table.rows) < 200:
                    table.add_row(markup_cell(path), "error", "", markup_cell(error, 200))
                bar.advance(job)
                continue
            counts[str(verdict.action)] += 1
            if as_json:
                click.echo(json.dumps({"file": str(path), "action": str(verdict.action),
                                       "category": (str(verdict.category)
                                                    if verdict.category else None),
                                       "reason": verdict.reason,
                                       "score": round(verdict.score, 3),
                                       "categories": {k: round(v, 3) for k, v in
                                                      verdict.categories.items()},
                                       "findings": [f.as_dict() for f in verdict.findings]}))
            elif len(table.rows) < 200:
                table.add_row(markup_cell(path), str(verdict.action), f"{verdict.score:.2f}",
                              " ".join(verdict.top_symbols(4)))
            bar.advance(job)
    if not as_json:
        Console().print(table)
        if len(files) > 200:
            console.print(f"(table shows the first 200 of {len(files)})")
    return counts


# train

# Fewest messages of each kind `mailward train` fits a model on. Below it the
# held-out part is too small to measure (the quality table would be missing)
# and a model learns a handful of messages' words rather than a kind of mail.
MIN_MESSAGES = 20


@main.command()
@click.option("--ham", "ham", multiple=True, required=True, type=click.Path(exists=True),
              help="File or folder of legitimate mail (repeatable).")
@click.option("--spam", "spam", multiple=True, type=click.Path(exists=True),
              help="File or folder of spam (repeatable); trains the spam model.")
@click.option("--phishing", "phishing", multiple=True, type=click.Path(exists=True),
              help="File or folder of phishing (repeatable); trains the language model "
                   "(and the embedding model, with the embeddings extra) and counts "
                   "as spam for the spam model.")
@click.option("--feedback/--no-feedback", default=True, show_default=True,
              help="Also read the mail people judged (feedback/ham, feedback/spam).")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the spam model (default: the data directory).")
@click.option("--language-out", "language_out", type=click.Path(dir_okay=False),
              default=None, help="Where to write the language model (default: the data "
                                 "directory).")
@click.option("--holdout", default=0.2, show_default=True, type=click.FloatRange(0, 0.9),
              help="Share held out (never fitted on) to measure quality and to compare "
                   "with the model it replaces.")
@click.option("--min-messages", "min_messages", default=MIN_MESSAGES, show_default=True,
              type=click.IntRange(1), help="Fewest messages of each class trained on "
                                           "(lower it only for experiments).")
@click.option("--force", is_flag=True,
              help="Replace an existing model even when the new one is worse on the "
                   "held-out part, or could not be compared with it.")
@pass_context
def train(context: Context, ham: tuple[str, ...], spam: tuple[str, ...],
          phishing: tuple[str, ...], feedback: bool, out: str | None,
          language_out: str | None, holdout: float, min_messages: int,
          force: bool) -> None:
    """Train the spam model (and, with --phishing, the language model, and the
    embedding model when the embeddings extra is installed).

    An existing model is replaced only when the new one is not measurably
    worse on the same held-out messages (or with --force); otherwise the new
    one is written beside it as NAME.candidate.npz.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, \
        TimeElapsedColumn, TimeRemainingColumn

    from mailward.content import embedding
    from mailward.content.language import language_model_path
    from mailward.content.spam import model_path
    from mailward.content.train import comparison_files, message_files, train_models
    from mailward.services import Services

    if not (spam or phishing):
        console.print("[red]need spam (--spam) or phishing (--phishing) messages to train "
                      "against the ham (--ham)[/red]")
        sys.exit(1)
    settings = context.settings
    embed = bool(phishing) and embedding.available()
    if out is None or (phishing and language_out is None) or embed:
        context.need_store()  # the models would go to a data directory made here
    services = Services.create(settings)
    targets = {"spam": Path(out) if out else model_path(services),
               "language": Path(language_out) if language_out
               else language_model_path(services),
               "embedding": embedding.embedding_model_path(services)}
    ham_paths, spam_paths = [Path(p) for p in ham], [Path(p) for p in spam]
    judged = settings.data_dir / "feedback"
    if feedback:
        ham_paths += [judged / "ham"] if (judged / "ham").is_dir() else []
        spam_paths += [judged / "spam"] if spam and (judged / "spam").is_dir() else []
    phishing_paths = [Path(p) for p in phishing]
    ham_files, spam_files = message_files(ham_paths), message_files(spam_paths)
    phishing_files = message_files(phishing_paths)
    for option, given, files in (("--ham", ham, ham_files), ("--spam", spam, spam_files),
                                 ("--phishing", phishing, phishing_files)):
        if given and len(files) < min_messages:
            what = f"only {len(files)}" if files else "no"
            console.print(f"[red]{option} {escape(' '.join(given))}: {what} message files; "
                          f"training needs at least {min_messages} of each kind "
                          f"(--min-messages)[/red]")
            sys.exit(1)
    live, unreadable = _live_models(targets, bool(spam), bool(phishing), embed)
    linear = {kind: model for kind, model in live.items() if kind != "embedding"}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        total = len(ham_files) + len(spam_files) + len(phishing_files)
        if holdout > 0:
            total += len(comparison_files([m.meta for m in linear.values()],
                                          ham_files + spam_files + phishing_files))
        job = bar.add_task("reading messages", total=total)
        results = train_models(ham_files, spam_files, phishing_files, holdout=holdout,
                               sources=", ".join(ham + spam + phishing),
                               progress=lambda n: bar.advance(job, n),
                               step=lambda what: bar.update(job, description=what),
                               settings=settings,
                               origins={"ham": ham_paths, "spam": spam_paths,
                                        "phishing": phishing_paths},
                               live=linear, not_compared=[judged])
        if embed:
            current = live.get("embedding")
            total = len(ham_files) + len(phishing_files)
            if current is not None and holdout > 0:
                total += len(comparison_files([current.meta], ham_files + phishing_files))
            job = bar.add_task("embedding", total=total)
            results.append(embedding.train_embedding(
                ham_files, phishing_files, holdout=holdout,
                sources=", ".join(ham + phishing),
                progress=lambda n: bar.advance(job, n),
                step=lambda what: bar.update(job, description=what),
                origins={"ham": ham_paths, "phishing": phishing_paths}, live=current,
                not_compared=[judged]))
    if phishing and not embed:
        click.echo("embedding model skipped: the embeddings extra is not installed "
                   f"({embedding.EXTRA})")
    kinds = [(len(ham_files), "ham"), (len(spam_files), "spam"),
             (len(phishing_files), "phishing")]
    few = [f"{count} {name}" for count, name in kinds if 0 < count < FEW_MESSAGES]
    if few:
        console.print(f"[yellow]warning: trained on {' and '.join(few)}: a model learns the "
                      "words of the mail it is trained on, and so few messages say little "
                      "of the mail this site will receive, which figures held out of the "
                      f"same folders cannot show. Train on {FEW_MESSAGES:,} or more of each "
                      "kind, from this site's own mail.[/yellow]")
    refused = 0
    for result in results:
        target = targets[result.kind]
        _print_quality(result, holdout)
        refusal = None
        if target.exists() and not force:
            refusal = _refusal(result, target, live.get(result.kind),
                               unreadable.get(result.kind), holdout)
        candidate = target.with_name(target.stem + ".candidate" + target.suffix)
        if refusal:
            result.model.save(candidate)
            console.print(f"[red]{result.kind} model not replaced: {escape(refusal)}. "
                          f"The live model at {escape(str(target))} is kept; the new one "
                          f"is written to {escape(str(candidate))}. To replace the live "
                          f"model with it anyway, run again with --force.[/red]")
            refused += 1
            continue
        previous = target.with_name(target.stem + ".previous" + target.suffix)
        if target.exists():
            # The model replaced stays one step back, so a bad --force can be undone;
            # it is copied, so that a running gateway always finds a model at target.
            _copy_atomically(target, previous)
            click.echo(f"{result.kind} model at {target} replaced"
                       f"{' (--force)' if force else ''}; the one it replaces is kept as "
                       f"{previous} (move it back to undo)")
        result.model.save(target)
        # A candidate left by an earlier refusal is not this model: never promote it by mistake.
        candidate.unlink(missing_ok=True)
        click.echo(f"{result.kind} model written to {target}")
    if refused:
        sys.exit(1)


# Fewer messages of a kind than this, and train warns that the model knows little.
FEW_MESSAGES = 1000


def _copy_atomically(source: Path, target: Path) -> None:
    """_copy_atomically - copy a file; a reader of target sees the old or the new one."""
    import shutil

    temporary = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def _live_models(targets: dict[str, Path], spam: bool, phishing: bool, embed: bool
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """_live_models - the models training would replace, and why others cannot be read."""
    from mailward.content.embedding import EmbeddingModel
    from mailward.content.model import LinearModel

    live: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    for kind, wanted, kind_of in (("spam", spam, LinearModel),
                                  ("language", phishing, LinearModel),
                                  ("embedding", embed, EmbeddingModel)):
        if wanted and targets[kind].exists():
            try:
                live[kind] = kind_of.load(targets[kind])
            except ValueError as error:
                unreadable[kind] = str(error)
    return live, unreadable


def _print_quality(result: Any, holdout: float) -> None:
    """_print_quality - the held-out table; beside the live model's when compared."""
    comparison = getattr(result, "comparison", None)
    if comparison is not None and comparison.new and comparison.live:
        table = Table(f"held-out part ({comparison.share:.0%} by name)",
                      f"new {result.kind} model", f"live {result.kind} model")
        for (label, new), (_, old) in zip(comparison.new.rows(), comparison.live.rows()):
            table.add_row(label, new, old)
        Console().print(table)
        if comparison.relabelled:
            console.print(f"[yellow]warning: {comparison.relabelled} of the held-out messages "
                          f"given were given as another kind when the live model was trained; "
                          f"both models were scored on the kind it was trained with[/yellow]")
        if comparison.live_saw_them:
            console.print("[yellow]warning: the live model records no held-out part: it "
                          "was fitted on these messages too, and its figures flatter "
                          "it[/yellow]")
    elif result.quality:
        table = Table("held-out quality", result.kind + " model")
        for label, value in result.quality.rows():
            table.add_row(label, value)
        Console().print(table)
    if not result.quality:
        why = ("nothing was held out (--holdout 0)" if holdout <= 0 else
               f"the held-out share (--holdout {holdout:g}) holds no message of one kind")
        console.print(f"[yellow]warning: the {result.kind} model's quality was not "
                      f"measured: {why}[/yellow]")


def _refusal(result: Any, target: Path, live: Any, unreadable: str | None,
             holdout: float) -> str | None:
    """_refusal - why the model at target may not be replaced by result, or None."""
    if unreadable:
        return (f"the file it would replace cannot be read as a model ({unreadable}), so "
                f"the two could not be compared")
    comparison = result.comparison
    if holdout <= 0:
        return ("no comparison with the live model was possible: --holdout 0 holds no "
                "message out of training to score both on")
    if comparison is None or comparison.new is None or comparison.live is None:
        return ("no comparison with the live model was possible: the held-out part "
                "holds no message of one kind")
    reasons = comparison.worse()
    if not reasons:
        return None
    scored = comparison.new
    return (f"on the same {scored.negative} {scored.negative_name} and {scored.positive} "
            f"{scored.positive_name} held out (never fitted on by the new model), it "
            f"{' and '.join(reasons)}")


# intel


@main.group()
def intel() -> None:
    """Manage the threat-intelligence store."""


def _expiry(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.now(UTC) + timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration (7d) nor an ISO date") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@intel.command("add")
@click.option("--type", "kind", required=True,
              type=click.Choice(["url", "domain", "ip", "sha256", "sender", "sender_domain"]))
@click.argument("value")
@click.option("--source", default="local", show_default=True)
@click.option("--category", default=None,
              type=click.Choice(["phish", "malware", "spam", "impostor"]),
              help="What the indicator means (default: malware for sha256, else phish).")
@click.option("--expires", default=None, help="Duration (7d) or ISO date.")
@click.option("--comment", default="")
@click.option("--force", is_flag=True,
              help="Store it even if it matches more than trap.max_share of delivered mail.")
@pass_context
def intel_add(context: Context, kind: str, value: str, source: str, category: str | None,
              expires: str | None, comment: str, force: bool) -> None:
    """Add one indicator; a running gateway sees it within a second and retro-scans it."""
    from mailward.intel.store import IndicatorError, NewIndicator, normalize
    from mailward.store import Store
    from mailward.trap.intake import add_checked
    from mailward.web import audit
    from mailward.web.commands import actor

    item = NewIndicator(kind, value, source,
                        category or ("malware" if kind == "sha256" else "phish"),
                        expires_at=_expiry(expires), comment=comment)

    async def body():
        prepare_data_dir(context.settings)
        store = Store(context.settings.database_url)
        try:
            await store.migrate()
            report = await add_checked(context.settings, store, [item], force, "cli")
            if report.added or report.updated:
                await audit.record(store, actor(), "admin", "intel.add",
                                   f"{kind}:{normalize(kind, value)}", source=source,
                                   force=force)
            return report
        finally:
            await store.close()

    try:
        report = run(body())
    except IndicatorError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        sys.exit(2)
    if report.refused:
        reason = escape(report.refused[0][1])
        console.print(f"[red]refused {kind} {value}: {reason}[/red]")
        sys.exit(3)
    click.echo(f"{'added' if report.added else 'updated'} {kind} {value}")


@intel.command("remove")
@click.option("--type", "kind", required=True,
              type=click.Choice(["url", "domain", "ip", "sha256", "sender", "sender_domain"]))
@click.argument("value")
@click.option("--source", default=None, help="Remove only the one from this source.")
@pass_context
def intel_remove(context: Context, kind: str, value: str, source: str | None) -> None:
    """Remove one indicator (from every source unless --source names one)."""
    from mailward.intel.store import IndicatorError, IntelStore, normalize
    from mailward.web import audit
    from mailward.web.commands import actor

    try:
        value = normalize(kind, value)
    except IndicatorError as error:
        raise click.BadParameter(str(error), param_hint="VALUE") from None

    async def body(store: Any) -> int:
        removed = await IntelStore(store).remove(kind, value, source)
        if removed:
            await audit.record(store, actor(), "admin", "intel.remove",
                               f"{kind}:{value}", source=source, removed=removed)
        return removed

    if not run(_with_store(context.settings, body)):
        console.print(f"[red]no {kind} indicator {escape(value)}"
                      + (f" from {escape(source)}" if source else "") + "[/red]")
        sys.exit(1)
    click.echo(f"removed {kind} {value}")


@intel.command("list")
@click.option("--type", "kind", default=None)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@pass_context
def intel_list(context: Context, kind: str | None, limit: int) -> None:
    """List indicators, newest first."""
    from mailward.intel.store import IntelStore
    from mailward.store import Store

    async def body() -> list:
        prepare_data_dir(context.settings)
        store = Store(context.settings.database_url)
        try:
            await store.migrate()
            return await IntelStore(store).list(kind, limit)
        finally:
            await store.close()

    for item in run(body()):
        expires = item.expires_at.isoformat() if item.expires_at else "never"
        click.echo(tsv_line(item.type, item.value, item.category, item.source,
                            f"expires {expires}"))


# quarantine


def _listing(columns: tuple[str, ...], rows: list[tuple], width: int) -> None:
    """_listing - rows as a table on a terminal, else one tab-separated line each.

    For scripts nothing is cut; on a terminal each cell is cut to width. Text from
    mail is escaped either way (``mailward.terminal``).
    """
    if not sys.stdout.isatty():
        for values in rows:
            click.echo(tsv_line(*values))
        return
    table = Table(*columns)
    table.columns[0].no_wrap = True
    for values in rows:
        table.add_row(*(markup_cell(v, width) for v in values))
    Console().print(table)


@main.group()
def quarantine() -> None:
    """Review quarantined messages."""


async def _with_quarantine(settings: Settings, body: Callable[[Any], Awaitable[Any]]) -> Any:
    from mailward.quarantine import Quarantine

    async def inner(gateway: Any) -> Any:
        return await body(Quarantine(gateway))

    return await with_gateway(settings, inner)


@quarantine.command("list")
@click.option("--category", default=None,
              type=click.Choice([category.value for category in Category]))
@click.option("--recipient", default=None)
@click.option("--sender", default=None)
@click.option("--all", "show_all", is_flag=True, help="Include released and deleted items.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@pass_context
def quarantine_list(context: Context, category: str | None, recipient: str | None,
                    sender: str | None, show_all: bool, limit: int) -> None:
    """List quarantined messages, newest first."""
    from mailward.quarantine import Filters

    filters = Filters(category, recipient, sender, None if show_all else "held")
    items, total = run(_with_quarantine(context.settings, lambda q: q.list(filters, limit)))
    rows = [(item.id, item.created_at.strftime("%Y-%m-%d %H:%M"), item.category, item.sender,
             ", ".join(item.recipients), item.subject, item.status) for item in items]
    # Senders and subjects come from the mail: controls in them are escaped.
    _listing(("id", "received", "category", "sender", "recipients", "subject", "status"),
             rows, 60)
    console.print(f"{len(items)} of {total}")


@quarantine.command("show")
@click.argument("item_id")
@click.option("--raw", is_flag=True, help="Print the original message bytes.")
@pass_context
def quarantine_show(context: Context, item_id: str, raw: bool) -> None:
    """Show one quarantined message with its findings."""
    from mailward.quarantine import QuarantineError, item_dict

    async def body(q: Any) -> tuple[dict, Any]:
        item = await q.get(item_id)
        data = item_dict(item)
        data["verdict"] = await q.verdict(item)
        return data, (q.raw(item) if raw else None)

    try:
        data, original = run(_with_quarantine(context.settings, body))
    except QuarantineError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        sys.exit(1)
    if raw:
        sys.stdout.buffer.write(original)
        return
    click.echo(json.dumps(data, indent=2))


def _quarantine_action(context: Context, item_id: str, action: str) -> None:
    import getpass

    from mailward.quarantine import QuarantineError

    async def body(q: Any) -> Any:
        item = await getattr(q, action)(item_id, by=f"cli:{getpass.getuser()}")
        if action == "release":
            await q.gateway.queue.run_once()
        return item

    try:
        item = run(_with_quarantine(context.settings, body))
    except QuarantineError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        sys.exit(1)
    click.echo(f"{item.id}: {item.status}")


@quarantine.command("release")
@click.argument("item_id")
@pass_context
def quarantine_release(context: Context, item_id: str) -> None:
    """Deliver a quarantined message to its recipients."""
    _quarantine_action(context, item_id, "release")


@quarantine.command("delete")
@click.argument("item_id")
@pass_context
def quarantine_delete(context: Context, item_id: str) -> None:
    """Delete a quarantined message (its record stays for the trace)."""
    _quarantine_action(context, item_id, "delete")


# token


@main.group()
def parked() -> None:
    """Messages that could not be judged (451 sent; the sender retries)."""


@parked.command("list")
@pass_context
def parked_list(context: Context) -> None:
    """List the parked copies, oldest first, with why each was not judged."""
    from mailward.smtp.spool import Spool

    items = Spool(context.settings.data_dir).parked_items()
    rows = [(item.queue_id, item.parked_at.strftime("%Y-%m-%d %H:%M:%S"), str(item.size),
             str(item.envelope.get("mail_from", "")),
             ", ".join(map(str, item.envelope.get("rcpt_to", [])[:5])),
             item.reason.strip().splitlines()[0] if item.reason.strip() else "")
            for item in items]
    _listing(("queue id", "parked", "bytes", "sender", "recipients", "reason"), rows, 80)
    console.print(f"{len(items)} parked in {context.settings.data_dir / 'spool' / 'parked'}")


@parked.command("delete")
@click.argument("queue_ids", nargs=-1)
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=None,
              help="Delete every parked copy older than this many days.")
@pass_context
def parked_delete(context: Context, queue_ids: tuple[str, ...], days: float | None) -> None:
    """Delete parked copies, by queue id or by age."""
    from mailward.smtp.spool import Spool

    if not queue_ids and days is None:
        raise click.UsageError("name queue ids, or give --older-than DAYS")
    spool = Spool(context.settings.data_dir)
    chosen = list(queue_ids)
    if days is not None:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        chosen += [item.queue_id for item in spool.parked_items() if item.parked_at < cutoff]
    missing = []
    deleted = 0
    for queue_id in dict.fromkeys(chosen):
        try:
            found = spool.unpark(queue_id)
        except ValueError:
            found = False
        if found:
            deleted += 1
        else:
            missing.append(queue_id)
    click.echo(f"{deleted} parked copies deleted")
    if missing:
        click.echo(tsv_line("not parked:", *missing), err=True)
        sys.exit(1)


# prune


@main.command()
@click.option("--dry-run", "dry_run", is_flag=True,
              help="Only count what would be removed; remove nothing.")
@pass_context
def prune(context: Context, dry_run: bool) -> None:
    """Remove what is past its [retention] age: archive days, parked copies, quarantine
    items (the running gateway does it every retention.interval)."""
    from mailward.log import setup_logging
    from mailward.retention import Retention

    settings = context.settings
    # Each removal is logged (to stderr); the gateway's start-up is not.
    setup_logging("warning", settings.log.format)
    if not dry_run:
        logging.getLogger("mailward.retention").setLevel(logging.INFO)
    result = run(with_gateway(settings, lambda gateway: Retention(gateway).sweep(dry_run)))
    verb = "would remove" if dry_run else "removed"
    for kind, tally in result.removed.items():
        ages = getattr(settings.retention, kind)
        kept = f"older than {shown_duration(ages)}" if ages else "kept for ever"
        click.echo(tsv_line(kind, f"{verb} {tally.count}", f"{tally.bytes} bytes", kept))
    if result.kept:
        click.echo(tsv_line("kept", f"{result.kept} copies with a delivery still to make"))


@main.group()
def token() -> None:
    """Manage API bearer tokens."""


async def _with_store(settings: Settings, body: Callable[[Any], Awaitable[Any]]) -> Any:
    from mailward.store import Store

    prepare_data_dir(settings)
    store = Store(settings.database_url)
    try:
        await store.migrate()
        return await body(store)
    finally:
        await store.close()


@token.command("create")
@click.argument("name", default="api")
@click.option("--scope", "scopes", multiple=True,
              help="What the token may do (quarantine:read, trace:*, ...); repeatable. "
                   "Default: everything.")
@click.option("--user", "username", default=None,
              help="Act as this console user (their role and addresses).")
@pass_context
def token_create(context: Context, name: str, scopes: tuple[str, ...],
                 username: str | None) -> None:
    """Create a token and print it (it is shown only this once)."""
    from mailward.web import audit
    from mailward.web.accounts import Accounts
    from mailward.web.commands import actor
    from mailward.web.tokens import check_scopes, create_token

    try:
        check_scopes(list(scopes))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--scope") from None

    async def body(store: Any) -> str:
        user_id = None
        if username:
            user = await Accounts(store).by_name(username)
            if user is None:
                raise click.BadParameter(f"no user {username!r}", param_hint="--user")
            user_id = user.id
        value = await create_token(store, name, list(scopes) or None, user_id)
        await audit.record(store, actor(), "admin", "token.create", name,
                           scopes=list(scopes) or ["*"], user_id=user_id)
        return value

    try:
        click.echo(run(_with_store(context.settings, body)))
    except ValueError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        sys.exit(2)


@token.command("list")
@pass_context
def token_list(context: Context) -> None:
    """List tokens (never their values)."""
    from mailward.web.tokens import list_tokens

    for entry in run(_with_store(context.settings, list_tokens)):
        state = f"revoked {entry.revoked_at:%Y-%m-%d}" if entry.revoked_at else "active"
        click.echo(tsv_line(entry.id, entry.name, f"{entry.created_at:%Y-%m-%d %H:%M}",
                            state))


@token.command("revoke")
@click.argument("token_id", type=int)
@pass_context
def token_revoke(context: Context, token_id: int) -> None:
    """Revoke a token by its id (see `mailward token list`)."""
    from mailward.web import audit
    from mailward.web.commands import actor
    from mailward.web.tokens import revoke_token

    async def body(store: Any) -> bool:
        revoked = await revoke_token(store, token_id)
        if revoked:
            await audit.record(store, actor(), "admin", "token.revoke", str(token_id))
        return revoked

    if not run(_with_store(context.settings, body)):
        console.print(f"[red]no active token {token_id}[/red]")
        sys.exit(1)
    click.echo(f"token {token_id} revoked")


# db


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@pass_context
def db_upgrade(context: Context) -> None:
    """Bring the database schema to the newest revision."""
    run(_with_store(context.settings, lambda store: asyncio.sleep(0)))
    click.echo(f"database at the newest revision ({context.settings.database_url.split('@')[-1]})")


# Sub-commands that live beside the code they drive, as module:attribute.
SUBCOMMANDS: list[str] = [
    "mailward.urls.commands:url",
    "mailward.auth.commands:spf",
    "mailward.auth.commands:dkim",
    "mailward.auth.commands:arc",
    "mailward.auth.commands:dmarc",
    "mailward.web.commands:user",
    "mailward.content.commands:vip",
    "mailward.trap.commands:trap",
    "mailward.trap.commands:incident",
    "mailward.trap.commands:retract",
    "mailward.trap.commands:restore",
    "mailward.reports.commands:reports",
    "mailward.content.commands:learn",
    "mailward.content.commands:unlearn",
]

# Jobs `mailward serve` runs beside SMTP and the web service: module:function(gateway).
BACKGROUND: list[str] = [
    "mailward.web.digest:run",
    "mailward.trap.service:run",
    "mailward.reports.service:run",
    "mailward.retention:run",
]


def _register() -> None:
    import importlib

    for path in SUBCOMMANDS:
        module, _, attribute = path.partition(":")
        main.add_command(getattr(importlib.import_module(module), attribute))


_register()
