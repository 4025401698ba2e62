"""Pages: signing in and out, one's own account and tokens, and the admin pages (accounts,
every token, the audit log). Everything goes through the backend's API, which decides who may
do what; these pages only show its answers in a friendly way."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import (
    Blueprint,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from myapp.contract import roles
from myapp.contract.roles import ROLES
from myapp.models import usernames
from myapp.models.auth import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    TOKEN_MAX_DAYS,
)

from ..api_client import BackendError, BackendUnavailable
from ..security import (
    clear_session_cookie,
    current_visitor,
    end_session,
    safe_next,
    set_session_cookie,
)
from . import api

bp = Blueprint("account", __name__)

ROLE_HELP = {
    "viewer": "browse, query and export",
    "editor": "also upload, change and delete datasets, save queries",
    "admin": "also manage accounts and everyone's tokens",
}
EXPIRY_CHOICES = (
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "1 year"),
    ("", "Never"),
)
DEFAULT_EXPIRY = "90"
AUDIT_PAGE = 50


def _form_error(exc: BackendError) -> tuple[str, int]:
    """A backend refusal as a message for the form and the status of the re-rendered page."""
    if isinstance(exc, BackendUnavailable):
        raise exc
    if exc.status in (401, 403):
        raise exc
    return exc.message, exc.status if 400 <= exc.status < 500 else 400


def _password_problem(password: str, confirm: str | None = None) -> str | None:
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"A password needs at least {PASSWORD_MIN_LENGTH} characters."
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"A password can have at most {PASSWORD_MAX_LENGTH} characters."
    if confirm is not None and password != confirm:
        return "The two passwords are not the same."
    return None


def _scopes_for(role: str | None) -> list[str]:
    return roles.up_to(role)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _user_path(username: str) -> str:
    return "/api/users/" + quote(username, safe="")


# -- signing in and out ---------------------------------------------------------------------
@bp.get("/login")
def login():
    return render_template("account/login.html", next=safe_next(request.args.get("next")))


@bp.post("/login")
def login_submit():
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    next_url = safe_next(request.form.get("next"))
    # A stale session must not ride along with a new sign-in.
    end_session()

    def again(message: str, status: int, headers: dict[str, str] | None = None):
        page = render_template(
            "account/login.html", error=message, username=username, next=next_url
        )
        return page, status, headers or {}

    if not username or not password:
        return again("Enter your username and your password.", 400)
    try:
        result = api().post("/api/auth/login", json={"username": username, "password": password})
    except BackendUnavailable:
        raise
    except BackendError as exc:
        if exc.status == 429:
            wait = (exc.detail or {}).get("retry_after_s") if isinstance(exc.detail, dict) else None
            return again(exc.message, 429, {"Retry-After": str(wait)} if wait else None)
        status = exc.status if exc.status in (400, 401, 422) else 400
        return again(exc.message, status)
    response = redirect(next_url)
    set_session_cookie(response, result["token"], result["expires_at"])
    flash(f"Signed in as {result['user']['username']}.", "success")
    return response


@bp.get("/logout")
def logout():
    return render_template("account/logout.html")


@bp.post("/logout")
def logout_submit():
    visitor = current_visitor()
    if visitor.via == "session":
        try:
            api().post("/api/auth/logout")
        except BackendUnavailable:
            raise
        except BackendError:
            pass  # already ended: the cookie goes anyway
    end_session()
    flash("You are signed out.", "success")
    return clear_session_cookie(redirect(url_for("account.login")))


# -- one's own account ----------------------------------------------------------------------
def _account_page(status: int = 200, **extra: Any):
    visitor = current_visitor()
    tokens = api().get("/api/tokens")["tokens"] if visitor.signed_in else []
    page = render_template(
        "account/account.html",
        tokens=tokens,
        scopes=_scopes_for(visitor.role),
        role_help=ROLE_HELP,
        expiry_choices=EXPIRY_CHOICES,
        default_expiry=DEFAULT_EXPIRY,
        password_min=PASSWORD_MIN_LENGTH,
        **extra,
    )
    return _no_store(make_response(page, status))


def _require_account():
    """None when the visitor has an account; else the response to send instead."""
    visitor = current_visitor()
    if visitor.signed_in or visitor.open_mode:
        return None
    flash("Sign in to see your account.", "info")
    return redirect(url_for("account.login", next=request.path))


@bp.get("/account")
def account():
    return _require_account() or _account_page()


@bp.post("/account/password")
def change_password():
    if (refusal := _require_account()) is not None:
        return refusal
    current = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    problem = _password_problem(new, request.form.get("confirm_password", ""))
    if problem:
        return _account_page(400, password_error=problem)
    try:
        api().post("/api/auth/password", json={"current_password": current, "new_password": new})
    except BackendError as exc:
        message, status = _form_error(exc)
        return _account_page(status, password_error=message)
    flash("Your password is changed; your other sign-ins have ended.", "success")
    return redirect(url_for("account.account"))


@bp.post("/account/tokens")
def create_token():
    if (refusal := _require_account()) is not None:
        return refusal
    name = request.form.get("name", "").strip()
    scope = request.form.get("scope", "viewer")
    expiry = request.form.get("expires_in_days", "")
    form = {"name": name, "scope": scope, "expires_in_days": expiry}
    if not name:
        return _account_page(400, tokens_error="Give the token a name.", tokens_form=form)
    if expiry and not (expiry.isdigit() and 1 <= int(expiry) <= TOKEN_MAX_DAYS):
        return _account_page(
            400,
            tokens_error=f"Choose an expiry between 1 and {TOKEN_MAX_DAYS} days.",
            tokens_form=form,
        )
    try:
        created = api().post(
            "/api/tokens",
            json={
                "name": name,
                "scope": scope,
                "expires_in_days": int(expiry) if expiry else None,
            },
        )
    except BackendError as exc:
        message, status = _form_error(exc)
        return _account_page(status, tokens_error=message, tokens_form=form)
    # Post/redirect/get: reloading the page that shows the token must not make another. The
    # secret rides in the signed session until that page has shown it once.
    session["new_token"] = created
    return redirect(url_for("account.token_created"), 303)


@bp.get("/account/tokens/created")
def token_created():
    created = session.pop("new_token", None)
    if not isinstance(created, dict):
        flash("A new token is shown only once; its name is listed below.", "info")
        return redirect(url_for("account.account"))
    page = render_template("account/token_created.html", token=created)
    return _no_store(make_response(page))


@bp.post("/account/tokens/<token_id>/revoke")
def revoke_token(token_id: str):
    if (refusal := _require_account()) is not None:
        return refusal
    name = request.form.get("name", token_id)
    api().delete("/api/tokens/" + quote(token_id, safe=""))
    flash(f"The token “{name}” is revoked: it no longer works.", "success")
    return redirect(url_for("account.account"))


# -- admin: accounts ------------------------------------------------------------------------
def _admin_page(status: int = 200, **extra: Any):
    users = api().get("/api/users")["users"]
    page = render_template(
        "admin/users.html",
        users=users,
        username_rule=usernames.RULE,
        roles=ROLES,
        role_help=ROLE_HELP,
        password_min=PASSWORD_MIN_LENGTH,
        **extra,
    )
    return _no_store(make_response(page, status))


@bp.get("/admin")
def admin():
    return _admin_page()


@bp.post("/admin/users")
def create_user():
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    role = request.form.get("role", "viewer")
    form = {"username": username, "role": role}
    problem = None
    problem = usernames.problem(username) or _password_problem(password)
    if problem:
        return _admin_page(400, user_error=problem, user_form=form)
    was_open = current_visitor().open_mode
    try:
        created = api().post(
            "/api/users", json={"username": username, "password": password, "role": role}
        )
    except BackendError as exc:
        message, status = _form_error(exc)
        return _admin_page(status, user_error=message, user_form=form)
    if was_open:
        # The first account ends open mode: from now on everyone signs in. The person who made
        # it just typed its password, so they are signed in with it rather than sent to do so.
        try:
            result = api().post(
                "/api/auth/login", json={"username": username, "password": password}
            )
        except BackendUnavailable:
            raise
        except BackendError:
            flash(
                f"Account {created['username']} created. Open mode has ended: sign in to go on.",
                "success",
            )
            return redirect(url_for("account.login", next=url_for("account.admin")))
        response = redirect(url_for("account.admin"), 303)
        set_session_cookie(response, result["token"], result["expires_at"])
        flash(
            f"Account {created['username']} created, and you are signed in with it. Open mode "
            "has ended: from now on everyone signs in.",
            "success",
        )
        return response
    flash(f"Account {created['username']} created with the {created['role']} role.", "success")
    return redirect(url_for("account.admin"))


@bp.get("/admin/users/<username>")
def user_detail(username: str):
    return _user_page(username)


def _user_page(username: str, status: int = 200, **extra: Any):
    user = api().get(_user_path(username))
    tokens = api().get("/api/tokens", params={"username": user["username"]})["tokens"]
    page = render_template(
        "admin/user.html",
        user=user,
        tokens=tokens,
        roles=ROLES,
        role_help=ROLE_HELP,
        password_min=PASSWORD_MIN_LENGTH,
        **extra,
    )
    return _no_store(make_response(page, status))


@bp.post("/admin/users/<username>")
def update_user(username: str):
    role = request.form.get("role") or None
    password = request.form.get("password", "")
    if password:
        problem = _password_problem(password)
        if problem:
            return _user_page(username, 400, user_error=problem)
    body: dict[str, Any] = {"role": role}
    if password:
        body["password"] = password
    try:
        api().patch(_user_path(username), json=body)
    except BackendError as exc:
        message, status = _form_error(exc)
        return _user_page(username, status, user_error=message)
    flash(
        f"Account {username} saved"
        + (" with a new password; its sign-ins have ended." if password else "."),
        "success",
    )
    return redirect(url_for("account.user_detail", username=username))


@bp.get("/admin/users/<username>/delete")
def delete_user_confirm(username: str):
    user = api().get(_user_path(username))
    return render_template("admin/user_delete.html", user=user)


@bp.post("/admin/users/<username>/delete")
def delete_user(username: str):
    visitor = current_visitor()
    try:
        api().delete(_user_path(username))
    except BackendError as exc:
        message, status = _form_error(exc)
        user = api().get(_user_path(username))
        return render_template("admin/user_delete.html", user=user, error=message), status
    flash(f"Account {username} removed, with all its tokens.", "success")
    if visitor.user == username.lower():
        end_session()
        return clear_session_cookie(redirect(url_for("home.index")))
    return redirect(url_for("account.admin"))


# -- admin: every token, the audit log ------------------------------------------------------
@bp.get("/admin/tokens")
def admin_tokens():
    tokens = api().get("/api/tokens", params={"all": "true"})["tokens"]
    return _no_store(make_response(render_template("admin/tokens.html", tokens=tokens)))


@bp.post("/admin/tokens/<token_id>/revoke")
def admin_revoke_token(token_id: str):
    name = request.form.get("name", token_id)
    api().delete("/api/tokens/" + quote(token_id, safe=""))
    flash(f"The token “{name}” is revoked: it no longer works.", "success")
    back = request.form.get("back")
    return redirect(safe_next(back) if back else url_for("account.admin_tokens"))


@bp.get("/admin/audit")
def audit():
    filters = {
        key: request.args.get(key, "").strip()
        for key in ("actor", "action", "target")
        if request.args.get(key, "").strip()
    }
    params: dict[str, Any] = {**filters, "limit": AUDIT_PAGE}
    before = request.args.get("before", "")
    if before.isdigit():
        params["before"] = before
    page = api().get("/api/audit", params=params)
    return render_template(
        "admin/audit.html",
        events=page["events"],
        next_before=page["next"],
        filters=filters,
        paged=bool(params.get("before")),
    )
