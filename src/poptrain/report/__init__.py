"""Readers that draw: figures of a run, the static HTML report (and, later, the live dashboard)."""

from .figures import lineage_tree_figure, pareto_figure, schedules_figure, scores_figure, winning_lineage_figure
from .html import write_report

__all__ = ["lineage_tree_figure", "pareto_figure", "schedules_figure", "scores_figure", "winning_lineage_figure", "write_report"]
