"""octoroute: one fast HTTP gateway in front of a fleet of self-hosted LLM servers."""

__version__ = "0.1.0"
