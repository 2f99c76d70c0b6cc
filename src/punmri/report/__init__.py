"""Reports: the Markdown/HTML run report and its figures, and the generalization document.

- :mod:`.markdown` writes a run's ``report.md`` and ``report.html`` (:func:`write_report`);
  :mod:`.html` converts it with embedded figure previews, :mod:`.figures` draws the figures,
  :mod:`.console` prints the end-of-run summary.
- :mod:`.regimes` (runs and statistics), :mod:`.regime_tables` (tables) and :mod:`.results_doc`
  (assembly) build ``docs/RESULTS.md`` from the study's finished runs.
"""

from .markdown import write_report

__all__ = ["write_report"]
