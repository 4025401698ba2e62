"""The lake mode: datasets in a DuckLake, shared state in PostgreSQL (docs/deployment/lake.md)."""
