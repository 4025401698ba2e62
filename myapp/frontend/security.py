"""The pages' side of access control: the session cookie, CSRF refusal, security headers, and
who the visitor is.

The frontend keeps no state of its own: the cookie holds the account's session token encrypted
and authenticated with a key derived from MYAPP_SECRET_KEY (Fernet: AES-128-CBC with an
HMAC-SHA256), so a tampered cookie is dropped before it reaches the backend, and a copied cookie
does not reveal a token that would work as a bearer token against /api. Every page's backend
calls carry the decrypted token (ApiClient reads `g.api_token`). Any replica with the same key
serves any visitor. Cookies of the earlier signed-only format are not read: those visitors sign
in again.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, abort, flash, g, redirect, request, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.local import LocalProxy
from werkzeug.wrappers import Response

from myapp.contract import roles
from myapp.settings import is_loopback

from .api_client import BackendError, BackendUnavailable
from .views import api

log = logging.getLogger("myapp.frontend.security")

SESSION_COOKIE = "myapp_session"
# The backend decides when a session ends; the signature's own age limit only bounds how long
# a copied cookie is even looked at, so it is generous.
COOKIE_MAX_AGE_S = 31 * 24 * 3600
# Separates this key from any other use of MYAPP_SECRET_KEY (Flask signs its own cookie with it).
_KEY_INFO = b"myapp session cookie v2"

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# `none`: the person typed or bookmarked the address (or reloaded a form) — never another site.
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})
# Longer redirect targets are not our own links (a page address with many filters stays far below).
MAX_NEXT_LENGTH = 8192

# No inline script anywhere, no plugins, no framing, forms and <base> only to ourselves. Inline
# styles stay allowed: CodeMirror and Chart.js set them, and they cannot run code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Addresses carry dataset names and filters: other sites learn only our origin.
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

CSRF_MESSAGE = (
    "This request came from another site, so it was refused to protect your data. "
    "Go back to myapp's own page and try again from there."
)


OPEN_MODE_REMOTE = (
    "This workspace is in open mode (it has no accounts), so it only answers on this machine's "
    "own addresses such as http://127.0.0.1 or http://localhost. To use it from elsewhere, "
    "create an admin account first, or set MYAPP_ADMIN_PASSWORD on the backend."
)


def host_name(host: str) -> str:
    """The name part of a Host value: `[::1]:80` → `::1`, `example.com:8080` → `example.com`."""
    host = host.strip()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True)
class Visitor:
    """Who is looking at a page, as the backend sees it (GET /api/auth/me)."""

    user: str | None = None
    role: str | None = None
    via: str | None = None
    open_mode: bool = False
    public_read: bool = False
    # False when the backend could not say (it is down): pages then show no user menu.
    known: bool = False

    @property
    def signed_in(self) -> bool:
        return self.user is not None

    def can(self, role: str) -> bool:
        return roles.at_least(self.role, role)


class SessionCipher:
    """Seals a session token into a cookie value and opens it again (None if it is not ours)."""

    def __init__(self, secret_key: str | bytes) -> None:
        raw = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(raw)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, token: str) -> str:
        return self._fernet.encrypt(json.dumps({"t": token}).encode("utf-8")).decode("ascii")

    def open(self, value: str) -> str | None:
        try:
            data = json.loads(self._fernet.decrypt(value.encode("ascii"), ttl=COOKIE_MAX_AGE_S))
        except (InvalidToken, UnicodeError, ValueError):
            return None
        token = data.get("t") if isinstance(data, dict) else None
        return token if isinstance(token, str) and token else None


def _cipher(app: Flask) -> SessionCipher:
    cipher = app.extensions.get("myapp.session_cipher")
    if cipher is None:
        cipher = app.extensions["myapp.session_cipher"] = SessionCipher(app.secret_key)  # type: ignore[arg-type]
    return cipher


def set_session_cookie(response: Response, token: str, expires_at: str | datetime) -> Response:
    """Keep a session token in the browser: signed, HttpOnly, SameSite=Lax, Secure on HTTPS."""
    from flask import current_app

    expires = (
        datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        if isinstance(expires_at, str)
        else expires_at
    )
    # A new sign-in replaces whatever session this request started with.
    g.drop_session_cookie = False
    response.set_cookie(
        SESSION_COOKIE,
        _cipher(current_app).seal(token),
        expires=expires,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
        path="/",
    )
    return response


def clear_session_cookie(response: Response) -> Response:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="Lax", secure=request.is_secure
    )
    return response


def end_session() -> None:
    """Forget the visitor's session for the rest of this request and in the browser."""
    g.api_token = None
    g.drop_session_cookie = SESSION_COOKIE in request.cookies
    g.pop("visitor", None)


def current_visitor() -> Visitor:
    """The visitor of this request; asks the backend once per request."""
    visitor = g.get("visitor")
    if visitor is not None:
        return visitor
    return settle_visitor(lambda: api().get("/api/auth/me"))


