"""``imapproxy who`` and ``imapproxy kick USER``: clients of the admin socket (admin.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..config import ConfigError, Overrides, load_config
from .admin import request


def add_parsers(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    who = commands.add_parser(
        "who", formatter_class=formatter, help="list the live sessions of a running proxy",
        description="List the running proxy's sessions: user, client address, mailbox, "
                    "since when. Talks to the proxy's admin socket.")
    kick = commands.add_parser(
        "kick", formatter_class=formatter, help="end every session of a user",
        description="End every session of USER on the running proxy (the clients get "
                    "* BYE). Talks to the proxy's admin socket.")
    kick.add_argument("user", metavar="USER")
    for parser in (who, kick):
        parser.add_argument("--config", type=Path, metavar="FILE",
                            help="the proxy's config file (to find its admin socket)")
        parser.add_argument("--cache-dir", type=Path, metavar="DIR",
                            help="the proxy's --cache-dir (the socket is DIR/admin.sock)")
        parser.add_argument("--socket", type=Path, metavar="PATH",
                            help="the admin socket itself (default: from the config)")
    who.add_argument("--json", action="store_true", help="print JSON")
    who.set_defaults(func=_cmd_who)
    kick.set_defaults(func=_cmd_kick)


def _socket(args: argparse.Namespace) -> Path | None:
    if args.socket is not None:
        return Path(args.socket)
    try:
        config = load_config(args.config, Overrides(cache_dir=args.cache_dir))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    if config.admin_socket is None:
        print("the admin socket is off in this configuration ([admin] enabled = false)",
              file=sys.stderr)
    return config.admin_socket


def _ask(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any] | None:
    path = _socket(args)
    if path is None:
        return None
    try:
        answer = request(path, payload)
    except (OSError, ValueError, TypeError) as exc:
        print(f"no proxy answers on {path}: {exc}", file=sys.stderr)
        return None
    if not answer.get("ok"):
        print(f"the proxy refused: {answer.get('error')}", file=sys.stderr)
        return None
    return answer


def _cmd_who(args: argparse.Namespace) -> int:
    answer = _ask(args, {"command": "who"})
    if answer is None:
        return 1
    sessions = answer.get("sessions", [])
    if args.json:
        print(json.dumps(sessions, indent=2))
        return 0
    print(f"{'USER':<24} {'CLIENT':<24} {'MAILBOX':<20} {'SINCE':<21} SECONDS")
    for row in sessions:
        print(f"{row.get('user') or '-':<24} {row.get('peer') or '-':<24} "
              f"{row.get('mailbox') or '-':<20} {row.get('since', ''):<21} "
              f"{row.get('seconds', '')}")
    print(f"{len(sessions)} sessions")
    return 0


def _cmd_kick(args: argparse.Namespace) -> int:
    answer = _ask(args, {"command": "kick", "user": args.user})
    if answer is None:
        return 1
    print(f"ended {answer.get('kicked', 0)} sessions of {args.user}, closed "
          f"{answer.get('parked_closed', 0)} parked upstream connections")
    return 0
