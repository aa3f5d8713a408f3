"""The round, written once: train -> audit -> evaluate -> stop? -> score -> select -> label, for every mode.

What differs between simulation and a labelling platform is the labeller the driver is given
(``runner.labellers``): how the store is brought up to date first (an import, or a pull), what it measures of a
round, how a selection gets its labels (at once by simulated annotators, or through a plan a platform applies),
and whether the invocation goes on to the next round. Every stage runs through :meth:`Session.stage`, so a killed
run resumes where it stopped; the stop policy is ``runner.stopping``'s, for every mode.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from runner import artifacts
from runner.labellers import Labeller
from runner.session import Session
from runner.stopping import POOL_EXHAUSTED, SAID, stop_reason
from runner.store import GLOBAL_ROUND

log = logging.getLogger("runner")


def run_rounds(session: Session, labeller: Labeller) -> dict[str, Any]:
    """Every round this invocation has to run, then the run directory's files; the summary."""
    store = session.store
    # Said before any work, so a person who stops the run early still knows where its files are.
    log.info(where_line(session, finished=False))
    first = labeller.start(session)
    # Where items can join between invocations, their embeddings and metrics belong to the round.
    session.embed_and_measure(first if labeller.items_change else GLOBAL_ROUND)
    session.draw_stop_set()
    evaluated = [r["round"] for r in store.rounds()]
    if evaluated and not store.is_done(GLOBAL_ROUND, "finish"):
        log.info(f"resuming {session.run_dir} after round {max(evaluated)}")
    round_ = first
    while True:
        started = time.perf_counter()
        fresh = not closed(session, round_)
        session.train(round_)
        session.audit(round_)
        session.evaluate(round_, lambda r: labeller.round_figures(session, r))
        # A round whose selection is recorded was not stopped when it was made; it is not asked again.
        stopped = None if store.is_done(round_, "select") else stop_here(session, round_)
        if stopped is None:
            session.score_and_select(round_)
        rows = artifacts.write_metrics_jsonl(store, session.run_dir)
        if fresh:
            row = next(r for r in rows if r["round"] == round_)
            log.info(progress_line(row, session.parts.loop.rounds, time.perf_counter() - started))
        if stopped is not None:
            log.info(stop_line(stopped, round_))
            break
        stopped = labeller.label(session, round_)
        if stopped is not None:
            break
        round_ += 1
    summary = session.finish(stopped, **labeller.summary(session, stopped))
    labeller.conclude(session, summary)
    log.info(where_line(session, finished=True))
    return summary


def where_line(session: Session, *, finished: bool) -> str:
    """The console's line on where the run's files are: at the start, where they will be; at the end, where
    they are (the report only when ``report.write`` is on)."""
    run_dir = session.run_dir
    if not session.parts.report.write:
        report = "none (report.write=false)"
    else:
        report = str(run_dir / "report.html") + ("" if finished else " (written when the run ends)")
    return f"{'done' if finished else 'run'}: directory {run_dir} | report {report}"


def stop_line(reason: str, round_: int) -> str:
    """The console's line on why the rounds ended; an empty pool is said first in plain words, since that is
    the stop a person does not expect from the settings alone."""
    if reason == POOL_EXHAUSTED:
        return f"pool exhausted at round {round_}: {SAID[reason]}"
    return f"stopped after round {round_}: {SAID[reason]}"


def stop_here(session: Session, round_: int) -> str | None:
    """Why the rounds end after evaluating ``round_`` (see ``runner.stopping``), or None."""
    return stop_reason(session.parts.loop, session.store.rounds(), round_, lambda: len(session.screened(round_)[0]))


def closed(session: Session, round_: int) -> bool:
    """Whether an earlier invocation saw ``round_`` through (labelled, or stopped after its evaluation)."""
    store = session.store
    if store.is_done(round_, "act"):
        return True
    return store.is_done(round_, "evaluate") and not store.is_done(round_, "select") and (
        stop_here(session, round_) is not None
    )


def progress_line(row: dict[str, Any], total_rounds: int, seconds: float) -> str:
    """The console's one line per round: labelled count, test accuracy, the round's seconds, and where the
    labeller measured them, the labelled test items and the candidates left after filters."""
    accuracy = "n/a   " if row["test_accuracy"] is None else f"{row['test_accuracy']:.4f}"
    line = (f"round {row['round']:>3}/{total_rounds} | labelled {row['n_labeled']:>6} | "
            f"test accuracy {accuracy} | {seconds:6.2f} s")
    if "n_test_labeled" in row:
        line += f" | {row['n_test_labeled']} labelled test items"
    if "n_candidates" in row:
        line += f" | candidates {row['n_candidates']}"
    return line
