"""report.html: one self-contained page for a select run, pipeline run or experiment."""
