"""User SQL: the gate (gate.py, functions.py), its errors (errors.py), the runs registry
(runs.py), the worker processes that execute it (workers.py, worker.py), and what runs there
(execute.py: results, checks, exports; charts.py).

Kept free of imports: the worker program imports this package and should start fast.
"""
