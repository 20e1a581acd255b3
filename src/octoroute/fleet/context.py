"""Context windows: how big each endpoint's is, and whether a request fits.

Pure state, no I/O. `ContextBook` keeps one window per endpoint from, in the
order they win: the endpoint's `context_window` in config; what its server said
(`upstream.discovery` at startup and on health probes, or the sizes in a
context-overflow error it sent); the capability table. It also keeps each
server's `ServerFacts` (the discovered `total_slots` among them) for anyone who
needs them.

`ContextGate` is one request's view: its estimated size, which endpoints it may
still use, and what it learned from overflow errors. The attempt plan asks
`allows(endpoint_id)` together with health, so endpoints that cannot hold the
request are skipped like unhealthy ones.

The estimate (`estimate_prompt_tokens`) is deliberately not padded: text
characters / 4 (as `routing.features` counts), except that characters of
three or more UTF-8 bytes (CJK, kana, hangul, symbols, emoji) count one token
each (tokenizers spend about a token or more per such character, so /4 would
send a 30,000-token Chinese prompt to an 8K server), plus 4 tokens per message
for the chat template. For English and
code this tends to undercount, which errs toward trying an endpoint: a wrong
guess costs one fast 400 from the server, which the gateway then escalates with
the server's exact count, while an overcount would refuse requests that fit.

    book = ContextBook(topology.endpoints.values(), lambda name: registry.lookup(name).context_window)
    gate = ContextGate(book, candidates, estimate_prompt_tokens(body), requested_output(body))
    plan = AttemptPlan(chain, selectors, lambda i: healthy(i) and gate.allows(i), retry, rng)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from octoroute.config.topology import EndpointSpec
from octoroute.core.errors import ContextTooLarge
from octoroute.core.facts import FactSource, ServerFacts, WindowSource

CHARS_PER_TOKEN: Final = 4
TOKENS_PER_MESSAGE: Final = 4  # role markers and separators of the chat template
DEFAULT_OUTPUT_TOKENS: Final = 1024  # neither the request nor the endpoint sets max_tokens
MIN_OUTPUT_TOKENS: Final = 256  # room left for an answer when the requested output fits nowhere
_HIGH_BYTES: Final = bytes(range(128, 256))
_BINARY_PARTS: Final = frozenset({"image_url", "input_image", "input_audio", "file", "input_file"})


def _text_tokens(text: str) -> int:
    if text.isascii():
        return -(-len(text) // CHARS_PER_TOKEN)
    # Characters of three or four UTF-8 bytes (CJK, kana, hangul, most other scripts past
    # U+0800, symbols, emoji) count a token each; with n characters, a of them ASCII and b
    # bytes, that is b - 2n + a (four-byte ones count twice): one encode and one translate,
    # both in C, where a per-character regex cost ~13 ns a character.
    chars = len(text)
    encoded = text.encode("utf-8", "surrogatepass")
    ascii_chars = len(encoded.translate(None, _HIGH_BYTES))
    wide = len(encoded) - 2 * chars + ascii_chars
    return wide + -(-(chars - wide) // CHARS_PER_TOKEN)


def _count_tokens(value: object) -> int:
    """Tokens of every string inside `value` (keys excluded), skipping binary parts."""
    tokens = 0
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            tokens += _text_tokens(item)
        elif isinstance(item, dict):
            kind = item.get("type")  # in a JSON schema, a property named "type" holds an object
            if not isinstance(kind, str) or kind not in _BINARY_PARTS:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return tokens


def estimate_prompt_tokens(body: Mapping[str, object]) -> int:
    """Estimated prompt tokens of an OpenAI chat body: messages and tool definitions."""
    messages = body.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    return _count_tokens(messages) + _count_tokens(body.get("tools")) + TOKENS_PER_MESSAGE * count


def requested_output(body: Mapping[str, object]) -> int | None:
    """The output the client asked for (`max_completion_tokens`, else `max_tokens`), if any."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


@dataclass(frozen=True, slots=True)
class Window:
    tokens: int | None  # None: unknown (no config, discovery or table entry)
    source: WindowSource
    told_by: FactSource | None = None  # who said it, for a discovered window


