"""Accounts, sessions, CSRF, login throttling, tokens and scopes, on a real server."""

from __future__ import annotations

import sqlite3

import httpx

from tests.web.support import PASSWORD, Console


def test_user_add_stores_an_argon2id_hash_never_the_password(console):
    database = console.data_dir / "mailward.db"
    with sqlite3.connect(database) as db:
        [(stored,)] = db.execute("SELECT password_hash FROM users WHERE username='alice'")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    listing = console.cli("user", "list").stdout.decode()
    assert "alice\tuser\talice@example.com,a.smith@example.com" in listing
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT actor FROM audit_log WHERE action='user.add' "
                          "AND target='admin'").fetchall()
    assert rows and rows[0][0].startswith("cli:")


def test_login_sets_an_http_only_strict_cookie_and_me_answers(console, as_user):
    client = as_user()
    answer = client.login("alice")
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    me = client.get("/api/v1/auth/me").json()
    assert me["role"] == "user" and me["addresses"] == ["a.smith@example.com",
                                                        "alice@example.com"]


def test_wrong_password_is_refused_and_audited(console, as_user):
    answer = as_user().login("analyst", "not the password at all")
    assert answer.status_code == 401
    admin = as_user("admin")
    audit = admin.get("/api/v1/audit", params={"action": "login", "outcome": "refused"}).json()
    assert any(e["target"] == "analyst" and e["client_ip"] == "127.0.0.1"
               for e in audit["items"])


def test_login_is_throttled_after_repeated_failures(console, as_user):
    client = as_user()
    console.cli("user", "add", "victim", "--password-stdin",
                input=(PASSWORD + "\n").encode())
    codes = [client.login("victim", f"guess number {n}").status_code for n in range(3)]
    assert codes == [401, 401, 401]
    # Even the right password is refused while throttled: guessing gains nothing.
    throttled = client.login("victim")
    assert throttled.status_code == 429 and "Retry-After" in throttled.headers
    assert "login refused by user:victim" in console.wait_log("login refused by user:victim")


def test_guessing_from_one_address_does_not_lock_the_user_out_elsewhere(console, as_user):
    console.cli("user", "add", "locked", "--role", "admin", "--password-stdin",
                input=(PASSWORD + "\n").encode())
    guesser = as_user(source="127.0.0.2")
    codes = [guesser.login("locked", f"guess number {n}").status_code for n in range(4)]
    assert codes == [401, 401, 401, 429]
    assert guesser.login("locked").status_code == 429
    # The user, from another address, still logs in; the guesser stays refused.
    assert as_user(source="127.0.0.3").login("locked").status_code == 200
    assert guesser.login("locked").status_code == 429
    assert "too many failures for this user from this address" in console.log()


def test_guessing_spread_over_many_addresses_reaches_the_per_user_limit(console, as_user):
    # The console allows 3 failures per user and address, 6 per user in all.
    console.cli("user", "add", "spread", "--password-stdin",
                input=(PASSWORD + "\n").encode())
    for source in ("127.0.0.4", "127.0.0.5"):
        guesser = as_user(source=source)
        assert [guesser.login("spread", f"guess {n}").status_code
                for n in range(3)] == [401, 401, 401]
    refused = as_user(source="127.0.0.6").login("spread")
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "too many failures for this user from all addresses" in console.log()
    # Other users are not affected.
    assert as_user(source="127.0.0.6").login("bob").status_code == 200


def test_the_per_user_limit_spares_the_address_the_user_logs_in_from(console, as_user):
    console.cli("user", "add", "regular", "--password-stdin",
                input=(PASSWORD + "\n").encode())
    home = as_user(source="127.0.0.7")
    assert home.login("regular").status_code == 200
    for source in ("127.0.0.8", "127.0.0.9"):
        guesser = as_user(source=source)
        assert [guesser.login("regular", f"guess {n}").status_code
                for n in range(3)] == [401, 401, 401]
    assert as_user(source="127.0.0.10").login("regular").status_code == 429
    assert as_user(source="127.0.0.7").login("regular").status_code == 200


