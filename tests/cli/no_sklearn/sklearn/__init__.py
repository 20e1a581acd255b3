"""Stands in for a missing scikit-learn: put this directory first on PYTHONPATH."""

raise ImportError("No module named 'sklearn'", name="sklearn")