def settle_visitor(ask: Callable[[], Any]) -> Visitor:
    """The visitor from the backend's answer to GET /api/auth/me, which `ask` returns (or
    raises), kept for the rest of the request: a page may send that call beside its own and
    settle it here."""
    try:
        me = ask()
    except BackendUnavailable:
        visitor = Visitor()
    except BackendError as exc:
        if exc.status == 401 and g.get("api_token"):
            # The session ended (expired, signed out elsewhere, account removed): carry on
            # as an anonymous visitor and drop the cookie.
            end_session()
            g.session_ended = True
            return current_visitor()
        log.warning("cannot tell who the visitor is: %s", exc.message)
        visitor = Visitor()
    else:
        visitor = Visitor(
            user=me.get("user"),
            role=me.get("role"),
            via=me.get("via"),
            open_mode=bool(me.get("open_mode")),
            public_read=bool(me.get("public_read")),
            known=True,
        )
    g.visitor = visitor
    return visitor


visitor_proxy: Any = LocalProxy(current_visitor)


# Percent-decoding is repeated this many times when a redirect target is checked: a target
# decoded once more by a proxy or a browser must still be a path on this site.
_DECODE_ROUNDS = 3
# C0 controls, DEL and C1 controls: URL parsers drop tab and newlines (`/\t/evil` becomes
# `//evil`), and a newline in a Location header is an error.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _local_path_form(text: str) -> bool:
    """True when `text`, read as a URL, can only be a path on this site."""
    if _CONTROL.search(text) or "\\" in text or not text.startswith("/"):
        return False
    path = re.split(r"[?#]", text, maxsplit=1)[0]
    if "//" in path:
        return False
    parts = urlsplit(text)
    return not parts.scheme and not parts.netloc


def safe_next(value: str | None) -> str:
    """Where to go after signing in (and every other redirect whose target a request names):
    the target when it is a path on this site, else `/`.

    The target is checked as it is and in each percent-decoded form, so no browser or proxy
    reading can turn it into another site (`//host`, `/\\host`, `/<TAB>/host`, `/%2F%2Fhost`,
    `https://host`) or into a header that cannot be sent.
    """
    if not value or not isinstance(value, str) or len(value) > MAX_NEXT_LENGTH:
        return "/"
    form = value
    for _ in range(_DECODE_ROUNDS + 1):
        if not _local_path_form(form):
            return "/"
        decoded = unquote(form, errors="replace")
        if decoded == form:
            break
        form = decoded
    else:
        # Still changing after every round: nobody writes a local path like that.
        return "/"
    return value


def own_origin() -> str:
    return f"{request.scheme}://{request.host}"


def csrf_refusal() -> str | None:
    """Why a state-changing request must be refused as cross-site, or None to allow it.

    Browsers send Sec-Fetch-Site (on HTTPS and localhost) and Origin (on every POST); neither
    can be set by a page's script. A request with neither comes from a non-browser client; it
    is allowed only without a session cookie, since then there is nothing to forge.
    """
    if request.method in SAFE_METHODS:
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return None if site.lower() in ALLOWED_FETCH_SITES else f"Sec-Fetch-Site: {site}"
    origin = request.headers.get("Origin")
    if origin is not None:
        return None if origin == own_origin() else f"Origin: {origin}"
    if request.cookies.get(SESSION_COOKIE):
        return "no Origin or Sec-Fetch-Site with a session cookie"
    return None


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's own cookie (flashed messages) is Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request and request.is_secure) or super().get_cookie_secure(app)


def _wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best != "application/json"


def _here() -> str:
    """The page being shown."""
    return request.full_path.rstrip("?")


def install_security(app: Flask) -> None:
    """Install the hooks; call last in create_web (it wraps the BackendError page)."""
    app.session_interface = _SessionInterface()
    cipher = _cipher(app)

    @app.before_request
    def _check_and_load() -> None:
        reason = csrf_refusal()
        if reason is not None:
            log.warning("refused a cross-site %s %s (%s)", request.method, request.path, reason)
            abort(403, description=CSRF_MESSAGE)
        g.api_token = None
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return
        token = cipher.open(raw)
        if token is None:
            log.warning("dropped a session cookie that is not ours (tampered, old or foreign)")
            end_session()
            return
        g.api_token = token
        if request.endpoint not in ("static", "healthz"):
            # Checked now, so a page's own backend calls never run with an ended session.
            current_visitor()

    @app.before_request
    def _open_mode_stays_local() -> None:
        if request.endpoint in ("static", "healthz") or is_loopback(host_name(request.host)):
            return
        if current_visitor().open_mode:
            # Reached under another name (a proxy, a LAN address, DNS rebinding by a page of
            # another site): open mode's "everyone is admin" must not leave this machine.
            abort(403, description=OPEN_MODE_REMOTE)

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if g.get("drop_session_cookie"):
            clear_session_cookie(response)
        return response

    @app.context_processor
    def _visitor() -> dict[str, Any]:
        return {"visitor": visitor_proxy}

    previous = app.error_handler_spec[None][None].get(BackendError)

    @app.errorhandler(BackendError)
    def _backend_error(exc: BackendError):
        if exc.status == 401 and not isinstance(exc, BackendUnavailable):
            if g.get("api_token"):
                end_session()
            login_url = url_for("account.login", next=safe_next(_here()))
            if request.method == "GET" and _wants_html():
                flash(
                    "Your session has ended; sign in again."
                    if g.get("drop_session_cookie")
                    else "Sign in to see this page.",
                    "info",
                )
                return redirect(login_url)
        if previous is None:
            raise exc
        return previous(exc)