class ContextBook:
    """Every endpoint's context window and the facts its server reported."""

    __slots__ = ("_config", "_facts", "_learned", "_same_server", "_silent", "_table", "version")

    def __init__(self, endpoints: Iterable[EndpointSpec], table_window: Callable[[str], int | None]) -> None:
        eps = tuple(endpoints)
        self._config = {ep.id: ep.context_window for ep in eps if ep.context_window is not None}
        self._table = {ep.id: table_window(ep.name) for ep in eps}
        servers: dict[tuple[str, str], list[str]] = {}
        for ep in eps:
            servers.setdefault((ep.base_url, ep.name), []).append(ep.id)
        # Endpoints that are one server and model under several ids share what an error taught.
        self._same_server = {i: tuple(ids) for ids in servers.values() for i in ids}
        self._facts: dict[str, ServerFacts] = {}
        self._learned: dict[str, int] = {}
        self._silent: set[str] = set()  # servers that answered discovery without saying anything
        self.version = 0  # goes up whenever a window may have changed (callers cache by it)

    def carry_over(self, old: ContextBook, pairs: Mapping[str, str]) -> None:
        """After a reload: what the servers of the endpoints in `pairs` ({id here: id on
        `old`}) said, or taught by an overflow, is kept (a configured window still wins)."""
        for new_id, old_id in pairs.items():
            if old_id in old._facts:
                self._facts[new_id] = old._facts[old_id]
            if old_id in old._learned:
                self._learned[new_id] = old._learned[old_id]
            if old_id in old._silent:
                self._silent.add(new_id)
        self.version += 1

    def facts(self, endpoint_id: str) -> ServerFacts | None:
        """What the endpoint's server said at the last discovery, if it said anything."""
        return self._facts.get(endpoint_id)

    def learn(self, endpoint_id: str, facts: ServerFacts) -> bool:
        """Keep a discovery's answer; True when it changed anything. A fresh discovered
        window replaces one learned from an error."""
        if self._facts.get(endpoint_id) == facts and endpoint_id not in self._learned:
            return False
        self._facts[endpoint_id] = facts
        if facts.context_window is not None:
            self._learned.pop(endpoint_id, None)
        self.version += 1
        return True

    def mark_silent(self, endpoint_id: str) -> None:
        """Its server was reached and none of the discovery sources told anything."""
        self._silent.add(endpoint_id)

    def worth_asking(self, endpoint_id: str) -> bool:
        """Ask again on a probe: the server said something before (ask that source for
        changes), or it could not be reached yet."""
        return endpoint_id not in self._silent

    def learn_window(self, endpoint_id: str, tokens: int) -> None:
        """The window an overflow error stated (for every endpoint on the same server and model)."""
        for same in self._same_server.get(endpoint_id, (endpoint_id,)):
            self._learned[same] = tokens
        self.version += 1

    def window(self, endpoint_id: str) -> Window:
        configured = self._config.get(endpoint_id)
        if configured is not None:
            return Window(configured, WindowSource.CONFIG)
        learned = self._learned.get(endpoint_id)
        if learned is not None:
            return Window(learned, WindowSource.DISCOVERED, FactSource.OVERFLOW_ERROR)
        facts = self._facts.get(endpoint_id)
        if facts is not None and facts.context_window is not None:
            return Window(facts.context_window, WindowSource.DISCOVERED, facts.source)
        table = self._table[endpoint_id]
        return Window(table, WindowSource.TABLE if table is not None else WindowSource.UNKNOWN)

    def tokens(self, endpoint_id: str) -> int | None:
        """`window(endpoint_id).tokens`, without building the record (per request)."""
        configured = self._config.get(endpoint_id)
        if configured is not None:
            return configured
        learned = self._learned.get(endpoint_id)
        if learned is not None:
            return learned
        facts = self._facts.get(endpoint_id)
        if facts is not None and facts.context_window is not None:
            return facts.context_window
        return self._table[endpoint_id]


