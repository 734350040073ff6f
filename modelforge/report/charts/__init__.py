"""Inline SVG charts for report.html, drawn in Python: no JavaScript, nothing fetched when the page is viewed.

One module per chart kind (histogram, line, scatter, bars) over the shared frame, ticks and colours in `axes`.
Every chart is an <svg data-chart="NAME"> whose marks carry data-series / data-value attributes, so tests
(and curious readers of the page source) can check what is drawn against report.json.
"""
