"""Reports for the bureau: the programme summary, the page an official reads, the notices.

In: decision and finding records (as written), the registry, the event log. Out: counts per list
and route, by industry and district, land (parcels idle, commitments, recovered, freed, per
district), progress against the programme's targets (summary.py); what a page is made of (data.py); one self-contained HTML page in Chinese or
English (html.py, with charts.py and the embedded font of fonts.py); text for the command line
(text.py); rectification notices as PDF (notice.py).
"""

from engine.report.data import ReportData, RuleInfo, collect, from_records, rule_infos, summary_of
from engine.report.html import render_html
from engine.report.summary import LAND_ACTIONS, LISTS, programme_report, report_text

__all__ = ["LAND_ACTIONS", "LISTS", "ReportData", "RuleInfo", "collect", "from_records", "programme_report",
           "render_html", "report_text", "rule_infos", "summary_of"]
