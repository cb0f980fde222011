"""The page and its files over HTTP: what a browser is sent, with which headers."""

from __future__ import annotations

import re

import httpx

from streamchat import __version__
from streamchat.http.web import WEB_ROOT
from tests.http.conftest import login_as


async def test_the_page_is_served_with_its_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js">' in response.text
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"


async def test_every_file_the_page_names_is_served(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    scripts = {"/static/app.js", *re.findall(r'(?:src|href)="(/static/[^"]+)"', page)}
    # The modules the entry point imports.
    app_js = (await client.get("/static/app.js")).text
    scripts |= {f"/static/{name}" for name in re.findall(r'from "\./([^"]+)"', app_js)}
    assert {"/static/app.js", "/static/chat.js", "/static/api.js", "/static/style.css"} <= scripts
    for path in sorted(scripts):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" in response.headers
        if path.endswith(".js"):
            assert response.headers["content-type"].startswith("text/javascript")
        # Revalidated cheaply: an unchanged file is a 304.
        again = await client.get(path, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304


async def test_nothing_outside_the_static_folder_is_served(client: httpx.AsyncClient) -> None:
    for path in (
        "/static/nope.js",
        "/static/../index.html",
        "/static/%2e%2e/index.html",
        "/static/..%2f..%2fconfig.py",
        "/static/",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert (WEB_ROOT / "index.html").exists()


async def test_server_info(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/server")
    assert response.status_code == 200
    assert response.json() == {"version": __version__, "auth_mode": "dev", "max_text_length": 500}


async def test_the_session_says_who_is_logged_in_without_an_error(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/session")
    assert response.status_code == 200
    assert response.json() == {"user": None}
    await login_as(client, "1001", "viewer")
    user = (await client.get("/api/session")).json()["user"]
    assert (user["twitch_id"], user["login"]) == ("1001", "viewer")
    await client.post("/api/logout")
    assert (await client.get("/api/session")).json() == {"user": None}
    # A cookie that names no session is nobody, not an error.
    client.cookies.set("streamchat_session", "forged")
    assert (await client.get("/api/session")).json() == {"user": None}
