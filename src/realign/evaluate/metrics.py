"""The metric table's old name: it is :mod:`realign.metrics.table`, below the evaluation and the
report, which both read it. Code written against docs/extending.md's earlier "A metric" imports
these names from here."""

from ..metrics.table import METRICS, Headline, Metric, Outcomes, headlines, measure, pooled, value_at

__all__ = ["METRICS", "Headline", "Metric", "Outcomes", "headlines", "measure", "pooled", "value_at"]
