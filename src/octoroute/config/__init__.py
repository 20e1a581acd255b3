"""Configuration: the TOML schema, loading, cross-field checks, the resolved topology.

May import `octoroute.core` only.
"""

from octoroute.config.loader import load_config, parse_config
from octoroute.config.models import Config
from octoroute.config.topology import EndpointSpec, GroupSpec, ResolvedTimeouts, Topology, build_topology

__all__ = [
    "Config",
    "EndpointSpec",
    "GroupSpec",
    "ResolvedTimeouts",
    "Topology",
    "build_topology",
    "load_config",
    "parse_config",
]
