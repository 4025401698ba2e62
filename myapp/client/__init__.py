"""myapp's API client, for Python users and for the `myapp` command line.

from myapp.client import Client, ApiError

with Client("http://127.0.0.1:12000", token="…") as api:
    api.upload("sales.csv")
    rows = api.query("SELECT region, sum(amount) AS total FROM sales GROUP BY ALL")
"""

from .core import DEFAULT_URL, Client, Result, SavedQuery
from .errors import ApiError, ApiUnavailable

__all__ = ["DEFAULT_URL", "ApiError", "ApiUnavailable", "Client", "Result", "SavedQuery"]
