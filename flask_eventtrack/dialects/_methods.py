"""A wrong method on a dialect's URL answers 405 in that dialect's envelope.

Flask raises routing errors before it knows the blueprint, so a blueprint's own
405 handler never runs, and werkzeug's HTML page would answer clients that
expect the vendor's JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import MapAdapter

__all__ = ["DialectMethodNotAllowed", "answer_wrong_methods"]

_SLASHES = re.compile("//+")
#: ``app.extensions`` key: the app's :class:`_WrongMethods`.
_WRONG_METHODS = "eventtrack_wrong_methods"


class DialectMethodNotAllowed(MethodNotAllowed):
    """A wrong method on a dialect's URL: answered by that dialect, in its envelope."""

    def __init__(self, error: MethodNotAllowed, respond: Callable[[str], Response]) -> None:
        super().__init__(valid_methods=error.valid_methods, description=error.description)
        self.respond = respond


def answer_wrong_methods(bp: Blueprint, respond: Callable[[str], Response]) -> None:
    """Answer a wrong method on one of ``bp``'s URLs with ``respond(message)``, a
    405 in the dialect's envelope, instead of werkzeug's HTML page.

    One ``before_request`` hook per app swaps the routing error of a dialect's
    URL for a :class:`DialectMethodNotAllowed`, and an app error handler for
    that class alone answers it: the host app's own 405
    handler (registered before or after) keeps every other URL, and its other
    ``before_request`` hooks still run. ``Allow`` is werkzeug's; ``OPTIONS``
    stays Flask's automatic answer.
    """

    def register(setup: BlueprintSetupState) -> None:
        wrong = setup.app.extensions.get(_WRONG_METHODS)
        if wrong is None:
            wrong = setup.app.extensions[_WRONG_METHODS] = _WrongMethods()
            setup.app.before_request(wrong.claim)
            setup.app.register_error_handler(DialectMethodNotAllowed, _answer)
        wrong.respond[f"{setup.name_prefix}.{setup.name}.".lstrip(".")] = respond

    bp.record(register)


class _WrongMethods:
    """One app's dialects: their 405 answers, by endpoint prefix."""

    def __init__(self) -> None:
        self.respond: dict[str, Callable[[str], Response]] = {}
        self._urls: tuple[frozenset[str], tuple[str, ...]] | None = None

    def claim(self) -> None:
        """Mark a 405 on a dialect's URL as the dialect's (any other request: one check)."""
        error = request.routing_exception
        if type(error) is not MethodNotAllowed:
            return
        exact, prefixes = self._urls or self._find_urls()
        # Only a dialect's URL is matched again: the host's URL converters are not run.
        # Doubled slashes are merged, as werkzeug's routing does (it would redirect).
        path = _SLASHES.sub("/", request.path)
        if path not in exact and not path.startswith(prefixes):
            return
        adapter = current_app.create_url_adapter(request)
        if adapter is None:
            return
        for method in sorted(error.valid_methods or ()):
            respond = self._answer_of(_endpoint(adapter, path, method))
            if respond is not None:
                request.routing_exception = DialectMethodNotAllowed(error, respond)
                return

    def _find_urls(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """The dialects' URLs: fixed ones, and the fixed start of the others (up to
        their first variable part). Flask adds no rule after the first request."""
        exact: set[str] = set()
        prefixes: set[str] = set()
        for rule in current_app.url_map.iter_rules():
            if self._answer_of(rule.endpoint) is not None:
                fixed, variable, _ = rule.rule.partition("<")
                (prefixes if variable else exact).add(fixed)
        self._urls = frozenset(exact), tuple(prefixes)
        return self._urls

    def _answer_of(self, endpoint: str) -> Callable[[str], Response] | None:
        return self.respond.get(endpoint.rpartition(".")[0] + ".")


def _answer(error: DialectMethodNotAllowed) -> Response:
    allowed = sorted(error.valid_methods or ())
    usable = ", ".join(m for m in allowed if m not in ("HEAD", "OPTIONS"))
    response = error.respond(f"The method {request.method[:20]} is not allowed here; use {usable}.")
    response.headers["Allow"] = ", ".join(allowed)
    return response


def _endpoint(adapter: MapAdapter, path: str, method: str) -> str:
    """The endpoint ``path`` goes to with ``method``, or ``""``.

    Any exception counts as no match: the host app's URL converters run here too,
    and one of them failing must not turn the host's 405 into a 500.
    """
    try:
        rule, _ = adapter.match(path, method=method, return_rule=True)
    except Exception:
        return ""
    return str(rule.endpoint)
