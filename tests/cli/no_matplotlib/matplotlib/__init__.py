"""Stands in for a missing matplotlib: put this directory first on PYTHONPATH."""

raise ImportError("No module named 'matplotlib'")
