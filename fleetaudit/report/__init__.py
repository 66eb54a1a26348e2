"""Reports: Arrow schemas, the atomic run directory writer, the manifest and summaries."""
