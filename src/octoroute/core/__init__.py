"""Core domain: tiers, hints, routing decisions, the error tree.

Imports the standard library only.
"""
