"""The export section of report.html: what was written for which target, and the Triton batch sweep with its
memory column (the table `--memory-budget` picks max_batch_size from).

Kept apart from html.py (already the largest module): html.py only calls `export_section(report)`.
"""

from __future__ import annotations

from html import escape
from typing import Any

from modelforge.report.format import fmt_value


def _rows(pairs: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(fmt_value(v))}</td></tr>" for k, v in pairs if v is not None)
    return f"<table><tbody>{body}</tbody></table>"


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f}"


def sweep_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("Batch", "p50 ms", "p99 ms", "Samples/s", "Peak memory MiB", "Fits"))
    body = "".join(
        f'<tr data-batch="{r["batch_size"]}"><td>{r["batch_size"]}</td><td>{r["p50_ms"]:.3f}</td>'
        f"<td>{r['p99_ms']:.3f}</td><td>{r['throughput_per_s']:.1f}</td>"
        f"<td>{_mib(r.get('peak_memory_bytes'))}</td>"
        f"<td>{'yes' if r.get('within_budget') else 'no'}</td></tr>"
        for r in rows
    )
    return f'<table data-table="batch-sweep"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def export_section(report: dict[str, Any]) -> str:
    stages = [s for s in report.get("stages") or [] if s.get("pass") == "export"]
    if not stages:
        return ""
    html = ['<section id="export"><h2>Export</h2>']
    for stage in stages:
        m = stage.get("metrics") or {}
        triton, jetson, trt = m.get("triton"), m.get("jetson"), m.get("tensorrt")
        if triton:
            batching = triton.get("dynamic_batching") or {}
            runtime = triton.get("sweep_runtime") or {}
            html.append(
                _rows(
                    [
                        ("Triton model", f"{triton['name']} version {triton['version']}"),
                        ("max_batch_size", triton.get("max_batch_size")),
                        ("preferred_batch_size", batching.get("preferred_batch_sizes")),
                        ("max_queue_delay_microseconds", batching.get("max_queue_delay_microseconds")),
                        ("Memory budget (MiB)", (batching.get("memory_budget_bytes") or 0) / 2**20 or None),
                        ("Sweep measured on", ", ".join(f"{k} {v}" for k, v in runtime.items()) or None),
                    ]
                )
            )
            html.append(sweep_table(triton.get("sweep") or []))
        if jetson:
            html.append(
                _rows(
                    [
                        ("Jetson", f"JetPack {jetson['jetpack']} (TensorRT {jetson['tensorrt_version']})"),
                        ("Precision", jetson.get("precision")),
                        ("INT8", jetson.get("int8")),
                        ("Calibration cache tensors", jetson.get("calibration_cache_tensors")),
                        ("trtexec", " ".join(jetson.get("trtexec") or [])),
                    ]
                )
            )
        if trt:
            compared = m.get("engine_vs_onnx") or {}
            html.append(_rows([*[(f"TensorRT {k}", v) for k, v in trt.items()], *compared.items()]))
    html.append("</section>")
    return "".join(html)
