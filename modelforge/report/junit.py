"""JUnit XML of the gates, for CI systems that display test results (GitLab, Jenkins, Azure, GitHub actions
that read JUnit): one test case per gate (or compare tolerance); a failed gate is a <failure>, a run that
could not finish is an <error>. The summary metrics ride along as suite properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_junit_checks(
    suite: str,
    checks: list[dict[str, Any]],
    properties: dict[str, Any] | None = None,
    error: str | None = None,
    classname: str = "modelforge.run.gates",
    stdout: str | None = None,
) -> str:
    """`checks`: dicts with name, metric, threshold, value, passed (the shape of report.json's gates)."""
    failures = sum(1 for c in checks if not c["passed"])
    root = ET.Element("testsuites", name="modelforge")
    testsuite = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(checks) + (1 if error else 0)),
        failures=str(failures),
        errors=str(1 if error else 0),
        skipped="0",
        time="0",
    )
    root.set("tests", testsuite.get("tests"))
    root.set("failures", str(failures))
    root.set("errors", testsuite.get("errors"))
    if properties:
        props = ET.SubElement(testsuite, "properties")
        for key, value in properties.items():
            ET.SubElement(props, "property", name=str(key), value=_fmt(value))
    for check in checks:
        case = ET.SubElement(testsuite, "testcase", classname=classname, name=check["name"], time="0")
        text = f"{check.get('metric', check['name'])} = {_fmt(check['value'])}, threshold {_fmt(check['threshold'])}"
        if not check["passed"]:
            failure = ET.SubElement(case, "failure", message=text, type="GateFailed")
            failure.text = text
        else:
            ET.SubElement(case, "system-out").text = text
    if error:
        case = ET.SubElement(testsuite, "testcase", classname=classname, name="run", time="0")
        ET.SubElement(case, "error", message=error, type="RunError").text = error
    if stdout:
        ET.SubElement(testsuite, "system-out").text = stdout
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_junit(report: dict[str, Any]) -> str:
    """The gates of a pipeline report; summary metrics as properties."""
    properties = {"passed": report["passed"], **report.get("summary", {})}
    return render_junit_checks("modelforge gates", report.get("gates") or [], properties)


def render_junit_error(message: str, exit_code: int) -> str:
    """A run that ended without a report (bad input, failed pass): one errored test case."""
    return render_junit_checks("modelforge gates", [], {"exit_code": exit_code}, error=message)