class ContextGate:
    """One request's fit against the endpoints it may use (`candidates`, in the order
    their groups are tried; `escalation_groups` are used only once the request has
    been found too large for something). `prompt_tokens` may be a function: the
    estimate is then made only when some candidate's window is known."""

    __slots__ = (
        "_book",
        "_by_id",
        "_escalation_groups",
        "_estimate",
        "_overflowed",
        "_prompt",
        "_relaxed",
        "_requested",
        "exact",
        "refusal",
        "skipped",
    )

    def __init__(
        self,
        book: ContextBook,
        candidates: Sequence[EndpointSpec],
        prompt_tokens: int | Callable[[], int],
        requested: int | None,
        escalation_groups: Iterable[str] = (),
    ) -> None:
        self._book = book
        self._by_id = {ep.id: ep for ep in candidates}
        self._requested = requested
        self._escalation_groups = frozenset(escalation_groups)
        self._overflowed: dict[str, int | None] = {}  # endpoint id -> the window its error stated
        self._estimate = prompt_tokens if callable(prompt_tokens) else None
        self._prompt = None if callable(prompt_tokens) else prompt_tokens
        self.exact = False  # prompt_tokens was counted by an upstream
        self.refusal: str | None = None  # the last overflow answer, as a client may read it
        self.skipped: dict[str, str] = {}  # endpoint id -> group, passed over for size
        self._relaxed: bool | None = None  # no candidate fits the whole requested output; found on first need

    @property
    def prompt_tokens(self) -> int:
        if self._prompt is None:
            assert self._estimate is not None
            self._prompt = self._estimate()
        return self._prompt

    def _wanted(self, ep: EndpointSpec) -> int:
        return self._requested or ep.max_tokens or DEFAULT_OUTPUT_TOKENS

    def _fits_whole(self, ep: EndpointSpec) -> bool:
        if ep.id in self._overflowed:
            return False
        window = self._book.tokens(ep.id)
        return window is None or self.prompt_tokens + self._wanted(ep) <= window

    @property
    def relaxed(self) -> bool:
        """True when no candidate can hold the whole requested output: then only
        `MIN_OUTPUT_TOKENS` of it are required, and the server may end the answer early."""
        if self._relaxed is None:
            self._relaxed = not any(self._fits_whole(ep) for ep in self._by_id.values())
        return self._relaxed

    def output_for(self, ep: EndpointSpec) -> int:
        """Output tokens the request needs room for on `ep`."""
        wanted = self._wanted(ep)
        return min(wanted, MIN_OUTPUT_TOKENS) if self.relaxed else wanted

    def _fits(self, ep: EndpointSpec) -> bool:
        if self._fits_whole(ep):
            return True
        if ep.id in self._overflowed or not self.relaxed:
            return False
        window = self._book.tokens(ep.id)
        return window is not None and self.prompt_tokens + min(self._wanted(ep), MIN_OUTPUT_TOKENS) <= window

    @property
    def escalating(self) -> bool:
        """The request was found too large for some endpoint (skipped or overflowed)."""
        return bool(self.skipped or self._overflowed)

    def allows(self, endpoint_id: str) -> bool:
        """May the plan try this endpoint? (Health is asked separately.)"""
        ep = self._by_id.get(endpoint_id)
        if ep is None:
            return True
        if not self._fits(ep):
            if endpoint_id not in self._overflowed:
                self.skipped.setdefault(endpoint_id, ep.group)
            return False
        return ep.group not in self._escalation_groups or self.escalating

    def record_overflow(
        self, endpoint_id: str, prompt_tokens: int | None, window: int | None, refusal: str | None = None
    ) -> None:
        """The endpoint said the request does not fit; keep what it counted (and what it said)."""
        ep = self._by_id.get(endpoint_id)
        self.refusal = refusal
        self._overflowed[endpoint_id] = window
        self.skipped.pop(endpoint_id, None)
        if window is not None:
            self._book.learn_window(endpoint_id, window)
        if prompt_tokens is not None:
            self._prompt = prompt_tokens  # the server's own count beats the estimate
            self.exact = True
        elif ep is not None and (known := window or self._book.tokens(endpoint_id)) is not None:
            # No count given: at least as large as what the endpoint could not hold.
            self._prompt = max(self.prompt_tokens, known - self.output_for(ep) + 1)
        if self._relaxed is False:
            self._relaxed = None  # the sizes changed: look again when next needed

    def largest_window(self) -> int:
        """The largest window among the candidates, as their overflow answers stated it
        where they did."""
        sizes = (self._overflowed.get(i) or self._book.tokens(i) for i in self._by_id)
        return max((n for n in sizes if n is not None), default=0)

    def rejection(self) -> ContextTooLarge | None:
        """The 400 to answer when the plan ended without success: only when the request
        was found too large somewhere and no candidate can hold it now."""
        if not self.escalating or any(self._fits(ep) for ep in self._by_id.values()):
            return None
        output = self._requested or min((self._wanted(ep) for ep in self._by_id.values()), default=0)
        return ContextTooLarge(
            self.prompt_tokens, output, self.largest_window(), exact=self.exact, refusal=self.refusal
        )
