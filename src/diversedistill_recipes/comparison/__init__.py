"""The comparison tables of both domains: per-cell search on validation, the tables and
claims, result rows and their summaries, the importance-gating sweep."""
