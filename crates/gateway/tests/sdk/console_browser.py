"""The analyst console in a real browser: Playwright (PyPI) driving Debian's Chromium
(/usr/bin/chromium; no browser download). Signs in (a wrong token first), opens every page,
checks what matters on each, keyboard focus and form labels, refuses a forged form, records a
decision, fails on any console error, and keeps a screenshot of each page in DG_OUT.

Env: DG_URL (the gateway), DG_TOKEN, DG_FLAGGED (a flagged account), DG_OUT. Prints "OK <pages>".
"""
import os
import sys

from playwright.sync_api import sync_playwright

base, token, flagged, out = (os.environ[k] for k in ("DG_URL", "DG_TOKEN", "DG_FLAGGED", "DG_OUT"))
os.makedirs(out, exist_ok=True)
errors = []


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=os.environ.get("DG_CHROMIUM", "/usr/bin/chromium"),
        args=["--no-sandbox"],
    )
    page = browser.new_page()
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(base + "/admin/ui")
    check(page.get_by_label("Admin token").is_visible(), "the sign-in form")
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    check("Wrong token" in page.content(), "a wrong token is refused")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    check(page.get_by_role("heading", name="Overview").is_visible(), "signed in")
    page.screenshot(path=f"{out}/overview.png", full_page=True)

    # Keyboard: the first Tab lands on the console's navigation.
    page.keyboard.press("Tab")
    check(page.evaluate("document.activeElement.tagName") == "A", "keyboard focus on a link")

    pages = {
        "queue": ("/admin/ui/queue", flagged),
        "accounts": ("/admin/ui/accounts", flagged),
        "account": (f"/admin/ui/accounts/{flagged}", "logit_bias_sweep"),
        "groups": ("/admin/ui/groups", "Group"),
        "audit": ("/admin/ui/audit", "detector"),
        "evidence": ("/admin/ui/evidence", "evidence probe"),
    }
    for name, (path, expect) in pages.items():
        page.goto(base + path)
        check(expect in page.content(), f"{name} shows {expect}")
        # Every visible form field has a label.
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                   .filter(e => !document.querySelector(`label[for="${e.id}"]`)).length"""
        )
        check(unlabelled == 0, f"{name}: every field labelled")
        page.screenshot(path=f"{out}/{name}.png", full_page=True)

    # A forged form (no CSRF token) from this very session is refused.
    forged = page.request.post(
        f"{base}/admin/ui/accounts/{flagged}/decide",
        form={"action": "allow", "reason": "forged"},
    )
    check(forged.status in (403, 422), f"forged form refused ({forged.status})")

    # A decision from the account page, then in the audit log.
    page.goto(f"{base}/admin/ui/accounts/{flagged}")
    page.get_by_label("Action").select_option("throttle")
    page.get_by_label("Reason (required, audited)").fill("reviewed in the browser")
    page.get_by_role("button", name="Record the decision").click()
    page.goto(base + "/admin/ui/audit")
    check("reviewed in the browser" in page.content(), "the decision in the audit log")
    check("forged" not in page.content(), "the forged form changed nothing")
    page.screenshot(path=f"{out}/audit-after-decision.png", full_page=True)

    browser.close()

check(not errors, f"console errors: {errors}")
print("OK", len(pages) + 1)
