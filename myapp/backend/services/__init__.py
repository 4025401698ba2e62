"""Services: the rules of each resource, its audit lines and its transactions.

Routes (and the CLI on a stopped backend's database file) call a service; the service checks
the rules, makes the change through the store (which holds the SQL) and writes the audit line
in the same transaction as the change, so every way of making a change makes it the same way.

- accounts.py: accounts, passwords, sign-in and sign-out.
- tokens.py: API tokens.
- datasets.py: renaming, deleting and loading datasets.
- saved_queries.py: saved queries and their versions.
- dashboards.py: dashboards and their versions; shares.py: share links.
- backups.py: writing a backup.
- versions.py: what saved queries and dashboards share: saving in numbered versions.
"""
