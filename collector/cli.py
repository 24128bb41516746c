"""Command line: parse the arguments and wire the exporter; check a config; report; backfill;
migrate.

Only the standard library is imported at the top, and `main` installs the signal handlers
first: the exporter's own modules (pydantic, prometheus_client, APScheduler) load after,
so a SIGHUP during start-up is a reload when ready, never the end of the process.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from collector.lifecycle import ProcessSignals

if TYPE_CHECKING:
    from collector.runtime import Exporter, LoadedConfig
    from collector.webconfig import WebConfig

log = logging.getLogger("collector")
DEFAULT_LISTEN = "127.0.0.1:9878"


def _config_flag(parser: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    # A subcommand's copy has no default of its own, so `--config.file x report` keeps x
    # (argparse lets a subparser's default overwrite what was given before the command).
    parser.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        default=argparse.SUPPRESS if subcommand else Path("contact-cost.toml"),
        help="TOML configuration file (default: contact-cost.toml)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default=argparse.SUPPRESS if subcommand else "info",
        choices=["debug", "info", "warn", "error"],
        help="only log messages at or above this level (default: info)",
    )


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    from collector import __version__
    from collector.model import PERIODS  # after main's signal handlers, as every import here

    parser = argparse.ArgumentParser(
        prog="contact-cost-exporter",
        description="Prometheus exporter for contact-center cost per contact.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _config_flag(parser)
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration, list every problem or print a summary, and exit",
    )
    parser.add_argument(
        "--config.check.strict",
        dest="config_check_strict",
        action="store_true",
        help="with --config.check: exit 1 on warnings too (missing file, unmapped scope, ...)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=DEFAULT_LISTEN,
        help="address to listen on; loopback by default because the figures reveal "
        "salaries and prices (default: %(default)s)",
    )
    parser.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        help="path under which to expose metrics (default: %(default)s)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        default=None,
        help="exporter-toolkit web config (YAML) enabling TLS and/or basic auth; re-read on "
        "reload (default: plain HTTP, no auth)",
    )
    parser.add_argument(
        "--web.max-connections-per-client",
        dest="max_connections_per_client",
        type=_positive_int,
        default=8,
        help="connections one client address (IPv6: its /64) may hold at once, of 64; more "
        "are refused with 503 (default: %(default)s)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="enable POST /-/reload",
    )
    sub = parser.add_subparsers(dest="command", metavar="{report}")
    report = sub.add_parser(
        "report",
        help="ingest what is new and print the KPIs as they stood at a moment",
        description="Ingest what is new from every source, then print the KPIs as they "
        "stood at --at (default: now).",
    )
    _config_flag(report, subcommand=True)
    report.add_argument(
        "--at", type=datetime.fromisoformat, default=None, help="ISO timestamp (default: now)"
    )
    report.add_argument(
        "--period",
        default=None,
        choices=PERIODS,
        help="period to report, both windows (default: month, unless --from/--to)",
    )
    report.add_argument(
        "--from", dest="from_", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
        help="instead of --period: first local date of a window (with --to, inclusive)",
    )
    report.add_argument(
        "--to", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
        help="last local date of the window, inclusive; a window past --at ends at --at",
    )
    report.add_argument(
        "--by", default=None, metavar="DIMS",
        help="with --from/--to: any of channel,direction,queue,component, comma-separated "
        "(default: channel,direction,queue)",
    )
    report.add_argument(
        "--format", default="table", choices=["table", "json", "csv"],
        help="table or json; csv with --from/--to only (default: %(default)s)",
    )
    backfill = sub.add_parser(
        "backfill",
        help="write the hourly history of the gauges as OpenMetrics and TSDB blocks",
        description="Ingest what is new, replay the gauges hour by hour from --start to --end "
        "(local dates, inclusive) into DIR/backfill.om, then run promtool tsdb "
        "create-blocks-from openmetrics into DIR/blocks (or print that command).",
    )
    _config_flag(backfill, subcommand=True)
    backfill.add_argument("--start", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    backfill.add_argument("--end", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    backfill.add_argument("--output", type=Path, required=True, help="output directory")
    whatif = sub.add_parser(
        "whatif",
        help="what a lever (deflection, FCR, AHT, automation, a per-minute rate) would do",
        description="Ingest what is new, then show one period window as it is and with the "
        "levers pulled, side by side (collector.whatif).",
    )
    _config_flag(whatif, subcommand=True)
    whatif.add_argument(
        "--at", type=datetime.fromisoformat, default=None, help="ISO timestamp (default: now)"
    )
    whatif.add_argument("--period", default="month",
                        choices=PERIODS,
                        help="period (default: %(default)s)")
    whatif.add_argument("--window", default="previous", choices=["previous", "current"],
                        help="window (default: %(default)s)")
    for flag, metavar, example in (
        ("deflect", "SHARE", "share of handled contacts to self-service, e.g. 10%%"),
        ("deflected-cost", "AMOUNT", "cost of each deflected contact (component other), "
         "e.g. 0.30"),
        ("fcr", "POINTS", "first contact resolution up by points, e.g. +5pp"),
        ("aht", "CHANGE", "handle time per contact, e.g. -30s or -10%% (--aht -30s works too)"),
        ("automate", "SHARE", "share of handled contacts handled by automation, e.g. 15%%"),
        ("automated-cost", "AMOUNT", "cost of each automated contact (component software), "
         "e.g. 0.40"),
        ("per-minute", "RATE", "every per-minute telephony rate in scope, e.g. 0.004"),
        ("queue", "NAMES", "scope the levers to these queues (comma-separated)"),
        ("channel", "NAMES", "scope the levers to these channels (comma-separated)"),
    ):
        whatif.add_argument(f"--{flag}", dest=f"lever_{flag.replace('-', '_')}",
                            metavar=metavar, default=None, help=example)
    whatif.add_argument("--format", default="table", choices=["table", "json"],
                        help="output (default: %(default)s)")
    migrate = sub.add_parser(
        "migrate",
        help="copy a store into an empty other one (SQLite <-> PostgreSQL) and check the copy",
        description="Copy every table of the store --from (contacts, legs, repeats, queue_log "
        "entries, daily rollups, read positions, meta) into the empty store --to in one "
        "transaction, then compare the two (rows, read positions, rollups, figures) before "
        "saying done; on any difference the copy is taken back and the exit status is 1. "
        "Stop the exporter first. A PostgreSQL password comes from "
        "CONTACT_COST_STORE_PASSWORD, PGPASSWORD or ~/.pgpass, never from the URL.",
    )
    _config_flag(migrate, subcommand=True)
    migrate.add_argument("--from", dest="from_store", required=True, metavar="STORE",
                         help="the store to copy: a SQLite file or postgresql://user@host/db")
    migrate.add_argument("--to", dest="to_store", required=True, metavar="STORE",
                         help="the empty store to copy into: postgresql://user@host:5432/db "
                         "or a SQLite file")
    sub.metavar = "{report,backfill,whatif,migrate}"
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level={"warn": "WARNING"}.get(level, level.upper()),
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s",
        stream=sys.stderr,
    )
    if level != "debug":
        # APScheduler logs every job run at info: two lines per source per interval.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _load_or_exit(parser: argparse.ArgumentParser, path: Path) -> LoadedConfig:
    from collector.config import ConfigError
    from collector.runtime import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        parser.exit(1, f"contact-cost-exporter: invalid configuration: {exc}\n")


def _web_config_or_exit(parser: argparse.ArgumentParser, path: Path | None) -> WebConfig:
    from collector.config import ConfigError
    from collector.webconfig import load_web_config

    try:
        return load_web_config(path)
    except ConfigError as exc:
        parser.exit(1, f"contact-cost-exporter: invalid web configuration: {exc}\n")


def web_config_summary(web: WebConfig) -> str:
    """One line for --config.check: what the web config turns on, never a hash."""
    users = len(web.auth.users)
    return (
        f"{web.origin}: valid, "
        + ("TLS" if web.tls else "plain HTTP")
        + (f", basic auth for {users} user(s)" if users else ", no basic auth")
        + (f", {len(web.headers)} extra header(s)" if web.headers else "")
    )


def serve(args: argparse.Namespace, parser: argparse.ArgumentParser,
          signals: ProcessSignals) -> int:
    from collector import __version__
    from collector.runtime import Exporter, store_failure
    from collector.scheduler import build_scheduler
    from collector.server import ExporterHTTPServer, parse_listen_address
    from collector.store import StoreVersionError
    from collector.stores import STORE_ERRORS
    from collector.worker import RecomputeWorker

    config = _load_or_exit(parser, args.config_file)
    web = _web_config_or_exit(parser, args.web_config_file)
    try:
        address = parse_listen_address(args.listen_address)
    except ValueError as exc:
        parser.error(f"--web.listen-address: {exc}")
    unopenable: tuple[type[Exception], ...] = (*STORE_ERRORS, StoreVersionError)
    try:
        exporter = Exporter(config, web=web)
    except unopenable as exc:  # unreachable, unwritable, written by a newer version
        parser.exit(1, f"contact-cost-exporter: {store_failure(config.settings, exc)}\n")
    exporter.worker = RecomputeWorker()
    scheduler = build_scheduler(exporter)  # reschedules itself after each reload

    def reload_answer() -> str | None:
        """POST /-/reload: the reason a reload was refused, or None."""
        return exporter.reload(args.config_file, args.web_config_file).error

    try:
        server = ExporterHTTPServer(
            address,
            exporter,
            telemetry_path=args.telemetry_path,
            webhooks=exporter.webhooks,
            reload=reload_answer if args.enable_lifecycle else None,
            web=exporter.web,
            max_connections_per_client=args.max_connections_per_client,
        )
    except OSError as exc:
        exporter.close()
        parser.exit(1, f"contact-cost-exporter: cannot listen on {args.listen_address}: {exc}\n")

    def follow_reload() -> None:
        server.web = exporter.web
        server.webhooks = exporter.webhooks

    def on_stop(signum: int) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, daemon=True).start()

    exporter.reload_listeners.append(follow_reload)
    exporter.started()
    scheduler.start()
    signals.ready(
        on_reload=lambda: threading.Thread(target=reload_answer, daemon=True).start(),
        on_stop=on_stop,
    )
    log.info(
        "listening on %s://%s%s, %d source(s), version %s",
        "https" if web.tls else "http",
        args.listen_address,
        args.telemetry_path,
        len(config.adapters),
        __version__,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        scheduler.shutdown(wait=True)  # lets a running ingest commit or roll back
        server.server_close()
        exporter.close()
    return 0


@contextlib.contextmanager
def _ingested(config: LoadedConfig) -> Iterator[Exporter]:
    """An exporter that has read what is new from every source, closed afterwards.

    On a terminal a progress bar per source shows rows read, rows/s and time left.
    """
    from collector.progress import IngestProgress
    from collector.runtime import Exporter, store_failure
    from collector.store import StoreVersionError
    from collector.stores import STORE_ERRORS

    unopenable: tuple[type[Exception], ...] = (*STORE_ERRORS, StoreVersionError)
    try:
        # a replica's lock: it pulls only when no serving replica does
        exporter = Exporter(config, one_shot=True)
    except unopenable as exc:  # one line, as serve says it, not a traceback
        sys.exit(f"contact-cost-exporter: {store_failure(config.settings, exc)}")
    progress = IngestProgress()
    exporter.on_batch = progress.batch
    try:
        for name in exporter.adapters:
            progress.start(name)
            exporter.ingest(name)
        progress.finish()
        yield exporter
    finally:
        progress.finish()
        exporter.close()


def _report_mode(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, ...]:
    """Check the report arguments; the --by dimensions of a window report, () for a period."""
    from collector.report import DEFAULT_BY, WindowError, check_window, parse_by

    window = args.from_ is not None or args.to is not None
    if not window:
        if args.by is not None:
            parser.error("--by needs --from and --to")
        if args.format == "csv":
            parser.error("--format csv needs --from and --to")
        return ()
    if args.from_ is None or args.to is None:
        parser.error("--from and --to go together")
    if args.period is not None:
        parser.error("--period and --from/--to exclude each other")
    try:
        check_window(args.from_, args.to)
        return DEFAULT_BY if args.by is None else parse_by(args.by)
    except WindowError as exc:
        parser.error(str(exc))


def report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from collector.pipeline import figures_at
    from collector.report import render_report, render_window, window_report_from_store

    by = _report_mode(args, parser)
    config = _load_or_exit(parser, args.config_file)
    with _ingested(config) as exporter:
        at = args.at or datetime.now(UTC)
        if at.tzinfo is None:
            at = at.replace(tzinfo=config.settings.tz)
        if by:
            data = window_report_from_store(
                exporter.store, config.settings, args.from_, args.to, at, by
            )
            sys.stdout.write(render_window(data, args.format, by))
        else:
            figures = figures_at(exporter.store, config.settings, at, exporter.clock)
            sys.stdout.write(
                render_report(
                    figures.samples, config.settings, at, args.period or "month", args.format
                )
            )
        down = [n for n, s in exporter.health.sources().items() if not s.up]
        for name in down:
            sys.stderr.write(f"warning: source {name} could not be read; figures may be short\n")
    return 0


def backfill(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from collector.backfill import BackfillError, create_blocks, hours_between, write_openmetrics
    from collector.progress import hour_bar

    config = _load_or_exit(parser, args.config_file)
    with _ingested(config) as exporter:
        try:
            steps = sum(1 for _ in hours_between(args.start, args.end, config.settings.tz))
            with hour_bar(steps) as bar:
                path, hours, samples = write_openmetrics(
                    exporter.store, config.settings, args.start, args.end,
                    datetime.now(UTC), args.output, on_hour=lambda: bar.update(),
                )
            command, ran = create_blocks(path, args.output / "blocks")
        except BackfillError as exc:
            parser.exit(1, f"contact-cost-exporter: backfill refused: {exc}\n")
    print(f"wrote {samples} samples over {hours} hours to {path}")
    if ran:
        print(f"created TSDB blocks in {args.output / 'blocks'}; move them into Prometheus's "
              "--storage.tsdb.path and make sure its retention covers them")
    else:
        print("promtool is not installed; create the blocks with:\n  " + " ".join(command))
    return 0


def whatif(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from collector.whatif import LeverError, parse_levers, render_whatif, whatif_from_store

    given = {k.removeprefix("lever_"): v for k, v in vars(args).items()
             if k.startswith("lever_") and v is not None}
    try:
        levers = parse_levers(given)
    except LeverError as exc:
        parser.error(str(exc))
    config = _load_or_exit(parser, args.config_file)
    with _ingested(config) as exporter:
        at = args.at or datetime.now(UTC)
        if at.tzinfo is None:
            at = at.replace(tzinfo=config.settings.tz)
        data = whatif_from_store(
            exporter.store, config.settings, at, args.period, args.window, levers
        )
        sys.stdout.write(render_whatif(data, args.format))
    return 0


def migrate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from collector.migrate import MigrateError, Mismatch, migrate_store, store_password, summary

    settings = None  # the costs the figures are compared with: the config's, when there is one
    if args.config_file != Path("contact-cost.toml") or args.config_file.exists():
        settings = _load_or_exit(parser, args.config_file).settings
    try:
        result = migrate_store(args.from_store, args.to_store, settings, datetime.now(UTC),
                               password=store_password())
    except Mismatch as exc:
        parser.exit(1, f"contact-cost-exporter: migrate failed: {exc}; the copy was taken "
                    f"back, {args.to_store} is empty again (was an exporter writing "
                    f"{args.from_store}? stop it and run migrate again)\n")
    except MigrateError as exc:
        parser.exit(1, f"contact-cost-exporter: migrate refused: {exc}\n")
    sys.stdout.write(summary(result, args.from_store, args.to_store))
    return 0


_SIGNED_VALUE_FLAGS = ("--aht", "--fcr")


def _join_signed_values(argv: Sequence[str]) -> list[str]:
    """`--aht -30s` as people type it: argparse would read -30s as a flag, so join it."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        if items[i] in _SIGNED_VALUE_FLAGS and i + 1 < len(items) and items[i + 1][:1] == "-":
            out.append(f"{items[i]}={items[i + 1]}")
            i += 2
            continue
        out.append(items[i])
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    signals = ProcessSignals().install()  # first: nothing before it may take time
    parser = build_parser()
    args = parser.parse_args(_join_signed_values(sys.argv[1:] if argv is None else argv))
    setup_logging(args.log_level)
    if args.command is None and not args.config_check:
        return serve(args, parser, signals)
    try:
        signals.restore_defaults()  # one-shot commands keep the default signal behaviour
        return one_shot(args, parser)
    except KeyboardInterrupt:
        # Ctrl-C in report/backfill/whatif/--config.check: every batch was committed with its
        # read position (or rolled back whole), so a re-run goes on from there; in migrate the
        # copy is rolled back (or, once committed, taken back) and the destination left as it
        # was. Say so in one line and exit as a shell expects of an interrupted command,
        # without a traceback.
        sys.stderr.write("contact-cost-exporter: interrupted\n")
        return 130


def one_shot(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """A command that does its job and exits: report, backfill, whatif, migrate or
    --config.check."""
    if args.command == "report":
        return report(args, parser)
    if args.command == "backfill":
        return backfill(args, parser)
    if args.command == "whatif":
        return whatif(args, parser)
    if args.command == "migrate":
        return migrate(args, parser)
    from collector.configcheck import check_config, report_check

    status = report_check(check_config(args.config_file), args.config_check_strict)
    if status == 0 and args.web_config_file is not None:
        print(web_config_summary(_web_config_or_exit(parser, args.web_config_file)))
    return status


if __name__ == "__main__":
    sys.exit(main())
