"""Checks a sync run's operation history against the final central and local states.

The properties (issue 7): no acknowledged write lost, no duplicate, monotonic reads, every desk
converges. An acknowledged write is one logged ``ok`` (its local commit returned). An amendment
that lost a race is not lost when it is preserved in that desk's conflict records.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any


@dataclass
class CheckReport:
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    non_monotonic: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    conflicts: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexplained or self.non_monotonic
                    or self.diverged)  # fmt: skip

    def summary(self) -> str:
        return (f"acknowledged {self.acknowledged}, lost {len(self.lost)}, duplicated "
                f"{len(self.duplicated)}, unexplained {len(self.unexplained)}, non-monotonic "
                f"{len(self.non_monotonic)}, diverged {len(self.diverged)}, conflicts "
                f"{self.conflicts}")  # fmt: skip


def read_history(paths: Iterable[Path]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            # a line torn by SIGKILL is skipped: its op stays "invoked", never "ok"
            with contextlib.suppress(json.JSONDecodeError):
                if line.strip():
                    out.append(json.loads(line))
    return out


def central_state(desk: Any) -> dict[tuple[str, int], tuple[str, str]]:
    """(trade_uuid hex, version) -> (price as text, book) in the central database."""
    with desk.admin() as c:
        rows = c.execute(
            "SELECT t.trade_uuid, t.version, t.price, b.name FROM trade t "
            "JOIN book b ON b.id = t.book_id"
        ).fetchall()
    return {(u.hex, v): (_price(p), b) for u, v, p, b in rows}


def local_state(store_path: Path) -> tuple[dict[tuple[str, int], tuple[str, str]], list[dict]]:
    """The same view of one workstation's store, plus its conflict records' local payloads."""
    con = sqlite3.connect(store_path)
    try:
        rows = con.execute(
            "SELECT t.trade_uuid, t.version, t.price, b.name FROM trade t "
            "JOIN book b ON b.id = t.book_id WHERE NOT b.is_demo"
        ).fetchall()
        conflicts = [json.loads(r[0]) for r in
                     con.execute("SELECT local_payload FROM sync_conflict").fetchall()]  # fmt: skip
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    return {(u, v): (_price(p), b) for u, v, p, b in rows}, conflicts


def _price(scaled: int) -> str:
    return f"{Decimal(int(scaled)).scaleb(-6).normalize():f}"


def _norm(price: str) -> str:
    return f"{Decimal(price).normalize():f}"


def check(
    history: list[dict[str, Any]],
    desk: Any,
    stores: dict[str, Path],
    readable: dict[str, set[str]],
) -> CheckReport:
    """``stores``: desk user -> store path; ``readable``: desk user -> books it can read."""
    rep = CheckReport()
    central = central_state(desk)
    locals_ = {u: local_state(p) for u, p in stores.items()}
    invoked: Counter[tuple[str, str]] = Counter()
    for h in history:
        if h.get("phase") == "invoke":
            invoked[(h["op"], h["id"])] += 1
    for h in history:
        if h.get("phase") != "ok":
            continue
        rep.acknowledged += 1
        key = (h["id"], int(h["version"]))
        got = central.get(key)
        if got is not None and got[0] == _norm(h["price"]):
            continue
        if h["op"] == "amend":
            # lost the race: it must be preserved in that desk's conflict records
            kept = [c for c in locals_[h["desk"]][1]
                    if c["trade_uuid"] == h["id"] and _price(c["price"]) == _norm(h["price"])]  # fmt: skip
            if kept:
                continue
        rep.lost.append(f"{h['desk']} {h['op']} {h['id'][:8]} v{h['version']} @ {h['price']}: "
                        f"central has {got}")  # fmt: skip
    # duplicates: a capture is version 1 only once (the constraint) and each trade's versions
    # must be explained by invoked operations
    versions: defaultdict[str, list[int]] = defaultdict(list)
    for tid, v in central:
        versions[tid].append(v)
    captured = {tid for (op, tid) in invoked if op == "capture"}
    amended = Counter({tid: n for (op, tid), n in invoked.items() if op == "amend"})
    for tid, vs in versions.items():
        if tid not in captured and tid not in amended:
            rep.unexplained.append(f"{tid[:8]}: in the desk database but never booked")
        elif len(vs) - 1 > amended.get(tid, 0):
            rep.duplicated.append(f"{tid[:8]}: {len(vs)} versions for {amended.get(tid, 0)} "
                                  "amendments")  # fmt: skip
        if sorted(vs) != list(range(1, len(vs) + 1)):
            rep.duplicated.append(f"{tid[:8]}: versions {sorted(vs)}")
    # monotonic reads, per desk, in log order
    last: dict[str, int] = {}
    for h in history:
        if h.get("phase") == "read":
            d = h["desk"]
            if h.get("rewinds"):
                last[d] = h["checkpoint"]
                continue
            if h["checkpoint"] < last.get(d, 0):
                rep.non_monotonic.append(f"{d}: checkpoint {h['checkpoint']} after {last[d]}")
            last[d] = h["checkpoint"]
    # convergence
    for user, (state, conflicts) in locals_.items():
        rep.conflicts += len(conflicts)
        want = {k: v for k, v in central.items() if v[1] in readable[user]}
        have = {k: v for k, v in state.items() if v[1] in readable[user]}
        if want != have:
            missing = sorted(set(want) - set(have))[:3]
            extra = sorted(set(have) - set(want))[:3]
            differ = [k for k in set(want) & set(have) if want[k] != have[k]][:3]
            rep.diverged.append(f"{user}: missing {missing}, extra {extra}, differ {differ}")
    return rep
