"""mtalens' effectful shell: reading, tailing, the DuckDB store, classification, reports, CLI."""
