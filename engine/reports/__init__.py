"""Registration statistics: reports with charts (HTML, CSV, JSON) and data-quality checks, built
from the operations event log (``engine.events``) and the store's current state."""

from engine.reports.build import Report, ReportPeriod, build_report
from engine.reports.quality import QualityCheck, data_quality
from engine.reports.render import render_html, report_files, write_files, write_report

__all__ = ["QualityCheck", "Report", "ReportPeriod", "build_report", "data_quality", "render_html",
           "report_files", "write_files", "write_report"]
