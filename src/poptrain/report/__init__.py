"""Readers that draw: figures of a run (one list, `CHARTS`), the static HTML report and the live dashboard."""

from .figures import CHARTS, lineage_tree_figure, pareto_figure, schedules_figure, scores_figure, winning_lineage_figure
from .html import write_report

__all__ = ["CHARTS", "lineage_tree_figure", "pareto_figure", "schedules_figure", "scores_figure",
           "winning_lineage_figure", "write_report"]
