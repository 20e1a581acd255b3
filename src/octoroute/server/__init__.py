"""HTTP ingress: the aiohttp app factory, handlers per API, middlewares and
error rendering in the caller's API shape.

May import `octoroute.service` and everything below it; nothing imports this
package except `octoroute.cli`.
"""

from octoroute.server.app import create_app

__all__ = ["create_app"]
