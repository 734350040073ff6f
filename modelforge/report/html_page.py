"""The page around report.html's sections: one stylesheet, inline, and the HTML skeleton (no scripts, nothing
fetched when the page is viewed)."""

from __future__ import annotations

from html import escape

CSS = """
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --bg:#f8fafc; --card:#fff; --pass:#15803d;
  --pass-bg:#dcfce7; --fail:#b91c1c; --fail-bg:#fee2e2; --accent:#4f46e5; --base:#64748b; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 28px 48px; }
header { display:flex; justify-content:space-between; align-items:flex-start; gap:24px; margin-bottom:18px; }
h1 { font-size:24px; margin:0 0 4px; letter-spacing:-0.01em; }
h2 { font-size:17px; margin:0 0 12px; }
h3 { font-size:14px; margin:16px 0 8px; color:var(--muted); font-weight:600; }
.sub { color:var(--muted); margin:0; }
code { font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; background:#f1f5f9; padding:1px 5px;
  border-radius:4px; word-break:break-all; }
.badge { font-weight:700; letter-spacing:0.06em; padding:8px 16px; border-radius:999px; font-size:15px;
  white-space:nowrap; }
.badge.pass { color:var(--pass); background:var(--pass-bg); border:1px solid #86efac; }
.badge.fail { color:var(--fail); background:var(--fail-bg); border:1px solid #fca5a5; }
.kpis { display:grid; grid-template-columns:repeat(4,1fr); gap:14px; margin:0 0 18px; }
.kpi { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:14px 16px; }
.kpi .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:0.05em; }
.kpi .value { font-size:24px; font-weight:650; margin-top:2px; font-variant-numeric:tabular-nums; }
.kpi .delta { font-size:12.5px; color:var(--muted); }
.good { color:var(--pass) !important; } .bad { color:var(--fail) !important; }
section { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:18px 20px;
  margin:0 0 16px; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:18px; align-items:start; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:right; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th:first-child, td:first-child { text-align:left; }
th { font-size:12px; color:var(--muted); font-weight:600; text-transform:uppercase; letter-spacing:0.04em; }
tbody tr:hover { background:#f8fafc; }
td.left, th.left { text-align:left; }
.pill { display:inline-block; font-size:11.5px; font-weight:700; padding:2px 9px; border-radius:999px; }
.pill.pass { color:var(--pass); background:var(--pass-bg); }
.pill.fail { color:var(--fail); background:var(--fail-bg); }
.pill.info { color:#334155; background:#f1f5f9; font-weight:600; }
.pill.hot { color:#3730a3; background:#e0e7ff; }
.note { color:var(--muted); font-size:12.5px; margin:8px 0 0; }
.swatch { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; vertical-align:0; }
svg.chart { width:100%; height:auto; display:block; }
svg.chart text { font-family:inherit; fill:#475569; }
svg.chart .chart-title { font-size:13px; font-weight:650; fill:#0f172a; }
svg.chart .tick { font-size:10.5px; } svg.chart .axis-label { font-size:11px; fill:#64748b; }
svg.chart .legend { font-size:11px; } svg.chart .marker-label { font-size:10.5px; font-weight:600; }
svg.chart .point-label { font-size:12px; font-weight:650; fill:#0f172a; } svg.chart .point-sub { font-size:10.5px; }
svg.chart .bar-value { font-size:11px; } svg.chart .note-text { font-size:10.5px; font-style:italic; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:4px 18px; margin:0; }
dl.kv dt { color:var(--muted); } dl.kv dd { margin:0; }
details summary { cursor:pointer; font-weight:600; }
td.details { max-width:760px; } .kv { display:inline-block; margin:0 14px 4px 0; white-space:nowrap; }
details.detail { display:inline-block; vertical-align:top; margin:0 14px 4px 0; }
details.detail summary { font-weight:400; } details.detail pre { max-height:320px; margin:6px 0; }
svg.chart .marker-label, svg.chart .point-label, svg.chart .point-sub, svg.chart .note-text {
  paint-order:stroke; stroke:#fff; stroke-width:3px; stroke-linejoin:round; }
pre { background:#0f172a; color:#e2e8f0; padding:14px; border-radius:8px; overflow:auto; font-size:12px; }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:24px; }
@media (max-width: 900px) { .grid2 { grid-template-columns:1fr; } .kpis { grid-template-columns:1fr 1fr; } }
@media print { body { background:#fff; } section { break-inside:avoid; } }
"""


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
