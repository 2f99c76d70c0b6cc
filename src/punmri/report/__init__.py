"""Reports: Markdown/HTML run reports and their figures."""

from .markdown import write_report

__all__ = ["write_report"]
