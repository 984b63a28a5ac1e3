"""The migration itself: plan every mailbox (what is new, what changed, what is gone since
the state file's last run), then copy mailbox by mailbox in batches, saving the state after
each batch so that a run cut short anywhere resumes without duplicates or loss."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from ..protocol import sets
from ..protocol.sets import uid_set
from .account import ImapAccount
from .errors import ConnectionLost, MigrateError, PartialWrite
from .gmail import NOT_MATCHED, choose_mailboxes, is_gmail, not_copied_yet
from .model import MailboxInfo, MailboxStatus, Message, MessageMeta
from .progress import Progress, megabytes
from .state import MailboxState, StateFile

log = logging.getLogger(__name__)

RECONNECTS = 3  # new connections per step after a lost one
T = TypeVar("T")
CRASH_ENV = "IMAPPROXY_MIGRATE_CRASH_AFTER"  # tests: exit abruptly after N messages written


class Writer(Protocol):
    async def prepare(self, info: MailboxInfo, status: MailboxStatus,
                      state: MailboxState) -> set[int]: ...
    async def write(self, info: MailboxInfo, messages: list[Message],
                    state: MailboxState) -> dict[int, int]: ...
    async def set_flags(self, info: MailboxInfo, dest: int, flags: tuple[str, ...]) -> None: ...
    async def remove(self, info: MailboxInfo, dests: list[int]) -> None: ...
    async def finish(self, info: MailboxInfo, status: MailboxStatus) -> None: ...
    async def set_subscriptions(self, mailboxes: list[MailboxInfo]) -> None: ...
    async def reconnect(self) -> bool: ...
    async def close(self) -> None: ...


@dataclass
class Options:
    patterns: list[str] = field(default_factory=list)
    dry_run: bool = False
    batch_messages: int = 100
    batch_bytes: int = 16 * 1024 * 1024
    uid_map: Path | None = None


@dataclass
class Plan:
    info: MailboxInfo
    status: MailboxStatus
    new: list[MessageMeta] = field(default_factory=list)
    changed: list[MessageMeta] = field(default_factory=list)  # flags differ from the state
    gone: list[int] = field(default_factory=list)  # copied before, expunged on the source since
    reset: bool = False  # UIDVALIDITY changed: everything is copied again

    @property
    def size(self) -> int:
        return sum(m.size for m in self.new)


@dataclass
class Summary:
    copied: int = 0
    bytes: int = 0
    flags_updated: int = 0
    removed: int = 0
    gmail_duplicates: int = 0  # not copied: already copied from another label's folder
    mailboxes: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [(f"{self.mailboxes} mailboxes: {self.copied} messages copied "
                f"({megabytes(self.bytes)}), {self.flags_updated} flag updates, "
                f"{self.removed} removed")]
        if self.gmail_duplicates:
            out.append(f"{self.gmail_duplicates} Gmail messages already copied from another "
                       "label's folder (one copy each)")
        unmatched = sum(why == NOT_MATCHED for why in self.skipped.values())
        if unmatched:
            out.append(f"{unmatched} mailboxes not matched by --mailboxes")
        out += [f"skipped {name}: {why}" for name, why in self.skipped.items()
                if why != NOT_MATCHED]
        if self.failed:
            out.append(f"{len(self.failed)} messages FAILED:")
            out += [f"  {f}" for f in self.failed]
        return out


class Migration:
    def __init__(self, source: ImapAccount, writer: Writer, state: StateFile,
                 options: Options, progress: Progress,
                 reconnect: Callable[[], Awaitable[ImapAccount]] | None = None) -> None:
        self.source = source
        self.reconnect = reconnect
        self.writer = writer
        self.state = state
        self.options = options
        self.progress = progress
        self.summary = Summary()
        crash = os.environ.get(CRASH_ENV, "")
        self._crash_after = int(crash) if crash.isdigit() else None
        self.gmail = False
        self.gmail_copied: set[int] = set()  # X-GM-MSGIDs with a copy in some folder

    async def run(self) -> Summary:
        listed = await self.source.list_mailboxes()
        self.gmail = is_gmail(self.source.capabilities, listed)
        chosen, self.summary.skipped = choose_mailboxes(listed, self.options.patterns,
                                                        self.gmail)
        self.gmail_copied = self.state.gmail_ids()
        plans = [await self._retrying(info, self.plan) for info in chosen]
        self.summary.mailboxes = len(plans)
        if self.options.dry_run:
            self._print_plans(plans)
            return self.summary
        self.progress.start(sum(len(p.new) for p in plans), sum(p.size for p in plans))
        for plan in plans:
            await self._retrying(plan.info, self.copy_mailbox, plan)
            self._write_uid_map()
        subscribed = [m for m in listed if m.subscribed and (
            m in chosen or not m.selectable)]
        await self.writer.set_subscriptions(subscribed)
        self.progress.finish()
        return self.summary

    async def _retrying(self, info: MailboxInfo, step: Callable[..., Awaitable[T]],
                        *args: object) -> T:
        """``step(info or plan)``, again on new connections when one breaks (up to
        RECONNECTS times, waiting 1, 2, 4 s): the state makes a step safe to redo, and a
        copy step is re-planned first, the source having maybe changed meanwhile."""
        for attempt in range(RECONNECTS + 1):
            try:
                if attempt and args:
                    args = (await self.plan(info),)
                return await step(*(args or (info,)))
            except ConnectionLost as exc:
                if attempt == RECONNECTS:
                    raise
                self.progress.note(f"{info.display_name}: connection lost ({exc}); "
                                   "reconnecting")
                await asyncio.sleep(2.0 ** attempt)
                if exc.account is self.source:
                    if self.reconnect is None:
                        raise
                    self.source.conn.close()
                    self.source = await self.reconnect()
                elif not await self.writer.reconnect():
                    raise
        raise AssertionError("unreachable")

    async def plan(self, info: MailboxInfo) -> Plan:
        """What to do for one mailbox, from the source and the state file (not the
        destination: the writer corrects the plan with what it finds there)."""
        status = await self.source.examine(info.name)
        mstate = self.state.mailbox(info.name)
        plan = Plan(info, status)
        if mstate.uidvalidity not in (None, status.uidvalidity):
            plan.reset = True
            plan.new = await self.source.fetch_meta()
            return plan
        if mstate.highestmodseq is not None and status.highestmodseq == mstate.highestmodseq \
                and status.uidnext == mstate.uidnext and not mstate.pending:
            return plan  # CONDSTORE says nothing changed
        if status.exists == 0:
            plan.gone = sorted(mstate.messages)
            return plan
        present = set(await self.source.all_uids())
        if mstate.highestmodseq is not None and status.highestmodseq is not None:
            metas = await self.source.fetch_meta(changedsince=mstate.highestmodseq)
            expected = present - set(mstate.messages)  # at least the new ones
        else:
            metas = await self.source.fetch_meta()
            expected = present
        # A response the server mangled (seen through buggy proxies) must not make a
        # message look absent: ask again for what SEARCH has but FETCH did not give.
        lost = sorted(expected - {m.uid for m in metas})
        if lost:
            log.warning("%s: no metadata for %d messages; asking again",
                        info.display_name, len(lost))
            metas += await self.source.fetch_meta(uid_set(lost))
        for meta in metas:
            copied = mstate.messages.get(meta.uid)
            if copied is None:
                plan.new.append(meta)
            elif copied.flags != meta.flags:
                plan.changed.append(meta)
        plan.gone = sorted(set(mstate.messages) - present)
        return plan

    async def copy_mailbox(self, plan: Plan) -> None:
        info = plan.info
        status = plan.status
        if plan.new or plan.changed or plan.gone or plan.reset:
            status = await self.source.examine(info.name)
            if (status.uidvalidity, status.uidnext, status.highestmodseq) != (
                    plan.status.uidvalidity, plan.status.uidnext, plan.status.highestmodseq):
                plan = await self.plan(info)  # changed since planned
                status = plan.status
        mstate = self.state.mailbox(info.name)
        self.progress.note(f"{info.display_name}: {len(plan.new)} new, "
                           f"{len(plan.changed)} flag changes, {len(plan.gone)} removed")
        try:
            if plan.reset:
                await self.writer.prepare(info, status, mstate)
                await self.writer.remove(info, [c.dest for c in mstate.messages.values()])
                mstate.forget_messages()
            mstate.uidvalidity = status.uidvalidity
            on_dest = await self.writer.prepare(info, status, mstate)
        except MigrateError as exc:
            self.summary.failed.append(f"{info.display_name}: {exc}")
            return
        # Settled by prepare (an APPEND that a killed run made): not new any more.
        plan.new = [m for m in plan.new if m.uid not in mstate.messages]
        # Gone first: on Gmail, a message that lost its label is then copied from All Mail.
        await self._remove_gone(info, plan, mstate)
        # Copied according to the state but lost on the destination: copy again.
        missing = [u for u in mstate.messages if u not in on_dest]
        if missing:
            for uid in missing:
                del mstate.messages[uid]
            if self.source.selected != info.name:
                await self.source.examine(info.name)
            plan.new += await self.source.fetch_meta(uid_set(missing))
        failures_before = len(self.summary.failed)
        if self.gmail:
            plan.new, duplicates = not_copied_yet(plan.new, self.gmail_copied)
            self.summary.gmail_duplicates += duplicates
        await self._copy_new(info, plan.new, mstate)
        for meta in plan.changed:
            copied = mstate.messages.get(meta.uid)
            if copied is not None:
                await self.writer.set_flags(info, copied.dest, meta.flags)
                mstate.record(meta.uid, meta.flags, copied.dest)
                self.summary.flags_updated += 1
        await self.writer.finish(info, status)
        mstate.uidnext = status.uidnext
        # Only a complete pass may vouch for HIGHESTMODSEQ (else the next run compares all).
        clean = len(self.summary.failed) == failures_before
        mstate.highestmodseq = status.highestmodseq if clean else None
        self.state.save()

    async def _remove_gone(self, info: MailboxInfo, plan: Plan, mstate: MailboxState) -> None:
        gone = [u for u in plan.gone if u in mstate.messages]
        if not gone:
            return
        await self.writer.remove(info, [mstate.messages[u].dest for u in gone])
        for uid in gone:
            self.gmail_copied.discard(mstate.messages.pop(uid).gmail_id or 0)
        self.summary.removed += len(gone)

    async def _copy_new(self, info: MailboxInfo, new: list[MessageMeta],
                        mstate: MailboxState) -> None:
        """Fetch batch k+1 from the source while batch k is written (the two overlap)."""
        todo = list(batches(sorted(new, key=lambda m: m.uid), self.options.batch_messages,
                            self.options.batch_bytes))
        if not todo:
            return
        ahead = asyncio.ensure_future(self._fetch(info, todo[0]))
        try:
            for index in range(len(todo)):
                messages = await ahead
                if index + 1 < len(todo):
                    ahead = asyncio.ensure_future(self._fetch(info, todo[index + 1]))
                await self._write_batch(info, messages, mstate)
        finally:
            if not ahead.done():
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, MigrateError):
                    await ahead

    async def _fetch(self, info: MailboxInfo, batch: list[MessageMeta]) -> list[Message]:
        messages = await self.source.fetch_messages([m.uid for m in batch])
        unanswered = sorted({m.uid for m in batch} - {m.meta.uid for m in messages})
        if unanswered:  # expunged meanwhile (fine: the next run sees it gone), or a failure
            for uid in await self.source.existing(unanswered):
                self.summary.failed.append(
                    f"{info.display_name} UID {uid}: the server sent no content")
        return messages

    async def _write_batch(self, info: MailboxInfo, messages: list[Message],
                           mstate: MailboxState) -> None:
        try:
            written = await self.writer.write(info, messages, mstate)
        except PartialWrite as exc:  # the server refused some: they are not retried
            written = exc.written
            self.summary.failed += [f"{info.display_name} UID {uid}: {why}"
                                    for uid, why in sorted(exc.failed.items())]
        except MigrateError:
            written = {}
            for message in messages:  # find the culprit, keep the rest
                try:
                    written.update(await self.writer.write(info, [message], mstate))
                except MigrateError as exc:
                    self.summary.failed.append(
                        f"{info.display_name} UID {message.meta.uid}: {exc}")
        for message in messages:
            if message.meta.uid in written:
                meta = message.meta
                mstate.record(meta.uid, meta.flags, written[meta.uid], meta.gmail_id)
                if meta.gmail_id is not None:
                    self.gmail_copied.add(meta.gmail_id)
                self.summary.copied += 1
                self.summary.bytes += len(message.body)
        self.progress.advance(len(written), sum(len(m.body) for m in messages
                                                if m.meta.uid in written))
        if self._crash_after is not None and self.summary.copied >= self._crash_after:
            os._exit(75)  # tests: die between writing and saving the state, the worst moment
        self.state.save(soon=True)

    def _write_uid_map(self) -> None:
        if self.options.uid_map is not None:
            self.state.write_uid_map(self.options.uid_map)

    def _print_plans(self, plans: list[Plan]) -> None:
        for plan in plans:
            name = plan.info.display_name
            reset = " (UIDVALIDITY changed: full copy)" if plan.reset else ""
            self.progress.note(f"{name}: would copy {len(plan.new)} messages "
                               f"({megabytes(plan.size)}){reset}, update flags of "
                               f"{len(plan.changed)}, remove {len(plan.gone)}")
            if plan.new:
                self.progress.note(f"  copy UIDs {uid_set([m.uid for m in plan.new])}")


def batches(metas: list[MessageMeta], count: int, size: int) -> Iterator[list[MessageMeta]]:
    """Runs of at most *count* messages and about *size* bytes (a bigger message goes alone)."""
    return sets.batches(metas, count, size, lambda meta: meta.size)
