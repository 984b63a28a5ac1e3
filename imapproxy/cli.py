"""The ``imapproxy`` command: ``serve`` runs the proxy, ``demo`` runs it in front of a
throwaway Dovecot holding sample mail, ``cache stats`` / ``cache purge`` look after the
message cache.

Exit codes: 0 after a clean stop (Ctrl-C, SIGTERM), 1 when the demo cannot start Dovecot,
2 for configuration errors and listen addresses that cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

from imapproxy import __version__
from imapproxy.config import (
    LOG_LEVELS,
    Config,
    ConfigError,
    ListenerConfig,
    Overrides,
    UpstreamConfig,
    default_cache_dir,
    load_config,
    parse_bind,
)
from imapproxy.observability import admin_cli
from imapproxy.observability.logformat import formatter

log = logging.getLogger("imapproxy.cli")

DEMO_LISTEN = "127.0.0.1:1143"


def _log_level_arg(value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


class _HelpFormatter(argparse.HelpFormatter):
    """Never wrap in the middle of a flag such as --tls-cert."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imapproxy",
        description="A caching and filtering IMAP proxy.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"imapproxy {__version__}",
        help="print the version and exit",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        formatter_class=_HelpFormatter,
        help="run the proxy",
        description=(
            "Run the proxy until interrupted (Ctrl-C or SIGTERM). Settings come from the "
            "config file; the flags below override it. Without a file or flags the proxy "
            "listens on 127.0.0.1:1143 and forwards to imap://127.0.0.1:143."
        ),
    )
    serve.add_argument(
        "--config", type=Path, metavar="FILE",
        help="TOML config file (see conf/imapproxy.toml for every setting). Default: none, "
             "built-in defaults plus these flags",
    )
    serve.add_argument(
        "--listen", action="append", default=[], metavar="HOST:PORT",
        help="accept IMAP clients on this address, e.g. 127.0.0.1:1143 or [::1]:1143; "
             "repeat for several. Replaces the config file's plain-port listeners (tls = "
             "none or starttls; its implicit-TLS ones stay). With --tls-cert these "
             "listeners offer STARTTLS. Default: the file's listeners, else 127.0.0.1:1143",
    )
    serve.add_argument(
        "--listen-tls", action="append", default=[], metavar="HOST:PORT",
        help="accept IMAP clients over implicit TLS (IMAPS) on this address, e.g. "
             "0.0.0.0:1993; repeatable; needs --tls-cert/--tls-key. Added to the other "
             "listeners. Default: none",
    )
    serve.add_argument(
        "--upstream", metavar="URL",
        help="the IMAP server to forward to: imap://HOST[:PORT] (plain, port 143), "
             "imap+starttls://HOST[:PORT] (STARTTLS, 143) or imaps://HOST[:PORT] "
             "(implicit TLS, 993). Default: upstream.url from the file, else "
             "imap://127.0.0.1:143",
    )
    serve.add_argument(
        "--upstream-ca", type=Path, metavar="FILE",
        help="PEM file of CA certificates to verify the upstream server's certificate "
             "with. Default: upstream.ca_file, else the system's trusted CAs",
    )
    serve.add_argument(
        "--insecure-upstream", action="store_true",
        help="do not verify the upstream server's TLS certificate. For tests only: it "
             "allows anyone on the network path to read passwords and mail; a WARNING is "
             "logged. Default: off (verify)",
    )
    serve.add_argument(
        "--cache-dir", type=Path, metavar="DIR",
        help=f"where to keep the message cache. Default: cache.dir from the file, else "
             f"{default_cache_dir()}",
    )
    serve.add_argument(
        "--tls-cert", type=Path, metavar="FILE",
        help="PEM certificate (chain) for the TLS listeners; with it, --listen addresses "
             "offer STARTTLS, and it replaces cert_file of the file's TLS listeners. "
             "Default: none (plain listeners only)",
    )
    serve.add_argument(
        "--tls-key", type=Path, metavar="FILE",
        help="PEM private key (unencrypted) for --tls-cert. Default: the key is read from "
             "the --tls-cert file",
    )
    serve.add_argument(
        "--allow-plaintext-auth", action="store_true", default=None,
        help="let clients send passwords without TLS on every listener (LOGIN and "
             "AUTHENTICATE PLAIN before STARTTLS). Clients on loopback are always allowed. "
             "Default: the file's allow_plaintext_auth per listener, else off",
    )
    serve.add_argument(
        "--log-level", type=_log_level_arg, metavar="LEVEL",
        help=f"one of {', '.join(LOG_LEVELS)}. Default: log_level from the file, else INFO",
    )
    serve.set_defaults(func=_cmd_serve)

    demo = commands.add_parser(
        "demo",
        formatter_class=_HelpFormatter,
        help="try the proxy in front of a throwaway Dovecot with sample mail",
        description=(
            "Start a private Dovecot (needs Debian's dovecot-imapd) holding sample mail "
            "for user demo / password demo, and the proxy in front of it, until Ctrl-C."
        ),
    )
    demo.add_argument(
        "--listen", default=DEMO_LISTEN, metavar="HOST:PORT",
        help=f"where the proxy accepts IMAP clients. Default: {DEMO_LISTEN}",
    )
    demo.add_argument(
        "--dir", type=Path, metavar="DIR",
        help="keep Dovecot's mail and the proxy's cache in this directory and keep it "
             "afterwards. Default: a temporary directory, removed on exit",
    )
    demo.add_argument(
        "--log-level", type=_log_level_arg, default="INFO", metavar="LEVEL",
        help=f"one of {', '.join(LOG_LEVELS)}. Default: INFO",
    )
    demo.set_defaults(func=_cmd_demo)
    _add_cache_parser(commands)
    admin_cli.add_parsers(commands, _HelpFormatter)
    from imapproxy.migrate.command import add_subcommands as add_migrate_subcommands
    add_migrate_subcommands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 0
    return code


