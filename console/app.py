"""The console's Flask application: the queue, a case's page, decisions, the overview.

Pages are server-rendered Jinja2 templates with autoescaping on (every id, merchant and note from a
transaction or an analyst is text, never markup); the queue's rows are a fragment htmx polls. Every page but
``/health`` and ``/login`` needs a session, which the login form gives for the console's token (compared in
constant time); state-changing requests also need Flask-WTF's CSRF token, checked after the session so a
request without a session is refused as such (401). Decisions go through :class:`cases.casebook.Casebook`,
the code ``fraudscore cases`` runs: the same label records, the same audit trail, the same stale check.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, flash, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException, NotFound

from cases.casebook import Casebook, CaseConflict, CaseDetail, CaseError
from cases.cli import ms_text, utc_text
from cases.episode_rows import CLOSED
from cases.store import CaseNotFound
from console.models import ModelCards
from console.overview import chart_svg, series
from console.queue import Queue, select
from console.views import member_row

OPEN_ENDPOINTS = frozenset({"health", "login", "static"})
ACTIONS = ("fraud", "legit", "close", "reopen", "note")
MAX_NOTE = 2000
MAX_ANALYST = 64


class ConsoleNotFound(NotFound):
    """A case id nothing is stored under: the 404 page names it."""

    def __init__(self, case_id: str) -> None:
        super().__init__(f"no case {case_id!r}")
        self.case_id = case_id


def create_app(
    book: Casebook,
    queue: Queue,
    token: str,
    *,
    models: ModelCards | None = None,
    page_size: int = 50,
    poll_s: float = 5.0,
    secret_key: bytes | None = None,
) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_bytes(32),  # sessions last as long as this process
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        WTF_CSRF_TIME_LIMIT=None,  # bound to the session, which ends with the browser or the process
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    cards = models or ModelCards(None)
    expected_token = token.encode()
    app.jinja_env.filters.update(ms=ms_text, when=utc_text, age=_age)

    @app.before_request
    def require_session() -> Any:
        # Registered before CSRFProtect's check: without a session the answer is 401, whatever the form holds.
        if request.endpoint in OPEN_ENDPOINTS or session.get("analyst"):
            return None
        if request.method != "GET":
            return render_template("refused.html"), 401
        if request.headers.get("HX-Request"):
            return Response("log in again", status=401)
        return redirect(url_for("login", next=request.full_path.rstrip("?")))

    CSRFProtect(app)

    @app.context_processor
    def analyst() -> dict[str, Any]:
        return {"analyst": session.get("analyst", ""), "poll_s": poll_s}

    @app.get("/health")
    def health() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = ""
        if request.method == "POST":
            name = request.form.get("analyst", "").strip()
            given = request.form.get("token", "").encode()
            if not name or len(name) > MAX_ANALYST:
                error = f"analyst: give your name (1 to {MAX_ANALYST} characters); it is stored with your decisions"
            elif not hmac.compare_digest(given, expected_token):
                error = "token: not the console's token"
            else:
                session.clear()
                session["analyst"] = name
                return redirect(_local(request.args.get("next", "")) or url_for("queue_page"))
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("login"))

    def queue_args() -> dict[str, Any]:
        try:
            page = int(request.args.get("page", "1"))
        except ValueError:
            abort(400, description=f"page: expected a whole number, got {request.args.get('page')!r}")
        reason = request.args.get("reason", "").strip()
        card = request.args.get("card", "").strip()
        return {"reason": reason, "card": card, "page": page, "size": page_size}

    @app.get("/")
    def queue_page() -> str:
        queue.wait_ready(30.0)
        chosen = select(queue.snapshot, **queue_args())
        return render_template("queue.html", q=chosen, error=queue.error, args=queue_args())

    @app.get("/queue/rows")
    def queue_rows() -> str:
        chosen = select(queue.snapshot, **queue_args())
        return render_template("_queue_rows.html", q=chosen, args=queue_args())

    @app.get("/cases/<path:case_id>")
    def case_page(case_id: str) -> Any:
        return render_case(case_id)

    def render_case(case_id: str, *, conflict: str = "", status: int = 200) -> Any:
        try:
            detail = book.detail(case_id)
        except CaseNotFound:
            raise ConsoleNotFound(case_id) from None
        except CaseError as exc:
            return render_template("error.html", title="Not a case", message=str(exc)), 400
        return render_template("case.html", **case_context(detail), conflict=conflict), status

    def case_context(detail: CaseDetail) -> dict[str, Any]:
        e = detail.episode
        members = [member_row(m, cards.explain(m.case)) for m in detail.members]
        return {
            "e": e,
            "members": members,
            "audit": detail.audit,
            "history": book.card_history(e.card_id, e.key),
            "earlier": [c for c in book.list_card(e.card_id, 20) if c.case_id != e.case_id],
        }

    @app.post("/cases/<path:case_id>/decide")
    def decide(case_id: str) -> Any:
        form = request.form
        action = form.get("action", "")
        note = form.get("note", "").strip()
        version = form.get("version", "")
        transaction = ""
        if "member" in form:  # a member's own button: "<verdict>:<transaction id>"
            action, _, transaction = form["member"].partition(":")
            if action not in ("fraud", "legit") or not transaction:
                abort(
                    400, description=f"member: expected fraud:<transaction id> or legit:<...>, got {form['member']!r}"
                )
        if action not in ACTIONS:
            abort(400, description=f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
        if len(note) > MAX_NOTE:
            abort(400, description=f"note: at most {MAX_NOTE} characters, got {len(note)}")
        if not version:
            abort(400, description="version: missing (the case's version the page showed)")
        who = session["analyst"]
        try:
            episode = book.find(case_id)
            if transaction and transaction not in episode.members:
                abort(400, description=f"transaction: {transaction!r} is not a member of case {case_id}")
            done = _DECISIONS[action](book, episode.case_id, episode.old_style, transaction, note, who, version)
        except CaseNotFound:
            raise ConsoleNotFound(case_id) from None
        except CaseConflict as exc:
            return render_case(case_id, conflict=str(exc), status=409)
        except CaseError as exc:
            return render_template("error.html", title="Decision refused", message=str(exc)), 400
        queue.changed(book.find(case_id))
        flash(done)
        return redirect(url_for("case_page", case_id=case_id))

    @app.get("/overview")
    def overview() -> str:
        queue.wait_ready(30.0)
        snap = queue.snapshot
        return render_template("overview.html", counts=snap.counts, card=cards.current(), scanned_at=snap.scanned_at)

    @app.get("/overview.svg")
    def overview_svg() -> Response:
        return Response(chart_svg(series(queue.snapshot.cases)), mimetype="image/svg+xml")

    @app.errorhandler(ConsoleNotFound)
    def case_not_found(exc: ConsoleNotFound) -> Any:
        return render_template("not_found.html", case_id=exc.case_id), 404

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return render_template("error.html", title=exc.name, message=exc.description), exc.code

    return app


def _age(at: float) -> str:
    """How long ago a ``time.time()`` was, for "scanned 3 s ago"."""
    return f"{max(0.0, time.time() - at):.0f} s" if at else "never"


def _local(target: str) -> str:
    """``target`` if it is a path on this site (no scheme, no host): the login's ``next`` is never an open redirect."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return ""
    return target


