"""HTTP ingress: the aiohttp app factory, handlers per API, middlewares and
error rendering in the caller's API shape.

May import `octoroute.service` and everything below it; nothing imports this
package except `octoroute.cli`.
"""

from octoroute.server.app import create_app
from octoroute.server.protocol import GatewayRunner

__all__ = ["GatewayRunner", "create_app"]
