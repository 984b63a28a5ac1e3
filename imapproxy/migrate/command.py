"""The ``migrate`` and ``verify`` subcommands (registered by imapproxy/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
from collections.abc import Awaitable
from pathlib import Path

import platformdirs

from ..config import ConfigError
from .account import ImapAccount
from .endpoint import Endpoint, ImapEndpoint, MaildirEndpoint, parse_endpoint, read_password
from .engine import Migration, Options, Summary, Writer
from .errors import MigrateError
from .imap_dest import ImapWriter
from .maildir import MaildirWriter
from .maildir_reader import MaildirTree
from .progress import Progress
from .state import StateFile
from .verify import ImapSide, verify

log = logging.getLogger(__name__)

PASSWORD_ENV = {"from": "IMAPPROXY_FROM_PASSWORD", "to": "IMAPPROXY_TO_PASSWORD"}
STATE_NAME = "imapproxy-migrate.json"  # in the Maildir root (Dovecot ignores it)


def add_subcommands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = commands.add_parser(
        "migrate", help="copy an IMAP account to a Maildir or another IMAP account",
        description="Copy an account keeping UIDVALIDITY, UIDs (Maildir), flags, keywords and "
                    "INTERNALDATE; a re-run copies only what changed. Passwords come from "
                    f"${PASSWORD_ENV['from']} / ${PASSWORD_ENV['to']}, --*-password-file, or "
                    "a prompt; never from the command line.")
    _common(migrate)
    migrate.add_argument("--to", required=True,
                         help="maildir:PATH or imap[s]://USER@HOST[:PORT]")
    migrate.add_argument("--dry-run", action="store_true",
                         help="list what would be copied, change nothing")
    migrate.add_argument("--state", type=Path, metavar="FILE",
                         help="resume state file (default: in the Maildir, or per "
                              "source/destination in the user state directory)")
    migrate.add_argument("--uid-map", type=Path, metavar="FILE",
                         help="IMAP destination: where to write the old UID -> new UID map "
                              "(default: next to the state file, .uidmap.json)")
    migrate.add_argument("--batch", type=int, default=100, metavar="N",
                         help="messages per UID FETCH / APPEND batch (default 100)")
    migrate.set_defaults(func=_cmd_migrate)
    check = commands.add_parser(
        "verify", help="compare two accounts (IMAP or Maildir) and list every difference",
        description="Compare mailboxes, messages (paired by SHA-256, same UID preferred), "
                    "flags and bytes; exit status 1 when anything differs.")
    _common(check)
    check.add_argument("--to", required=True,
                       help="imap[s]://USER@HOST[:PORT], or maildir:PATH (read directly)")
    check.set_defaults(func=_cmd_verify)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True,
                        help="imap[s]://USER@HOST[:PORT] (or imap+starttls://)")
    parser.add_argument("--from-password-file", type=Path, metavar="FILE",
                        help=f"source password (first line); else ${PASSWORD_ENV['from']}")
    parser.add_argument("--to-password-file", type=Path, metavar="FILE",
                        help=f"destination password; else ${PASSWORD_ENV['to']}")
    parser.add_argument("--mailboxes", action="append", default=[], metavar="PATTERN",
                        help="only mailboxes matching this shell pattern (repeatable)")
    parser.add_argument("--ca-file", type=Path, metavar="FILE",
                        help="CA certificates for imaps/STARTTLS")
    parser.add_argument("--log-level", default="WARNING", metavar="LEVEL",
                        help="DEBUG, INFO, WARNING (default), ERROR")


def _setup_logging(level: str) -> None:
    from ..cli import setup_logging
    setup_logging(level.upper())


def _endpoints(args: argparse.Namespace) -> tuple[ImapEndpoint, Endpoint]:
    source = parse_endpoint(args.source, "--from", ca_file=args.ca_file)
    if not isinstance(source, ImapEndpoint):
        raise ConfigError("--from", "the source must be an IMAP account")
    return source, parse_endpoint(args.to, "--to", ca_file=args.ca_file)


def _cmd_migrate(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    try:
        source, dest = _endpoints(args)
        passwords = {"from": read_password("from", PASSWORD_ENV["from"],
                                           args.from_password_file)}
        if isinstance(dest, ImapEndpoint):
            passwords["to"] = read_password("to", PASSWORD_ENV["to"], args.to_password_file)
    except ConfigError as exc:
        print(f"imapproxy migrate: {exc}", file=sys.stderr)
        return 2
    if args.batch < 1:
        print("imapproxy migrate: --batch must be at least 1", file=sys.stderr)
        return 2
    state_path = args.state or _default_state(source, dest)
    uid_map = None
    if isinstance(dest, ImapEndpoint):
        uid_map = args.uid_map or state_path.with_suffix(".uidmap.json")
    options = Options(args.mailboxes, args.dry_run, args.batch,
                      uid_map=uid_map)
    try:
        summary = asyncio.run(_migrate(source, dest, passwords, state_path, options))
    except MigrateError as exc:
        print(f"imapproxy migrate: {exc}", file=sys.stderr)
        return 1
    for line in summary.lines():
        print(line, file=sys.stderr)
    if uid_map is not None and not args.dry_run:
        print(f"UID map: {uid_map}", file=sys.stderr)
    return 1 if summary.failed else 0


async def _migrate(source: ImapEndpoint, dest: Endpoint, passwords: dict[str, str],
                   state_path: Path, options: Options) -> Summary:
    def connect_source() -> Awaitable[ImapAccount]:
        return ImapAccount.connect(source, passwords["from"])

    def connect_dest() -> Awaitable[ImapAccount]:
        assert isinstance(dest, ImapEndpoint)
        return ImapAccount.connect(dest, passwords["to"])

    migration: Migration | None = None
    reader = await connect_source()
    writer: Writer
    try:
        if isinstance(dest, MaildirEndpoint):
            writer = MaildirWriter(dest.path)
        else:
            writer = ImapWriter(await connect_dest(), connect_dest)
        state = StateFile.load(state_path, str(source), str(dest))
        migration = Migration(reader, writer, state, options, Progress(), connect_source)
        try:
            return await migration.run()
        finally:
            await writer.close()
    finally:
        await (migration.source if migration is not None else reader).logout()


def _default_state(source: ImapEndpoint, dest: Endpoint) -> Path:
    if isinstance(dest, MaildirEndpoint):
        return dest.path / STATE_NAME
    key = hashlib.sha256(f"{source}\n{dest}".encode()).hexdigest()[:16]
    return Path(platformdirs.user_state_dir("imapproxy")) / "migrate" / f"{key}.json"


def _cmd_verify(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    try:
        source, dest = _endpoints(args)
        passwords = (read_password("from", PASSWORD_ENV["from"], args.from_password_file),
                     read_password("to", PASSWORD_ENV["to"], args.to_password_file)
                     if isinstance(dest, ImapEndpoint) else "")
    except ConfigError as exc:
        print(f"imapproxy verify: {exc}", file=sys.stderr)
        return 2

    async def run() -> list[str]:
        a = await ImapAccount.connect(source, passwords[0])
        try:
            if isinstance(dest, MaildirEndpoint):
                tree = MaildirTree(dest.path, await a.delimiter() or "/")
                return [str(d) for d in await verify(a, tree, args.mailboxes)]
            b = await ImapAccount.connect(dest, passwords[1])
            try:
                return [str(d) for d in await verify(a, ImapSide(b), args.mailboxes)]
            finally:
                await b.logout()
        finally:
            await a.logout()

    try:
        diffs = asyncio.run(run())
    except MigrateError as exc:
        print(f"imapproxy verify: {exc}", file=sys.stderr)
        return 2
    for line in diffs:
        print(line)
    print(f"{len(diffs)} differences", file=sys.stderr)
    return 1 if diffs else 0
