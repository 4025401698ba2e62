"""The backend role: FastAPI over DuckDB. Only its store/ and lake/ import duckdb."""