# ---------------------------------------------------------------------------------- serve


def _cmd_serve(args: argparse.Namespace) -> int:
    overrides = Overrides(
        listen=list(args.listen),
        listen_tls=list(args.listen_tls),
        upstream=args.upstream,
        upstream_ca=args.upstream_ca,
        insecure_upstream=args.insecure_upstream,
        cache_dir=args.cache_dir,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        allow_plaintext_auth=args.allow_plaintext_auth,
        log_level=args.log_level,
    )
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.observability.log_format)
    if config.upstream.insecure_skip_verify:
        log.warning(
            "upstream TLS certificate verification is DISABLED (--insecure-upstream / "
            "upstream.insecure_skip_verify): for tests only, never in production"
        )
    return run_server(config)


_OUR_HANDLER = "_imapproxy_cli_handler"


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log lines to stderr at ``level``, as text, key=value or JSON (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OUR_HANDLER, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    setattr(handler, _OUR_HANDLER, True)
    root.addHandler(handler)
    root.setLevel(level)


def run_server(config: Config) -> int:
    """Run imapproxy.server.app.serve(config) until it returns or is interrupted."""
    try:
        asyncio.run(_serve_until_terminated(config))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(describe_listen_error(exc, config.listeners), file=sys.stderr)
        return 2
    return 0


async def _serve_until_terminated(config: Config) -> None:
    from imapproxy.server import app  # lazy: keeps `--help` fast and independent

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(app.serve(config))
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    # A fallback so `docker stop` (SIGTERM to PID 1) stops us cleanly; serve() may install
    # its own handler, which then takes precedence.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        await task
    except asyncio.CancelledError:
        if not terminated:
            raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


_SOCKADDR_RE = re.compile(r"\('([^']*)', (\d+)")


def describe_listen_error(exc: OSError, listeners: Sequence[ListenerConfig]) -> str:
    """One line for an OSError from serve(): ``error: listener HOST:PORT: <reason>``."""
    if exc.filename is not None:  # not a socket problem, e.g. the cache directory
        return f"error: {exc.filename}: {exc.strerror or exc}"
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    if isinstance(cause, socket.gaierror) or isinstance(exc, socket.gaierror):
        reason = str((cause if isinstance(cause, socket.gaierror) else exc).strerror)
    elif exc.errno is not None and exc.errno > 0:
        reason = os.strerror(exc.errno)
    else:
        reason = str(exc.strerror or exc)
    listener = _failed_listener(exc, listeners)
    if listener is None:
        return f"error: {exc.strerror or exc}"
    return f"error: listener {listener.bind}: {reason}"


def _failed_listener(
    exc: OSError, listeners: Sequence[ListenerConfig]
) -> ListenerConfig | None:
    text = f"{exc} {exc.__cause__ or ''}"
    named = [lst for lst in listeners if f"listener {lst.bind}" in text]
    if len(named) == 1:
        return named[0]
    addresses = {(host, int(port)) for host, port in _SOCKADDR_RE.findall(text)}
    matching = [lst for lst in listeners if (lst.host, lst.port) in addresses]
    if not matching:
        ports = {port for _, port in addresses}
        matching = [lst for lst in listeners if lst.port in ports]
    if len(matching) == 1:
        return matching[0]
    if len(listeners) == 1:
        return listeners[0]
    for lst in listeners:  # last resort: find out which address cannot be bound now
        if lst.port != 0 and _bind_error(lst.host, lst.port) is not None:
            return lst
    return None


def _bind_error(host: str, port: int) -> OSError | None:
    """Try to bind host:port the way asyncio does; the error, or None if it works."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, sockaddr in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
    except OSError as exc:
        return exc
    return None


# ----------------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        host, port = parse_bind(args.listen, "--listen")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    listener = ListenerConfig(host=host, port=port or _free_port(host))
    problem = _bind_error(listener.host, listener.port)
    if problem is not None:  # say so before starting Dovecot for nothing
        print(describe_listen_error(problem, [listener]), file=sys.stderr)
        return 2
    setup_logging(args.log_level)

    from imapproxy.demo_mail import DEMO_PASSWORD, DEMO_USER, sample_messages
    from imapproxy.devserver import DovecotServer

    temp: tempfile.TemporaryDirectory[str] | None = None
    if args.dir is not None:
        base: Path = args.dir.resolve()
        base.mkdir(parents=True, exist_ok=True)
    else:
        temp = tempfile.TemporaryDirectory(prefix="imapproxy-demo-")
        base = Path(temp.name)
    dovecot = DovecotServer(base / "dovecot")
    try:
        try:
            dovecot.start()
            dovecot.add_user(DEMO_USER, DEMO_PASSWORD)
            marker = base / "sample-mail-loaded"
            if not marker.exists():  # a reused --dir already holds the sample mail
                for sample in sample_messages():
                    dovecot.append(DEMO_USER, DEMO_PASSWORD, sample.mailbox, sample.message,
                                   flags=sample.flags, date=sample.date)
                marker.touch()
        except Exception as exc:  # noqa: BLE001 - whatever failed, there is no demo
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"error: cannot set up the demo Dovecot: {first_line} "
                  f"(its log: {dovecot.log_file})", file=sys.stderr)
            return 1
        upstream_host = f"[{dovecot.host}]" if ":" in dovecot.host else dovecot.host
        config = Config(
            upstream=UpstreamConfig(
                url=f"imap://{upstream_host}:{dovecot.port}",
                host=dovecot.host,
                port=dovecot.port,
                security="plain",
            ),
            listeners=(listener,),
            cache_dir=base / "cache",
            log_level=args.log_level,
        )
        print(
            f"imapproxy demo running: IMAP on {listener.bind}, user {DEMO_USER} / password "
            f"{DEMO_PASSWORD} (upstream Dovecot on {upstream_host}:{dovecot.port}). "
            "Ctrl-C to stop.",
            flush=True,
        )
        return run_server(config)
    finally:
        with contextlib.suppress(Exception):
            dovecot.stop()
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.cleanup()


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------------------------- cache


def _add_cache_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = commands.add_parser(
        "cache",
        formatter_class=_HelpFormatter,
        help="show statistics of the message cache, or empty it",
        description="Look after the message cache (see docs/cache.md).",
    )
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    stats = actions.add_parser(
        "stats", formatter_class=_HelpFormatter,
        help="entries, bytes and hit ratio of the cache",
        description="Print the number of cached messages, the bytes they take on disk and "
                    "the hit ratio (hits and misses are counted since the cache was "
                    "created; a running proxy writes its counts out every few seconds).",
    )
    purge = actions.add_parser(
        "purge", formatter_class=_HelpFormatter,
        help="delete cached mail: everything, or one user's",
        description="Delete the cache of every user, or of --user only. Works while the "
                    "proxy runs: the entries are deleted from the databases it has open, the "
                    "directories removed, and the proxy starts those caches afresh.",
    )
    for sub in (stats, purge):
        sub.add_argument(
            "--config", type=Path, metavar="FILE",
            help="TOML config file, for cache.dir, cache.max_size and upstream.url. "
                 "Default: none",
        )
        sub.add_argument(
            "--cache-dir", type=Path, metavar="DIR",
            help=f"the cache directory. Default: cache.dir from the file, else "
                 f"{default_cache_dir()}",
        )
    stats.add_argument("--users", action="store_true",
                       help="also print one line per user cache")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(func=_cmd_cache_stats)
    purge.add_argument(
        "--user", metavar="USER",
        help="only this user's cache (the login name), on every upstream it was cached for, "
             "or on --upstream only. Default: every user",
    )
    purge.add_argument(
        "--upstream", metavar="URL",
        help="only caches of this upstream server (imap://HOST[:PORT], imaps://...). "
             "Default: any",
    )
    purge.set_defaults(func=_cmd_cache_purge)


def _cache_config(args: argparse.Namespace) -> Config | None:
    try:
        return load_config(args.config, Overrides(cache_dir=args.cache_dir))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _cmd_cache_stats(args: argparse.Namespace) -> int:
    import json

    from imapproxy.cache import CacheStats, MessageCache

    config = _cache_config(args)
    if config is None:
        return 2
    setup_logging("WARNING")
    if (config.cache_dir / "users").is_dir():
        with MessageCache(config.cache_dir, config.cache, io_threads=1) as cache:
            stats = cache.stats()
    else:  # nothing cached yet: do not create the directory just to say so
        stats = CacheStats(config.cache_dir, config.cache.max_size, ())
    ratio = stats.hit_ratio
    if args.json:
        data: dict[str, object] = {
            "directory": str(stats.directory), "max_size": stats.max_size,
            "user_caches": len(stats.users), "entries": stats.entries, "bytes": stats.bytes,
            "index_entries": stats.index_entries, "hits": stats.hits,
            "misses": stats.misses, "hit_ratio": ratio, "corrupt": stats.corrupt,
        }
        if args.users:
            data["users"] = [
                {"id": u.id, "upstream": u.upstream, "user": u.user, "entries": u.entries,
                 "bytes": u.bytes, "index_entries": u.index_entries, "hits": u.hits,
                 "misses": u.misses, "corrupt": u.corrupt}
                for u in stats.users
            ]
        print(json.dumps(data, indent=2))
        return 0
    print(f"cache directory: {stats.directory}")
    print(f"user caches:     {len(stats.users)}")
    print(f"entries:         {stats.entries} messages, {stats.index_entries} index entries")
    print(f"size:            {_size_text(stats.bytes)} of {_size_text(stats.max_size)} "
          f"({stats.bytes} bytes)")
    print(f"hits:            {stats.hits}")
    print(f"misses:          {stats.misses}")
    print(f"hit ratio:       {'-' if ratio is None else f'{ratio:.1%}'}")
    print(f"corrupt:         {stats.corrupt}")
    if args.users:
        for u in stats.users:
            print(f"  {u.id}  {u.user or '?'} @ {u.upstream or '?'}: {u.entries} messages, "
                  f"{_size_text(u.bytes)}, {u.hits} hits, {u.misses} misses")
    return 0


def _cmd_cache_purge(args: argparse.Namespace) -> int:
    from imapproxy.cache import MessageCache, upstream_id
    from imapproxy.config import parse_upstream_url

    config = _cache_config(args)
    if config is None:
        return 2
    upstream: str | None = None
    if args.upstream is not None:
        try:
            host, port, _ = parse_upstream_url(args.upstream, "--upstream")
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        upstream = upstream_id(UpstreamConfig(host=host, port=port))
    setup_logging("WARNING")
    if not (config.cache_dir / "users").is_dir():
        print(f"purged 0 user caches in {config.cache_dir}")
        return 0
    with MessageCache(config.cache_dir, config.cache, io_threads=1) as cache:
        removed = cache.purge(args.user, upstream)
        if args.user is not None and upstream is None:
            # A directory whose owner.json is unreadable is still found by its name.
            removed += cache.purge(args.user, upstream_id(config.upstream))
    what = "user caches" if removed != 1 else "user cache"
    print(f"purged {removed} {what} in {config.cache_dir}")
    return 0
