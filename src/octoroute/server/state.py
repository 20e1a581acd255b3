"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from aiohttp import web

from octoroute.service import Gateway

GATEWAY = web.AppKey("gateway", Gateway)
REQUEST_ID = web.RequestKey("request_id", str)
