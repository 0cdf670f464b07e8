"""Server-rendered console pages: the Jinja2 environment and its helpers.

SECURITY: autoescape is on for every template; ``visible`` is applied to
text from messages so that bidi overrides and control characters show as
markers; data handed to charts is embedded as JSON (``tojson`` escapes
``<``, ``>``, ``&`` and quotes) and read by a script served from
``/static``: the Content-Security-Policy forbids inline scripts.
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from mailward import __version__
from mailward.web.security import security_headers, visible

_templates = str(resources.files("mailward.web").joinpath("templates"))
env = Environment(loader=FileSystemLoader(_templates),
                  autoescape=select_autoescape(default=True, default_for_string=True),
                  trim_blocks=True, lstrip_blocks=True)
env.filters["visible"] = visible
env.globals["version"] = __version__


def _when(value: Any) -> str:
    if not value:
        return ""
    text = value if isinstance(value, str) else value.isoformat()
    return text.replace("T", " ")[:19]


def _size(value: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:g} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


env.filters["when"] = _when
env.filters["size"] = _size


def query(params: dict[str, Any], **changes: Any) -> str:
    """query - a query string from params with some changed (for paging links)."""
    merged = {k: v for k, v in {**params, **changes}.items() if v not in (None, "")}
    return "?" + urlencode(merged)


env.globals["query"] = query


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """render - one page, with the principal, its CSRF token and the security headers."""
    principal = getattr(request.state, "principal", None)
    csrf = principal.session.csrf_token if principal is not None and principal.session else ""
    html = env.get_template(template).render(request=request, principal=principal, csrf=csrf,
                                             path=request.url.path, **context)
    return HTMLResponse(html, status_code=status, headers=security_headers())
