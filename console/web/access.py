"""Who may use the browser view: whoever presents its token, on every request.

textual-serve has no access control of its own, and a loopback port is open to every local
user (unlike the control socket, which is 0600), so the token is needed even on loopback: the
one of `web.token_env`, or, when that variable is unset, a new random one each start, printed
as the sign-in URL. Opening `/?token=...` once sets a cookie and redirects to the same page
without the token, so it does not stay in the address bar, the history or a Referer; after
that the cookie carries it. Comparisons are constant-time. A request without it, or with a
wrong one, gets 401 and a log line (never the token), and never starts a console process.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway_core.config import ConfigError, WebSettings, host_and_port

log = logging.getLogger(__name__)

TOKEN_PARAM = "token"
MIN_TOKEN_LENGTH = 16
COOKIE_MAX_AGE = 12 * 3600  # a working day; then the sign-in URL again
MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve to anything

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}/"


def parse_listen(text: str) -> Listen:
    """`host:port` (`[::1]:port` for IPv6; port 0 picks a free one)."""
    try:
        address = host_and_port(text)
    except ValueError as error:
        raise ValueError(f"{text!r}: {error}") from None
    if address is None:
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:8566")
    return Listen(*address)


@dataclass(frozen=True, slots=True)
class Access:
    token: str = ""
    configured: bool = False  # from web.token_env (else made up for this run)
    cookie: str = "switchboard-web"

    def accepts(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.token.encode())


def access_for(listen: Listen, settings: WebSettings, env: Mapping[str, str]) -> Access:
    """The configured token, or a fresh one on loopback; a ConfigError where neither will do."""
    token = env.get(settings.token_env, "")
    if token:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"web.token_env: ${settings.token_env} holds {len(token)} characters; a token "
                f"needs at least {MIN_TOKEN_LENGTH} (make one with {MAKE_ONE})"
            )
        return Access(token, configured=True)
    if not listen.loopback:
        raise ConfigError(
            f"--listen {listen.host}: not a loopback address, and ${settings.token_env} "
            "(web.token_env) holds no token; set one to serve beyond this machine "
            f"(make one with {MAKE_ONE}), or keep the default 127.0.0.1 and use an SSH tunnel"
        )
    return Access(secrets.token_urlsafe(32), configured=False)


def refuse(request: web.Request, why: str) -> web.Response:
    # The path only: a query string may hold a (wrong) token.
    log.warning("web: refused %s %s from %s: %s", request.method, request.path, _peer(request), why)
    return web.Response(
        status=401,
        text="401: this page needs the sign-in URL that `switchboard web` printed\n",
        headers={"Cache-Control": "no-store"},
    )


def _peer(request: web.Request) -> str:
    return request.remote or "?"


def middleware(access: Access) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if TOKEN_PARAM in request.query:
            if not access.accepts(request.query[TOKEN_PARAM]):
                return refuse(request, "wrong token in the URL")
            query = {k: v for k, v in request.query.items() if k != TOKEN_PARAM}
            clean = request.rel_url.with_query(query)
            response = web.Response(
                status=303, headers={"Location": str(clean), "Cache-Control": "no-store"}
            )
            response.set_cookie(
                access.cookie,
                access.token,
                max_age=COOKIE_MAX_AGE,
                httponly=True,
                samesite="Strict",
                path="/",
            )
            log.info("web: signed in from %s", _peer(request))
            return response
        presented = request.cookies.get(access.cookie)
        if presented is None:
            bearer = request.headers.get("Authorization", "")
            presented = bearer[7:] if bearer.startswith("Bearer ") else None
        if presented is None:
            return refuse(request, "no token")
        if not access.accepts(presented):
            return refuse(request, "wrong token")
        answer = await handler(request)
        if not answer.prepared:
            answer.headers.setdefault("Cache-Control", "no-store")
            answer.headers["X-Frame-Options"] = "DENY"
            answer.headers["Referrer-Policy"] = "no-referrer"
        return answer

    return check
