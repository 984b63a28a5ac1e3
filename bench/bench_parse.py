"""Micro-benchmark: CPU cost of parse_response on a realistic mix of upstream answers.

    python bench/bench_parse.py                 # default: 200 rounds
    python bench/bench_parse.py --rounds 50

The mix: a 50-line FETCH answer (UID, RFC822.SIZE, varying FLAGS, INTERNALDATE, MODSEQ), a
SELECT answer, an ESEARCH ALL of 2000 UIDs and 3 ``BODY[] {5000}`` answers. Each group is
parsed with the current TokenReader and with the reference (pre-rewrite) reader from
tests/protocol/reference_tokens.py, loaded by path and swapped into response.py; the results
are checked to be equal. Prints microseconds per line (best of ``--repeat``) and the ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imapproxy.protocol import response as response_module
from imapproxy.protocol.response import Response, parse_response

FLAG_SETS = [b"\\Seen $Forwarded", b"", b"\\Seen", b"\\Answered \\Seen $Label1 NonJunk",
             b"\\Flagged \\Seen \\Draft", b"$MDNSent \\Seen Junk"]


def load_reference() -> ModuleType:
    path = ROOT / "tests" / "protocol" / "reference_tokens.py"
    spec = importlib.util.spec_from_file_location("reference_tokens", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workload() -> dict[str, list[bytes]]:
    fetch = [b"* %d FETCH (UID %d RFC822.SIZE %d FLAGS (%s) INTERNALDATE "
             b'"17-Jul-1996 02:44:25 -0700" MODSEQ (%d))\r\n'
             % (i + 1, 4711 + i, 23456 + 37 * i, FLAG_SETS[i % len(FLAG_SETS)], 12345 + i)
             for i in range(50)]
    select = [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $MDNSent)\r\n",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags\r\n",
        b"* 2000 EXISTS\r\n",
        b"* 0 RECENT\r\n",
        b"* OK [UNSEEN 17] First unseen.\r\n",
        b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n",
        b"* OK [UIDNEXT 6712] Predicted next UID\r\n",
        b"* OK [HIGHESTMODSEQ 99812] Highest\r\n",
        b"A0003 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n",
    ]
    esearch = [b'* ESEARCH (TAG "A0004") UID ALL '
               + b",".join(b"%d" % u for u in range(4711, 6711)) + b"\r\n",
               b"* SEARCH " + b" ".join(b"%d" % u for u in range(4711, 6711)) + b"\r\n"]
    body = b"From: a@example.org\r\nSubject: hi\r\n\r\n" + b"x" * 4962 + b"\r\n"
    assert len(body) == 5000
    literals = [b"* %d FETCH (UID %d BODY[] {5000}\r\n" % (i, 4711 + i) + body + b")\r\n"
                for i in (1, 2, 3)]
    return {"fetch": fetch, "select": select, "esearch": esearch, "body[]": literals}


def best_time(lines: list[bytes], rounds: int, repeat: int) -> float:
    """Seconds per line, best of ``repeat`` runs of ``rounds`` passes over ``lines``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(rounds):
            for line in lines:
                parse_response(line)
        best = min(best, time.perf_counter() - start)
    return best / (rounds * len(lines))


def with_reader(reader: type, action: Callable[[], float]) -> float:
    saved = response_module.TokenReader
    response_module.TokenReader = reader  # type: ignore[misc]
    try:
        return action()
    finally:
        response_module.TokenReader = saved  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="passes per timing (max 10000)")
    parser.add_argument("--repeat", type=int, default=5, help="timings, best kept (max 50)")
    args = parser.parse_args()
    rounds, repeat = min(max(args.rounds, 1), 10000), min(max(args.repeat, 1), 50)
    reference = load_reference().TokenReader
    groups = workload()
    everything = [line for lines in groups.values() for line in lines]
    groups["all"] = everything

    new_results: list[Response] = [parse_response(line) for line in everything]
    old_results = with_reader(reference, lambda: [parse_response(x) for x in everything])  # type: ignore[arg-type, return-value]
    assert new_results == old_results, "new reader disagrees with the reference"

    print(f"{'group':<8} {'lines':>5} {'reference µs/line':>18} {'new µs/line':>12} {'speedup':>8}")
    for name, lines in groups.items():
        old = with_reader(reference, lambda lines=lines: best_time(lines, rounds, repeat))
        new = best_time(lines, rounds, repeat)
        print(f"{name:<8} {len(lines):>5} {old * 1e6:>18.2f} {new * 1e6:>12.2f} {old / new:>7.2f}x")


if __name__ == "__main__":
    main()
