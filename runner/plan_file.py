"""The records of a platform round's plan (``actions/round_NNN.json``), whatever the platform.

A record is ``{data_hash, title, stage, action, value, rank, status, error}`` (an ``issue`` also carries
``issue_tags``); ``status`` is ``planned``, ``applied`` or ``failed``. Tag records (``tag``, ``untag``) are kept
in the run store by the runner; every other action is the platform's to apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LOCAL_ACTIONS = ("tag", "untag")


def is_local(record: dict[str, Any]) -> bool:
    return record["action"] in LOCAL_ACTIONS


def counts(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """``{action: {status: count}}``."""
    out: dict[str, dict[str, int]] = {}
    for record in records:
        per = out.setdefault(record["action"], {})
        per[record["status"]] = per.get(record["status"], 0) + 1
    return out


def describe(records: Sequence[dict[str, Any]], show: int = 10) -> list[str]:
    """Lines for the console: counts per action, then the first ``show`` records of each action."""
    lines = []
    for action, per in counts(records).items():
        total = sum(per.values())
        status = ", ".join(f"{k} {v}" for k, v in sorted(per.items()))
        lines.append(f"{action:<9} {total:>6} ({status})")
        for record in [r for r in records if r["action"] == action][:show]:
            shown = "" if record["value"] is None else str(record["value"])
            value = "" if not shown else f" -> {shown if len(shown) <= 72 else shown[:71] + '…'}"
            rank = "" if record["rank"] is None else f"#{record['rank']} "
            where = f"[{record['data_hash'][:8]}] in {record['stage']}"
            lines.append(f"    {rank}{record['title']} {where}{value}")
    return lines or ["nothing to do"]
