"""Observability: logging setup and the one structured line per request.

Fields come from enums, config names, ids and numbers: never prompt or
completion text. May import `octoroute.core` only.
"""
