"""The reproduction harness for the paper's tables (methods × syntheses × seeds)."""

from ppad.bench.harness import ABLATIONS, METRICS, Cell, markdown_table, plan, run_bench, summarize

__all__ = ["ABLATIONS", "METRICS", "Cell", "markdown_table", "plan", "run_bench", "summarize"]
