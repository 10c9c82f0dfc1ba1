"""Stage 8, report: results.json against its schema, figures, report.html and summary.md."""