def test_a_user_limit_below_the_address_limit_is_refused(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "mailward.toml"
    path.write_text("[web]\nlogin_max_failures = 5\nlogin_max_failures_per_user = 4\n")
    result = subprocess.run([sys.executable, "-m", "mailward", "config", "check", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "web.login_max_failures_per_user: 4 is below login_max_failures (5)" \
        in result.stderr


def test_session_change_without_csrf_token_is_refused(console, as_user, sink):
    client = as_user("admin")
    del client.http.headers["X-CSRF-Token"]
    answer = client.post("/api/v1/senders", json={"kind": "block", "sender": "@x.example"})
    assert answer.status_code == 403 and "CSRF" in answer.json()["detail"]
    client.http.headers["X-CSRF-Token"] = "forged" + client.csrf[6:]
    assert client.post("/api/v1/senders",
                       json={"kind": "block", "sender": "@x.example"}).status_code == 403
    client.http.headers["X-CSRF-Token"] = client.csrf
    assert client.get("/api/v1/senders").json()["items"] == [] or all(
        r["sender"] != "@x.example" for r in client.get("/api/v1/senders").json()["items"])
    refused = client.get("/api/v1/audit", params={"action": "csrf"}).json()["items"]
    assert len(refused) >= 2 and refused[0]["outcome"] == "refused"


def test_console_form_with_forged_csrf_is_refused(console, as_user):
    client = as_user("admin")
    answer = client.http.post("/console/admin/users",
                              data={"username": "mallory", "role": "admin",
                                    "password": PASSWORD, "csrf": "forged"},
                              headers={"X-CSRF-Token": ""})
    assert answer.status_code == 403
    names = [u["username"] for u in client.get("/api/v1/users").json()["items"]]
    assert "mallory" not in names


def test_login_form_needs_its_csrf_cookie(console):
    with httpx.Client(base_url=console.web_url) as http:
        answer = http.post("/login", data={"username": "admin", "password": PASSWORD,
                                           "csrf": "made-up"})
        assert answer.status_code == 403
        assert "mw_session" not in answer.headers.get("set-cookie", "")


def test_a_throttled_login_form_says_when_to_try_again(console):
    transport = httpx.HTTPTransport(local_address="127.0.0.7")
    with httpx.Client(base_url=console.web_url, transport=transport) as http:
        codes = []
        for attempt in range(4):
            page = http.get("/login")
            token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            answer = http.post("/login", data={"username": "admin", "csrf": token,
                                               "password": f"wrong {attempt}"})
            codes.append(answer.status_code)
        assert codes == [401, 401, 401, 429]
        assert int(answer.headers["Retry-After"]) > 0


def test_login_form_follows_only_local_paths(console):
    with httpx.Client(base_url=console.web_url) as http:
        page = http.get("/login")
        token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answer = http.post("/login", data={"username": "admin", "password": PASSWORD,
                                           "csrf": token, "next": "//evil.example/x"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/quarantine"


def test_logout_ends_the_session(console, as_user):
    client = as_user("bob")
    assert client.post("/api/v1/auth/logout").status_code == 200
    assert client.get("/api/v1/auth/me").status_code == 401


def test_pages_redirect_to_login_without_a_session(console):
    answer = httpx.get(f"{console.web_url}/console/trace?sender=x")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fconsole%2Ftrace%3Fsender%3Dx"


def test_the_console_address_of_the_readme_leads_to_the_console(console, as_user):
    for path in ("/console", "/console/", "/"):
        answer = httpx.get(f"{console.web_url}{path}")
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/console/quarantine", path
    answer = httpx.get(f"{console.web_url}/console/login?next=%2Fconsole%2Ftrace")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fconsole%2Ftrace"
    assert httpx.get(f"{console.web_url}/login").status_code == 200
    client = as_user("alice")
    home = client.get("/console/")
    assert home.status_code == 303
    assert client.get(home.headers["location"]).status_code == 200


def test_no_credentials_and_bad_tokens_get_401(console):
    base = console.web_url
    assert httpx.get(f"{base}/api/v1/quarantine").status_code == 401
    bad = {"Authorization": "Bearer mw_not-a-real-token"}
    assert httpx.get(f"{base}/api/v1/quarantine", headers=bad).status_code == 401
    assert httpx.get(f"{base}/api/v1/trace", headers=bad).status_code == 401


def test_token_scopes_limit_what_it_may_do(console, as_user):
    reader = console.cli("token", "create", "reader", "--scope", "quarantine:read"
                         ).stdout.decode().strip()
    client = as_user(token=reader)
    assert client.get("/api/v1/quarantine").status_code == 200
    assert client.get("/api/v1/trace").status_code == 403
    assert client.post("/api/v1/quarantine/bulk",
                       json={"action": "delete", "ids": ["x"]}).status_code == 403
    assert client.get("/api/v1/users").status_code == 403


def test_token_bound_to_a_user_acts_as_that_user(console, as_user):
    token = console.cli("token", "create", "bob-script", "--user", "bob").stdout.decode().strip()
    client = as_user(token=token)
    me = client.get("/api/v1/auth/me").json()
    assert me["role"] == "user" and me["addresses"] == ["bob@example.com"]
    assert client.get("/api/v1/trace").status_code == 403
    assert client.get("/api/v1/users").status_code == 403


def test_revoked_token_is_refused(console, as_user):
    admin = as_user("admin")
    created = admin.post("/api/v1/tokens", json={"name": "short-lived",
                                                 "scopes": ["trace:read"]})
    assert created.status_code == 201
    client = as_user(token=created.json()["token"])
    assert client.get("/api/v1/trace").status_code == 200
    [row] = [t for t in admin.get("/api/v1/tokens").json()["items"]
             if t["name"] == "short-lived"]
    assert admin.delete(f"/api/v1/tokens/{row['id']}").status_code == 200
    assert client.get("/api/v1/trace").status_code == 401
    assert admin.delete(f"/api/v1/tokens/{row['id']}").status_code == 404


def test_malformed_scope_is_refused(console, as_user):
    admin = as_user("admin")
    answer = admin.post("/api/v1/tokens", json={"name": "x", "scopes": ["quarantine read"]})
    assert answer.status_code == 422


def test_users_api_is_for_admins_only(console, as_user):
    analyst = as_user("analyst")
    assert analyst.get("/api/v1/users").status_code == 403
    assert analyst.post("/api/v1/users", json={"username": "eve", "role": "admin",
                                               "password": PASSWORD}).status_code == 403
    admin = as_user("admin")
    made = admin.post("/api/v1/users", json={"username": "carol", "password": PASSWORD,
                                             "addresses": ["carol@example.com"],
                                             "digest": "6"})
    assert made.status_code == 201 and made.json()["digest"] == "every 6h"
    assert admin.post("/api/v1/users", json={"username": "carol",
                                             "password": PASSWORD}).status_code == 422
    assert admin.post("/api/v1/users", json={"username": "dave", "password": "short"}
                      ).status_code == 422
    assert admin.post("/api/v1/users", json={"username": "<b>x</b>", "password": PASSWORD}
                      ).status_code == 422
    carol = made.json()["id"]
    changed = admin.patch(f"/api/v1/users/{carol}", json={"disabled": True})
    assert changed.status_code == 200 and changed.json()["disabled"] is True
    assert Console(console).login("carol").status_code == 401
    assert admin.patch("/api/v1/users/99999", json={"role": "user"}).status_code == 404
    audit = admin.get("/api/v1/audit", params={"target": "carol"}).json()["items"]
    assert {e["action"] for e in audit} >= {"user.add", "user.change"}


def test_account_changes_schedule_and_password(console, as_user):
    console.cli("user", "add", "erin", "--password-stdin", "--address", "erin@example.com",
                input=(PASSWORD + "\n").encode())
    client = as_user("erin")
    assert client.patch("/api/v1/account", json={"digest": "daily"}).json()["digest"] == "daily"
    assert client.patch("/api/v1/account", json={"digest": "sometimes"}).status_code == 422
    # A field the account cannot change is refused by name, never silently ignored.
    promote = client.patch("/api/v1/account", json={"role": "admin"})
    assert promote.status_code == 422 and "role" in promote.text
    assert client.get("/api/v1/auth/me").json()["role"] == "user"
    wrong = client.patch("/api/v1/account", json={"password": "a new password here",
                                                  "current_password": "wrong"})
    assert wrong.status_code == 403
    ok = client.patch("/api/v1/account", json={"password": "a new password here",
                                               "current_password": PASSWORD})
    assert ok.status_code == 200
    # Changing the password ends the sessions.
    assert client.get("/api/v1/account").status_code == 401
    assert Console(console).login("erin", "a new password here").status_code == 200


def _refused_from(admin, username: str) -> set[str]:
    audit = admin.get("/api/v1/audit", params={"action": "login", "outcome": "refused"}).json()
    return {e["client_ip"] for e in audit["items"] if e["target"] == username}


def test_forwarded_for_is_not_believed_without_trusted_proxies(console, as_user):
    console.cli("user", "add", "proxied", "--password-stdin",
                input=(PASSWORD + "\n").encode())
    guesser = as_user()  # from 127.0.0.1, where a local reverse proxy would be
    codes = [guesser.login_via("proxied", f"guess {n}", f"198.51.100.{n + 1}").status_code
             for n in range(4)]
    # Each guess names another address, yet all count against the peer's.
    assert codes == [401, 401, 401, 429]
    refused = _refused_from(as_user("admin"), "proxied")
    assert refused == {"127.0.0.1"}


def test_forwarded_for_is_believed_from_a_trusted_proxy(tmp_path, sink):
    from tests.web.conftest import start_console

    gateway = start_console(tmp_path / "proxied", sink, trusted_proxies=["127.0.0.2/32"])
    try:
        proxy = Console(gateway, source="127.0.0.2")
        codes = [proxy.login_via("bob", f"guess {n}", f"198.51.100.{n + 1}").status_code
                 for n in range(4)]
        assert codes == [401, 401, 401, 401]  # four clients behind the proxy, one guess each
        # A peer that is not a listed proxy is not believed.
        other = Console(gateway, source="127.0.0.3")
        assert other.login_via("bob", "guess", "203.0.113.9").status_code == 401
        admin = Console(gateway)
        assert admin.login("admin").status_code == 200
        assert _refused_from(admin, "bob") == {f"198.51.100.{n + 1}" for n in range(4)} | {
            "127.0.0.3"}
        for client in (proxy, other, admin):
            client.close()
    finally:
        gateway.stop()
