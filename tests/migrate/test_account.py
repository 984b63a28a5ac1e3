"""The migration's IMAP account against the real Dovecot: subscriptions both ways (LSUB and
LIST-EXTENDED agree), the hierarchy separator, and name translation between separators."""

from __future__ import annotations

from imapproxy.migrate.account import ImapAccount
from imapproxy.migrate.endpoint import ImapEndpoint, parse_endpoint
from imapproxy.migrate.imap_dest import translate
from tests.conftest import Account
from tests.migrate.conftest import populate, url


async def test_subscriptions_via_lsub_and_list_extended_agree(account: Account) -> None:
    populate(account)
    endpoint = parse_endpoint(url(account), "--from")
    assert isinstance(endpoint, ImapEndpoint)
    imap = await ImapAccount.connect(endpoint, account.password)
    try:
        by_lsub = await imap.subscriptions()
        by_list = await imap.subscriptions(use_lsub=False)
        assert by_lsub == by_list and {"Archive/2024", "&AMk-t&AOk-"} <= by_lsub
        assert await imap.delimiter() == "/"
    finally:
        await imap.logout()


def test_names_follow_the_destination_separator() -> None:
    assert translate("INBOX.Sent.2024", ".", "/") == "INBOX/Sent/2024"
    assert translate("A/B", "/", "/") == "A/B"
    assert translate("Flat", None, "/") == "Flat"
