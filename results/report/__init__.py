"""The listen-queue loss report: make_report.py renders data/<release>.json."""
