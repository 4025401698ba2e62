"""The backend role: FastAPI over DuckDB. The only package that imports duckdb."""
