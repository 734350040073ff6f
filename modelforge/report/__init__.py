"""report.json (versioned schema) and its renderings: Markdown for people, a rich table for terminals."""

from modelforge.report.build import REPORT_SCHEMA_VERSION, build_report

__all__ = ["REPORT_SCHEMA_VERSION", "build_report"]
