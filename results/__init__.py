"""The formats of what reuseport-check writes: results.schemas (a JSON Schema per document,
and validate()) and results.report (make_report.py, which renders the report's data).

The source tree is the one import root (pytest.ini: pythonpath = .).
"""
