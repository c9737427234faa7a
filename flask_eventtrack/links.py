"""Ibexa tracking links for the host app's own recommendation blocks and e-mails.

The vendor's recommendation responses carry ready-made ``rendered`` and
``clickRecommended`` links, and its trigger messages ``triggerOpenedLink`` and
per-item links. When the app makes its own recommendations, these functions
build the same URLs against this app's Ibexa endpoint. They are also Jinja
globals (``ibexa_rendered_url(...)`` etc.) in the app's templates::

    <img src="{{ ibexa_rendered_url(user, 1, items | map(attribute='id'), scenario='also_bought') }}">
    <a href="{{ ibexa_clickrecommended_url(user, 1, item.id, 'also_bought') }}">...</a>

Needs an app context (and a request context, or ``SERVER_NAME``, for ``external=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from flask import current_app, url_for

__all__ = [
    "JINJA_GLOBALS",
    "clickrecommended_url",
    "clicktriggered_url",
    "recommendation_links",
    "rendered_url",
    "trigger_links",
    "triggeropened_url",
]

Item = tuple[Any, Any] | Mapping[str, Any]


def _customer(customerid: str | None) -> str:
    if customerid is not None:
        return str(customerid)
    settings = current_app.extensions.get("eventtrack_ibexa")
    if settings is None:
        raise RuntimeError("The ibexa dialect is not enabled on this app (see EVENTTRACK_DIALECTS).")
    if len(settings.customers) != 1:
        raise ValueError(
            "Pass customerid=...: it can only be left out when EVENTTRACK_IBEXA_CUSTOMERS"
            " names exactly one customer."
        )
    (only,) = settings.customers
    return str(only)


def _segment(value: Any, what: str, *, in_list: bool = False) -> str:
    """One path segment, or ValueError for an id no link can carry back intact."""
    text = str(value)
    if not text:
        raise ValueError(f"{what} must not be empty.")
    if text in (".", ".."):  # browsers and URL resolvers remove such segments (RFC 3986 5.2.4)
        raise ValueError(f"{what} cannot be {text!r}: a URL cannot carry that segment.")
    if "\\" in text:  # the endpoint refuses a backslash anywhere, as the vendor does
        raise ValueError(f"{what} cannot contain a backslash.")
    if in_list and "," in text:  # the endpoint splits the list on commas, escaped or not
        raise ValueError(f"{what} cannot contain a comma: the ids of a rendered block are comma-separated.")
    return quote(text, safe="")


def _url(
    code: str, customerid: str | None, segments: list[str], params: dict[str, Any], external: bool
) -> str:
    # url_for gives the mount point (script root, prefix, host); the segments are
    # quoted here so that a "/" inside an id stays inside it.
    base = url_for(
        "eventtrack_ibexa.track", customerid=_customer(customerid), event=code, rest="_", _external=external
    )
    url = base[:-1] + "/".join(segments)
    query = {key: value for key, value in params.items() if value is not None}
    return url + ("?" + urlencode(query) if query else "")


def rendered_url(
    userid: str,
    itemtypeid: Any,
    itemids: Iterable[Any],
    *,
    scenario: str | None = None,
    customerid: str | None = None,
    external: bool = False,
) -> str:
    """One ``rendered`` URL for a block of items (ids comma-separated, as the vendor bundles them)."""
    ids = [
        _segment(i, "An item id", in_list=True)
        for i in ([itemids] if isinstance(itemids, (str, int)) else itemids)
    ]
    if not ids:
        raise ValueError("itemids must name at least one item.")
    segments = [_segment(userid, "userid"), _segment(itemtypeid, "itemtypeid"), ",".join(ids)]
    return _url("rendered", customerid, segments, {"scenario": scenario}, external)


def clickrecommended_url(
    userid: str,
    itemtypeid: Any,
    itemid: Any,
    scenario: str,
    *,
    customerid: str | None = None,
    external: bool = False,
) -> str:
    """The ``clickrecommended`` URL of one recommended item (``scenario`` is required)."""
    segments = [_segment(userid, "userid"), _segment(itemtypeid, "itemtypeid"), _segment(itemid, "itemid")]
    return _url(
        "clickrecommended", customerid, segments, {"scenario": _required(scenario, "scenario")}, external
    )


def triggeropened_url(
    userid: str, triggername: str, *, customerid: str | None = None, external: bool = False
) -> str:
    """The ``triggeropened`` URL of a trigger message (e.g. an e-mail's tracking image)."""
    params = {"triggername": _required(triggername, "triggername")}
    return _url("triggeropened", customerid, [_segment(userid, "userid")], params, external)


def clicktriggered_url(
    userid: str,
    itemtypeid: Any,
    itemid: Any,
    triggername: str,
    *,
    customerid: str | None = None,
    external: bool = False,
) -> str:
    """The ``clicktriggered`` URL of one item of a trigger message."""
    segments = [_segment(userid, "userid"), _segment(itemtypeid, "itemtypeid"), _segment(itemid, "itemid")]
    params = {"triggername": _required(triggername, "triggername")}
    return _url("clicktriggered", customerid, segments, params, external)


def _required(value: str | None, what: str) -> str:
    if not value:
        raise ValueError(f"{what} is required.")
    return value


def _item(item: Item) -> tuple[Any, Any]:
    if isinstance(item, Mapping):
        return item["itemType"], item["itemId"]
    item_type, item_id = item
    return item_type, item_id


def recommendation_links(
    userid: str,
    scenario: str,
    items: Iterable[Item],
    *,
    customerid: str | None = None,
    external: bool = False,
) -> list[dict[str, Any]]:
    """``recommendationItems`` as the vendor returns them: per item, its
    ``links.rendered`` and ``links.clickRecommended``.

    :param items: ``(itemtype, itemid)`` pairs or ``{"itemType", "itemId"}`` mappings.
    """
    result = []
    for item in items:
        item_type, item_id = _item(item)
        links = {
            "clickRecommended": clickrecommended_url(
                userid, item_type, item_id, scenario, customerid=customerid, external=external
            ),
            "rendered": rendered_url(
                userid, item_type, [item_id], scenario=scenario, customerid=customerid, external=external
            ),
        }
        result.append({"itemType": item_type, "itemId": item_id, "links": links})
    return result


def trigger_links(
    userid: str,
    triggername: str,
    items: Iterable[Item],
    *,
    customerid: str | None = None,
    external: bool = True,
) -> dict[str, Any]:
    """A trigger message's links: ``triggerOpenedLink`` and, per item, ``links.clickRecommended``
    (a ``clicktriggered`` URL). External by default: these go into e-mails."""
    recommendations = []
    for item in items:
        item_type, item_id = _item(item)
        url = clicktriggered_url(
            userid, item_type, item_id, triggername, customerid=customerid, external=external
        )
        recommendations.append({"itemType": item_type, "itemId": item_id, "links": {"clickRecommended": url}})
    opened = triggeropened_url(userid, triggername, customerid=customerid, external=external)
    return {"triggerOpenedLink": opened, "recommendations": recommendations}


#: Registered on the app's Jinja environment by the ibexa dialect.
JINJA_GLOBALS: dict[str, Callable[..., Any]] = {
    "ibexa_rendered_url": rendered_url,
    "ibexa_clickrecommended_url": clickrecommended_url,
    "ibexa_triggeropened_url": triggeropened_url,
    "ibexa_clicktriggered_url": clicktriggered_url,
    "ibexa_recommendation_links": recommendation_links,
    "ibexa_trigger_links": trigger_links,
}
