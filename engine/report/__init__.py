"""Reports for the bureau: the programme summary and the page an official reads.

In: decision records (as written) and the registry. Out: counts per list and route, by
industry and district, land freed, progress against the programme's targets (summary.py),
and one self-contained HTML page (html.py).
"""

from engine.report.html import render_html, worst_offenders
from engine.report.summary import LAND_ACTIONS, LISTS, programme_report, report_text

__all__ = ["LAND_ACTIONS", "LISTS", "programme_report", "render_html", "report_text", "worst_offenders"]
