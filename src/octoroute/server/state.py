"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from octoroute.core.state import StateStore
from octoroute.fleet.clientkeys import ClientKey
from octoroute.observe.observer import RequestTrace
from octoroute.server.live import Live
from octoroute.server.responses_store import Responses

LIVE = web.AppKey("live", Live)  # `.gateway`: the running config; read once per request
REQUEST_ID = web.RequestKey("request_id", str)
TRACE = web.RequestKey("trace", RequestTrace)
DASHBOARD = web.AppKey("dashboard", bytes)
CLIENT = web.RequestKey("client", ClientKey)  # the [auth] key a request came with
RESPONSES = web.AppKey("responses", Responses)  # recent Responses API answers (previous_response_id)
STATE: web.AppKey[StateStore] = web.AppKey("state")  # the [state] store (closed with the app)
# What may refuse a request from its head before its body is asked for (`100 Continue`):
# each raises the refusal (server.protocol.ContinueOnRead); set only when there is one.
HeadCheck = Callable[[web.Request], Awaitable[None]]
BEFORE_CONTINUE: web.AppKey[tuple[HeadCheck, ...]] = web.AppKey("before_continue")
