"""How a statistic is written on the report pages, shared by the sweep's ``report.md`` (``runner.sweep_report``)
and the HTML pages (``runner.html_report``, as the templates' ``stat`` filter), so that neither page module
imports the other and both write the same text for the same numbers.
"""

from __future__ import annotations

from typing import Any


def format_stat(stat: dict[str, Any], digits: int = 4, signed: bool = False) -> str:
    """``mean ± std`` of a ``{"mean", "std"}`` statistic (``runner.statistics.mean_std``) to ``digits`` decimals;
    the mean alone when there is no std, a dash when there is no mean; ``signed`` shows the mean's sign."""
    if stat["mean"] is None:
        return "–"
    mean = f"{stat['mean']:+.{digits}f}" if signed else f"{stat['mean']:.{digits}f}"
    return mean if stat["std"] is None else f"{mean} ± {stat['std']:.{digits}f}"
