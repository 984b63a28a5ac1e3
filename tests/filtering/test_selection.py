"""Which chain and fixups a session gets; filtered variants kept in memory only."""

from __future__ import annotations

from imapproxy.config import Config, FilterRule, ListenerConfig
from imapproxy.filtering.content import MemoryVariants, variant_mailbox
from imapproxy.filtering.selection import FilterCatalog

MOBILE = ListenerConfig(port=1993, filters=("tag",), fixups=("uid-first",))
DESKTOP = ListenerConfig(port=1143)
RULES = (
    FilterRule(user="alice", client_name="K-9*", filters=("secret",)),
    FilterRule(user="bob*", fixups=("delay-newmail",)),
    FilterRule(listener="127.0.0.1:1143", client_name="thunderbird", fixups=("tb-lsub-flags",)),
)
CONFIG = Config(listeners=(MOBILE, DESKTOP), filter_rules=RULES,
                filter_settings={"tag": {"word": "M"}})


def test_listener_then_first_matching_rule() -> None:
    catalog = FilterCatalog(CONFIG)
    plain = catalog.select(MOBILE, "carol", {})
    assert plain.chain.names == ("tag",) and plain.fixups == {"uid-first"}
    assert catalog.select(MOBILE, "carol", {}).chain is plain.chain  # built once
    k9 = catalog.select(MOBILE, "Alice", {"name": "K-9 Mail"})
    assert k9.chain.names == ("secret",) and k9.fixups == {"uid-first"}
    assert catalog.select(MOBILE, "alice", {"name": "FairEmail"}).chain.names == ("tag",)
    bob = catalog.select(MOBILE, "bobby", {"name": "K-9"})
    assert bob.chain.names == ("tag",) and bob.fixups == {"delay-newmail"}
    assert not catalog.select(DESKTOP, "carol", {}).chain
    tb = catalog.select(DESKTOP, "carol", {"name": "Thunderbird"})
    assert tb.fixups == {"tb-lsub-flags"}
    assert catalog.select(MOBILE, "carol", {"name": "Thunderbird"}).fixups == {"uid-first"}


def test_settings_reach_the_filter() -> None:
    chain = FilterCatalog(CONFIG).select(MOBILE, "carol", {}).chain
    assert chain.filters[0].fingerprint() == "M"


def test_variant_mailbox_names_never_clash_with_real_ones() -> None:
    assert variant_mailbox(b"inbox", "abc") == b"INBOX\0filtered:abc"
    assert variant_mailbox(b"INBOX", "abc") != variant_mailbox(b"INBOX", "abd")


def test_memory_variants_are_bounded() -> None:
    memory = MemoryVariants(max_bytes=1000)
    for uid in range(1, 20):
        memory.put(("u", b"INBOX", 1, uid, "x"), b"x" * 100, b"s" * 10)
    assert memory.size <= 1000 and len(memory) == 9
    assert memory.get(("u", b"INBOX", 1, 1, "x")) is None
    assert memory.get(("u", b"INBOX", 1, 19, "x")) == (b"x" * 100, b"s" * 10)
    memory.put(("u", b"INBOX", 1, 99, "x"), b"y" * 300, b"")  # over a quarter: not kept
    assert memory.get(("u", b"INBOX", 1, 99, "x")) is None
