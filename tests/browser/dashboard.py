"""The dashboard in a real browser: Debian's Chromium, headless, driven by
Playwright for Python, against the real hookflow binary on 127.0.0.1.

Run by the end-to-end test `dashboard::the_dashboard_in_a_real_browser`,
which builds the plugins, lays out the workflow directory and installs
Playwright and axe-core; it passes the rest on the command line. The script
starts (and once restarts) the server itself, checks what an operator sees,
writes the README's screenshots, and exits non-zero with a screenshot of
the page on the first failure.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

from playwright.sync_api import sync_playwright, expect

XSS = "<img src=x onerror=alert(1)>"
# Generous: the CI machine is loaded; none of these is a speed claim.
WAIT_MS = 15_000


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


class Server:
    """The hookflow process: started on a free port, restarted on the same."""

    def __init__(self, args):
        self.args = args
        self.proc = None
        self.base = None
        self.log = open(os.path.join(args.out, "server.log"), "ab")

    def start(self):
        listen = urlparse(self.base).netloc if self.base else "127.0.0.1:0"
        env = dict(os.environ, HOOKFLOW_ADMIN_TOKEN=self.args.token, HOOKFLOW_LOG="warn")
        self.proc = subprocess.Popen(
            [self.args.hookflow, "serve", "--dir", self.args.dir, "--db", self.args.db,
             "--listen", listen],
            stdout=subprocess.PIPE, stderr=self.log, env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise Failure("hookflow exited before listening")
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                self.base = found.group(1)
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return
        raise Failure("hookflow did not start listening")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def url(self, path):
        return self.base + path

    def send(self, path, token, payload):
        """A signed-in webhook; returns the execution id."""
        request = urllib.request.Request(
            self.url("/hooks/" + path), data=json.dumps(payload).encode(), method="POST",
            headers={"authorization": "Bearer " + token, "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            check(answer.status == 202, f"webhook answered {answer.status}")
            return json.load(answer)["execution_id"]

    def api(self, path, method="GET", headers=None):
        request = urllib.request.Request(
            self.url(path), method=method,
            headers=dict({"authorization": "Bearer " + self.args.token}, **(headers or {})))
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as e:
            return e.code, None

    def wait_finished(self, id):
        deadline = time.time() + 60
        while time.time() < deadline:
            status, record = self.api(f"/api/v1/executions/{id}")
            if status == 200 and record["status"] not in ("queued", "running"):
                return record
            time.sleep(0.1)
        raise Failure(f"execution {id} did not finish")


class Watch:
    """What the page did that it must not: console errors, CSP violations,
    dialogs, requests to any host but 127.0.0.1."""

    def __init__(self):
        self.console_errors = []
        self.foreign_requests = []
        self.dialogs = []
        self.confirms = 0
        # Console lines a step provokes on purpose (the browser logs every
        # 401 and every refused connection as an error).
        self.allowed = []

    class Allow:
        def __init__(self, watch, pattern):
            self.watch, self.pattern = watch, re.compile(pattern)

        def __enter__(self):
            self.watch.allowed.append(self.pattern)

        def __exit__(self, *_):
            self.watch.allowed.remove(self.pattern)

    def allow(self, pattern):
        """Within `with`, console errors matching `pattern` are expected."""
        return Watch.Allow(self, pattern)

    def console(self, message):
        if message.type != "error":
            return
        if any(p.search(message.text) for p in self.allowed):
            return
        self.console_errors.append(message.text)

    def attach(self, context):
        context.on("request", self.request)
        context.on("page", self.page)

    def page(self, page):
        page.on("console", self.console)
        page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))
        page.on("dialog", self.dialog)

    def request(self, request):
        host = urlparse(request.url).hostname
        if request.url.startswith(("data:", "blob:")):
            return
        if host != "127.0.0.1":
            self.foreign_requests.append(request.url)

    def dialog(self, dialog):
        if dialog.type == "confirm" and "Replay" in dialog.message:
            self.confirms += 1
            dialog.accept()
        else:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

    def assert_clean(self, when):
        check(not self.dialogs, f"{when}: unexpected dialogs {self.dialogs}")
        check(not self.console_errors, f"{when}: console errors {self.console_errors}")
        check(not self.foreign_requests, f"{when}: requests off 127.0.0.1 {self.foreign_requests}")


def axe(page, args, what):
    """axe-core in the page: no serious or critical violation."""
    # Evaluated through the browser's debugging protocol, which the page's
    # CSP does not govern (a <script> tag would be refused, rightly).
    if not page.evaluate("!!window.axe"):
        with open(args.axe) as f:
            page.evaluate(f.read() + "\n;void 0")
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    check(not bad, f"axe on the {what} page: {json.dumps(bad, indent=1)}")
    print(f"  axe on the {what} page: {len(result)} minor or moderate, 0 serious or critical")


def row(page, id):
    return page.locator(f'#executions tr[data-id="{id}"]')


def row_ids(page):
    return page.locator("#executions tbody tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)")


def run(args, pw, server, watch):
    browser = pw.chromium.launch(
        executable_path=args.chromium, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-dev-shm-usage"])
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    # The page's CSP violations, whichever way they surface.
    context.add_init_script("""
        window.__csp = [];
        document.addEventListener('securitypolicyviolation',
            e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
    """)
    watch.attach(context)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    args.page = page

    def csp_clean(when):
        violations = page.evaluate("window.__csp")
        check(not violations, f"{when}: CSP violations {violations}")

    print("login: a bad token is refused, the right one opens the list")
    with watch.allow("status of 401"):
        page.goto(server.url("/ui/"))
        expect(page.locator("#login-form")).to_be_visible()
        axe(page, args, "login")
        page.fill("#token", "not-the-token")
        page.locator("#login-form button[type=submit]").click()
        expect(page.locator("#login-error")).to_be_visible()
        expect(page.locator("#login-error")).not_to_be_empty()
    check(args.token not in page.content(), "the token shows in the page")
    page.fill("#token", args.token)
    page.locator("#login-form button[type=submit]").click()
    expect(page.locator("#executions")).to_be_visible()
    check(args.token not in page.url, "the token shows in the URL")
    cookies = context.cookies()
    session = [c for c in cookies if c["name"] == "hookflow_session"]
    check(session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict",
          f"the session cookie is HttpOnly and SameSite=Strict: {cookies}")
    check(page.evaluate("document.cookie").find("hookflow_session") < 0,
          "scripts can read the session cookie")

    print("live: a webhook appears and turns succeeded; a failing one turns failed")
    ok = server.send("ok", "ok-token", {"order": 1, "note": "hello"})
    expect(row(page, ok)).to_have_attribute("data-status", "succeeded")
    bad = server.send("bad", "bad-token", {"order": 2, "note": XSS})
    expect(row(page, bad)).to_have_attribute("data-status", "failed")
    expect(row(page, bad)).to_contain_text("failed")
    axe(page, args, "executions")
    csp_clean("executions list")

    print("detail: the error and logs of the failed one, as text; the waterfall")
    row(page, bad).locator(f'a[href="/ui/executions/{bad}"]').click()
    expect(page).to_have_url(re.compile(f"/ui/executions/{bad}$"))
    expect(page.locator("#execution-error")).to_contain_text(XSS)
    expect(page.locator("pre.logs").first).to_be_visible()
    logs = " ".join(page.locator("pre.logs").all_text_contents())
    check(XSS in logs, f"the log line shows the payload as text: {logs!r}")
    check(page.locator("img[src=x]").count() == 0, "the payload became an <img>")
    check(XSS in page.locator("main").inner_text(), "the payload is shown literally")
    expect(page.locator("#waterfall > li")).to_have_count(2)
    widths = page.locator("#waterfall .bar").evaluate_all(
        "bars => bars.map(b => b.getBoundingClientRect().width)")
    check(len(widths) == 2 and all(w > 0 for w in widths), f"one visible bar per step: {widths}")
    axe(page, args, "execution")
    csp_clean("execution detail")

    print("replay: asks first, then links the new execution to the original")
    page.locator("#replay").click()
    expect(page.locator("#replay-result a")).to_be_visible()
    check(watch.confirms == 1, f"replay asked for confirmation {watch.confirms} times")
    href = page.locator("#replay-result a").get_attribute("href")
    replay = href.rsplit("/", 1)[-1]
    check(replay != bad, "replay made a new execution")
    record = server.wait_finished(replay)
    check(record.get("replay_of") == bad, f"the replay's record links the original: {record}")
    page.locator("#replay-result a").click()
    expect(page).to_have_url(re.compile(f"/ui/executions/{replay}$"))
    expect(page.locator(f'main a[href="/ui/executions/{bad}"]')).to_be_visible()

    print("a body that is not UTF-8: shown with its bytes escaped")
    request = urllib.request.Request(
        server.url("/hooks/ok"), data=b"caf\xc3\xa9 \xff\xfe end", method="POST",
        headers={"authorization": "Bearer ok-token", "content-type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        binary = json.load(answer)["execution_id"]
    page.goto(server.url(f"/ui/executions/{binary}"))
    expect(page.locator("#payload")).to_contain_text("caf\u00e9 \\xFF\\xFE end")
    expect(page.locator("#body-download")).to_be_visible()

    print("a large payload: truncated in the page, whole when copied")
    big = server.send("ok", "ok-token", {"blob": "x" * 100_000})
    page.goto(server.url(f"/ui/executions/{big}"))
    viewer = page.locator('.viewer[data-viewer="Payload"]')
    expect(viewer.locator(".viewer-note")).to_contain_text("Truncated")
    shown = viewer.locator("pre").first.text_content()
    check(len(shown) < 70_000, f"{len(shown)} characters of payload in the page")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
    viewer.get_by_role("button", name="Raw").click()
    viewer.get_by_role("button", name="Copy").click()
    expect(viewer).to_contain_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    check(json.loads(copied) == {"blob": "x" * 100_000}, "the copy holds the whole payload")
    with page.expect_download() as download:
        viewer.get_by_role("button", name="Download").click()
    with open(download.value.path()) as f:
        check(json.load(f) == {"blob": "x" * 100_000}, "the download holds the whole payload")

    print("the succeeded one: its detail, for the README")
    page.goto(server.url(f"/ui/executions/{ok}"))
    expect(page.locator("#waterfall > li")).to_have_count(2)
    page.wait_for_timeout(300)
    page.screenshot(path=os.path.join(args.screenshots, "execution.png"), full_page=True)

    print("pause: no change while paused; resume fills in")
    page.goto(server.url("/ui/"))
    expect(row(page, ok)).to_be_visible()
    toggle = page.locator("#live-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    paused = server.send("ok", "ok-token", {"order": 3})
    server.wait_finished(paused)
    page.wait_for_timeout(3000)
    check(row(page, paused).count() == 0, "a row arrived while paused")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(row(page, paused)).to_have_attribute("data-status", "succeeded")
    page.wait_for_timeout(500)
    page.screenshot(path=os.path.join(args.screenshots, "executions.png"))

    print("filters: several statuses, search; they survive a reload")
    page.locator('#f-status-failed').check()
    page.locator("#filters button[type=submit]").click()
    expect(row(page, ok)).to_have_count(0)
    expect(row(page, bad)).to_be_visible()
    check("status=failed" in page.url.replace("%2C", ","), f"the filter is in the URL: {page.url}")
    page.reload()
    expect(row(page, bad)).to_be_visible()
    expect(row(page, ok)).to_have_count(0)
    expect(page.locator('#f-status-failed')).to_be_checked()
    statuses = page.locator("#executions tbody tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.status)")
    check(statuses and set(statuses) == {"failed"}, f"only failed rows: {statuses}")
    page.goto(server.url("/ui/?q=hello"))
    expect(row(page, ok)).to_be_visible()
    expect(row(page, bad)).to_have_count(0)
    expect(page.locator("#f-q")).to_have_value("hello")
    page.goto(server.url(f"/ui/?status=succeeded,running&workflow=ok"))
    expect(row(page, ok)).to_be_visible()
    expect(row(page, bad)).to_have_count(0)

    print("paging: no duplicates while new executions arrive")
    for i in range(55):
        server.send("ok", "ok-token", {"order": 100 + i})
    page.goto(server.url("/ui/"))
    expect(page.locator("#load-more")).to_be_visible()
    arriving = [server.send("ok", "ok-token", {"order": 200 + i}) for i in range(5)]
    for _ in range(10):
        if not page.locator("#load-more").is_visible():
            break
        page.locator("#load-more").click()
        page.wait_for_timeout(500)
    for id in arriving:
        expect(row(page, id)).to_be_visible()
    ids = row_ids(page)
    check(len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicate rows")
    _, listed = server.api("/api/v1/executions?limit=500")
    check(set(ids) == {e["id"] for e in listed["executions"]},
          f"the list shows {len(ids)} of {len(listed['executions'])} executions")

    print("restart: the page reconnects and fills in what it missed")
    with watch.allow("ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET"):
        server.stop()
        page.wait_for_timeout(1000)
        server.start()
        missed = server.send("ok", "ok-token", {"order": 999})
        server.wait_finished(missed)
        expect(row(page, missed)).to_have_attribute("data-status", "succeeded",
                                                    timeout=60_000)

    print("workflows: load state, enable and disable, a broken manifest's error")
    page.goto(server.url("/ui/workflows"))
    workflows = page.locator("#workflows")
    expect(workflows).to_contain_text("ok")
    expect(workflows).to_contain_text("loaded")
    axe(page, args, "workflows")
    ok_row = workflows.locator("tbody tr", has_text="ok.toml")
    ok_row.get_by_role("button", name=re.compile("Disable")).click()
    expect(ok_row.get_by_role("button", name=re.compile("Enable"))).to_be_visible()
    status, listed = server.api("/api/v1/workflows")
    entry = [w for w in listed["workflows"] if w.get("name") == "ok"][0]
    check(entry["enabled"] is False, f"disabled through the page: {entry}")
    ok_row.get_by_role("button", name=re.compile("Enable")).click()
    expect(ok_row.get_by_role("button", name=re.compile("Disable"))).to_be_visible()
    manifest = os.path.join(args.dir, "ok.toml")
    with open(manifest, "a") as f:
        f.write("\n[[steps]]\nplugin = \"plugins/missing.wasm\"\n")
    expect(workflows.locator("tbody tr", has_text="ok.toml")).to_contain_text(
        re.compile(r"ok\.toml:\d+"), timeout=30_000)
    expect(workflows.locator("tbody tr", has_text="ok.toml")).to_contain_text("stale")
    page.wait_for_timeout(300)
    page.screenshot(path=os.path.join(args.screenshots, "workflows.png"))
    csp_clean("workflows")

    print("logout: back to login; the cookie no longer works")
    with watch.allow("status of 401"):
        page.get_by_role("button", name=re.compile("Log out")).click()
        expect(page.locator("#login-form")).to_be_visible()
        status = page.evaluate("fetch('/api/v1/session').then(r => r.status)")
    check(status == 401, f"after logout the session answers {status}")
    check(session[0]["value"] not in page.content(), "the cookie shows in the page")

    watch.assert_clean("the whole run")
    browser.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hookflow", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--axe", required=True)
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    args.page = None
    check_browser = os.path.exists(args.chromium)
    if not check_browser:
        print(f"no browser at {args.chromium}: install Debian's chromium", file=sys.stderr)
        return 1
    server = Server(args)
    watch = Watch()
    server.start()
    try:
        with sync_playwright() as pw:
            try:
                run(args, pw, server, watch)
            except Exception as e:
                shot = os.path.join(args.out, "failure.png")
                if args.page is not None:
                    try:
                        args.page.screenshot(path=shot, full_page=True)
                        print(f"screenshot of the failure: {shot}", file=sys.stderr)
                    except Exception as shot_error:
                        print(f"no screenshot: {shot_error}", file=sys.stderr)
                print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
                return 1
    finally:
        server.stop()
    print("the dashboard passed every check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
