"""The dashboard in a real browser against a real Tidegate: sign in, submit a report and
watch it finish, cancel a job, replay a dead letter, read a lane's quota; a screenshot of
each page (desktop and phone) goes to test-artifacts/dashboard/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Up, wait_job

# One browser and one Tidegate for the module: its tests run in one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.xdist_group("browser")]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def context(browser, tidegate: Up) -> Iterator[object]:
    ctx = browser.new_context(viewport=DESKTOP, base_url=tidegate.url, timezone_id="Europe/Paris",
                              locale="en-GB")
    ctx.set_default_timeout(20_000)
    # Assertions wait as long as actions: the suite shares its cores with other tests, and a
    # page that renders in 100 ms alone can take seconds then.
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def page(context) -> Iterator[object]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # (A 404 from GET /v1/events, where the API has no tenant stream, is expected.)
    page.on("console", lambda msg: msg.type == "error"
            and not msg.text.startswith("Failed to load resource") and errors.append(msg.text))
    page.errors = errors
    yield page


@pytest.fixture(autouse=True)
def _no_script_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "page" in request.fixturenames:
        errors = request.getfixturevalue("page").errors
        assert not errors, errors  # no script error on any page


def shot(page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def sign_in(page, key: str) -> None:
    page.fill("#key", key)
    page.click("button[type=submit]")


def test_sign_in_with_an_api_key(page, tidegate: Up, artifacts: Path) -> None:
    from playwright.sync_api import expect

    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, artifacts, "01-sign-in")
    sign_in(page, "tg_not-a-real-key-at-all")
    expect(page.get_by_role("alert")).to_have_text("That key was not accepted.")
    sign_in(page, tidegate.key)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    # `tidegate up`'s key is an admin's: the page names it, and tables show each job's tenant.
    expect(page.locator("#who")).to_have_text("default · admin")
    # Kept in the tab's session, never in the URL.
    assert page.evaluate("sessionStorage.getItem('tidegate.api_key')") == tidegate.key
    assert tidegate.key not in page.url


def test_submit_a_report_and_watch_it_finish(page, tidegate: Up, artifacts: Path) -> None:
    from playwright.sync_api import expect

    page.goto("/#/submit")
    expect(page.locator("#job-type")).to_have_value("startup_report")
    page.fill("#in-startup", "TeslaAI")
    page.fill("#in-focus", "battery supply chain")
    shot(page, artifacts, "02-submit-form")
    page.click("#submit")
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    bar = page.locator("[aria-label='job progress']")
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen.add(int(bar.get_attribute("aria-valuenow")))
        if page.locator("h1 .status").text_content() == "succeeded":
            break
        time.sleep(0.1)
    seen.add(int(bar.get_attribute("aria-valuenow")))
    assert max(seen) == 100, seen
    assert any(0 < v < 100 for v in seen), f"the bar never showed progress between: {seen}"
    # The report is rendered as formatted text (headings), not shown as Markdown source.
    expect(page.locator(".markdown h1")).to_have_text("TeslaAI: research memo")
    expect(page.locator(".markdown h2").first).to_have_text("Summary")
    assert "# TeslaAI" not in page.locator(".markdown").inner_text()
    # Each LLM call with its lane, tokens and cost.
    rows = page.locator("table.calls tbody tr")
    expect(rows).to_have_count(7)
    assert re.search(r"(openai|anthropic|gemini):", rows.first.inner_text())
    assert " tok" in rows.first.inner_text() and "$" in rows.first.inner_text()
    expect(page.locator(".timeline li[data-kind=submitted]")).to_have_count(1)
    expect(page.locator("#cancel")).to_be_disabled()
    shot(page, artifacts, "03-job-report")
    page.goto("/#/jobs")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    expect(row.locator(".status")).to_have_text("succeeded")
    assert row.locator(".bar").get_attribute("aria-valuenow") == "100"
    assert "$" in row.inner_text()
    expect(page.locator("table.jobs th", has_text="Tenant")).to_be_visible()
    assert "default" in row.inner_text()


def test_a_job_page_reconnects_when_the_server_closes_its_stream_early(page,
                                                                      tidegate: Up) -> None:
    """An API process restarting closes the streams it serves: the page connects again,
    resuming after the last event it has, instead of freezing its progress bar."""
    from playwright.sync_api import expect

    with tidegate.http() as client:
        job_id = client.post("/v1/jobs", json={"type": "echo", "input": {
            "text": "restarts", "sleep_s": 4, "steps": 8}}).json()["job_id"]
    resumed_after: list[str | None] = []

    def close_the_first(route) -> None:
        resumed_after.append(route.request.headers.get("last-event-id"))
        if len(resumed_after) == 1:  # what a restarting API process sends: then it closes
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"},
                          body=": tidegate events\nretry: 200\n\n")
        else:
            route.continue_()

    pattern = f"**/v1/jobs/{job_id}/events"
    page.route(pattern, close_the_first)
    try:
        page.goto(f"/#/jobs/{job_id}")
        expect(page.locator("h1 .status")).to_have_text("succeeded", timeout=60_000)
        expect(page.locator("[aria-label='job progress']")).to_have_attribute(
            "aria-valuenow", "100")
    finally:
        page.unroute(pattern)
    assert len(resumed_after) >= 2 and resumed_after[0] is not None
    assert resumed_after[1] == resumed_after[0]  # it had no newer event: the same id again
    with tidegate.http() as client:
        history = client.get(f"/v1/jobs/{job_id}/history").json()
    # Every event once on the timeline: none lost in the gap, none repeated by the resume.
    expect(page.locator(".timeline li")).to_have_count(len(history))


def test_cancel_a_running_job(page, tidegate: Up, artifacts: Path) -> None:
    from playwright.sync_api import expect

    with tidegate.http() as client:
        job_id = client.post("/v1/jobs", json={"type": "echo", "input": {
            "text": "long", "sleep_s": 60, "steps": 60}}).json()["job_id"]
    page.goto("/#/jobs")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    expect(row).to_be_visible()  # a new job appears in the table by itself
    expect(row.locator(".status")).to_have_text("running", timeout=30_000)
    expect(row.locator(".bar")).not_to_have_attribute("aria-valuenow", "0", timeout=10_000)
    shot(page, artifacts, "04-jobs-table")
    row.locator("a").click()
    page.locator("#cancel").focus()
    page.keyboard.press("Enter")  # usable with the keyboard
    expect(page.locator("h1 .status")).to_have_text("cancelled", timeout=20_000)
    with tidegate.http() as client:
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    shot(page, artifacts, "05-job-cancelled")


def test_replay_a_dead_letter(page, tidegate: Up, artifacts: Path) -> None:
    from playwright.sync_api import expect

    with tidegate.http() as client:
        job_id = client.post("/v1/jobs", json={"type": "dash_fails_once",
                                               "input": {"name": "dl"}}).json()["job_id"]
        assert wait_job(client, job_id)["status"] == "failed"
    page.goto("/#/dead")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    expect(row).to_contain_text("upstream_down")
    expect(page.locator("#replay-all")).to_be_enabled()
    shot(page, artifacts, "06-dead-letters")
    row.locator("button.replay").click()
    with tidegate.http() as client:
        job = wait_job(client, job_id)
        assert job["status"] == "succeeded" and job["result"]["replayed"] == "yes"
    expect(page.locator(f"tr[data-job-id='{job_id}']")).to_have_count(0)
    page.goto(f"/#/jobs/{job_id}")
    expect(page.locator("h1 .status")).to_have_text("succeeded")
    expect(page.locator(".timeline li[data-kind=failed]")).to_have_count(1)
    expect(page.locator("pre")).to_contain_text('"replayed": "yes"')  # JSON result


def test_lane_quota_and_queues(page, tidegate: Up, artifacts: Path) -> None:
    from playwright.sync_api import expect

    page.goto("/#/lanes")
    lane = page.locator("section.lane").first
    expect(lane).to_be_visible()
    expect(lane.locator(".rpm")).to_contain_text(re.compile(r"\d[\d,]* req/min|no limit"))
    expect(lane.locator(".used")).to_contain_text("req")
    time.sleep(3.5)  # a second sample for the chart
    # Two samples or more: a line over time (flat while nothing runs).
    expect(lane.locator("svg.chart polyline").first).to_have_attribute(
        "points", re.compile(r"^\S+ \S+"))
    shot(page, artifacts, "07-lanes")
    page.goto("/#/queues")
    expect(page.locator("table.queues tr[data-queue=high]")).to_be_visible()
    expect(page.locator("table.workers tbody tr")).to_have_count(1)
    shot(page, artifacts, "08-queues")


def test_a_revoked_key_signs_the_page_out(browser, tidegate: Up) -> None:
    from playwright.sync_api import expect

    with tidegate.http() as client:
        made = client.post("/v1/keys", json={"tenant": "default", "scope": "read",
                                             "name": "revoked in the browser test"}).json()
    ctx = browser.new_context(viewport=DESKTOP, base_url=tidegate.url)
    try:
        page = ctx.new_page()
        page.goto("/")
        sign_in(page, made["key"])
        expect(page.get_by_role("heading", name="Jobs")).to_be_visible(timeout=20_000)
        page.wait_for_timeout(1000)  # the tenant stream is open
        with tidegate.http() as client:
            r = client.post(f"/v1/keys/{made['record']['id']}/revoke")
            assert r.status_code == 200, r.text
        # The open stream ends with `unauthorized`: back to sign-in, the key forgotten.
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=10_000)
        assert page.evaluate("sessionStorage.getItem('tidegate.api_key')") is None
    finally:
        ctx.close()


def test_phone_sized_screen(browser, tidegate: Up, page, artifacts: Path) -> None:
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport=PHONE, base_url=tidegate.url, is_mobile=True,
                              has_touch=True, timezone_id="America/New_York")
    try:
        phone = ctx.new_page()
        phone.goto("/")
        sign_in(phone, tidegate.key)
        expect(phone.locator("table.jobs")).to_be_visible()
        # Nothing wider than the screen but the table's own scroller.
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(phone, artifacts, "09-phone-jobs")
        phone.locator("table.jobs tbody tr a").first.click()
        expect(phone.locator("h1 .status")).to_be_visible()
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(phone, artifacts, "10-phone-job")
        phone.goto("/#/lanes")
        expect(phone.locator("section.lane").first).to_be_visible()
        shot(phone, artifacts, "11-phone-lanes")
    finally:
        ctx.close()


def test_the_run_logged_json_lines_with_job_fields(tidegate: Up) -> None:
    import json

    lines = [json.loads(line.split("| ", 1)[1]) for line in tidegate.log.read_text().splitlines()
             if line.startswith(("api", "worker", "beat")) and "| {" in line]
    events = {}
    for line in lines:
        events.setdefault(line["event"], []).append(line)
    calls = events["llm_call"]
    assert len(calls) >= 7
    for call in calls:
        assert call["type"] == "startup_report" and call["tenant"] == "default"
        assert re.fullmatch(r"(openai|anthropic|gemini):.+", call["lane"])
        assert isinstance(call["input_tokens"], int) and call["input_tokens"] > 0
        assert call["cost_usd"] > 0
    assert {e["type"] for e in events["task_completed"]} >= {"startup_report", "dash_fails_once"}
    assert [e["code"] for e in events["task_failed"]] == ["upstream_down"]
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # the API's lines too
    assert not any(tidegate.key in json.dumps(line) for line in lines)