def _label(fraud: bool) -> Callable[[Casebook, str, bool, str, str, str, str], str]:
    verdict = "fraud" if fraud else "legit"

    def run(book: Casebook, case_id: str, old_style: bool, tx: str, note: str, who: str, version: str) -> str:
        if tx or old_style:  # one member (an old-style case is its one transaction)
            book.label_transaction(tx or case_id, fraud, note, who, expected=version)
            return f"{tx or case_id} labelled {verdict}"
        _, members = book.label(case_id, fraud, note, who, expected=version)
        return f"case {case_id}: {members} member(s) labelled {verdict}; case {CLOSED}"

    return run


def _close(book: Casebook, case_id: str, old_style: bool, tx: str, note: str, who: str, version: str) -> str:
    book.close(case_id, who, expected=version)
    return f"case {case_id} closed"


def _reopen(book: Casebook, case_id: str, old_style: bool, tx: str, note: str, who: str, version: str) -> str:
    book.reopen(case_id, who, expected=version)
    return f"case {case_id} reopened"


def _note(book: Casebook, case_id: str, old_style: bool, tx: str, note: str, who: str, version: str) -> str:
    book.note(case_id, note, who, expected=version)
    return "note added"


_DECISIONS = {"fraud": _label(True), "legit": _label(False), "close": _close, "reopen": _reopen, "note": _note}
