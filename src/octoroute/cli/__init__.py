"""The `octoroute` command: a thin layer over the library (serve, check, route).

May import anything in the package; nothing imports it.
"""
