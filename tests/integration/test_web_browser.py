"""The web page in a real browser (Debian's chromium, driven by Playwright) against the real stack.

No browser is downloaded: Playwright only drives /usr/bin/chromium (.ci/run installs it). The whole
flow runs as a user would: the example inputs, the preflight and its preview, a render followed over
Server-Sent Events, the segments played while it renders, the result played and downloaded.
Screenshots land in the test's tmp folder (the last one is what docs/screenshot.png shows).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.integration.stack import KEY_A, Stack

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does)"),
]
# a few small segments: progress moves several times and the live playlist grows
PARAMS = {"#p-height": "64", "#p-steps": "2", "#p-seed": "3", "#p-segment-frames": "8", "#p-max-duration": "2"}
PHONE = {"width": 412, "height": 915}
DESKTOP = {"width": 1280, "height": 1000}
RENDER_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, stack: Stack, tmp_path: Path) -> Iterator:
    context = browser.new_context(base_url=stack.api, viewport=PHONE, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    console: list[str] = []
    opened.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    opened.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    opened.on("response", lambda answer: answer.status >= 400 and console.append(f"{answer.status}: {answer.url}"))
    yield opened
    (tmp_path / "console.log").write_text("\n".join(console))
    context.close()


def _sign_in(page) -> None:
    page.goto("/")
    page.fill("#api-key", KEY_A)
    page.click("#key-form button")
    expect(page.locator("#key-state")).to_contain_text("saved")


def _playing(page, selector: str) -> None:
    """The video's clock moved: it decoded and played a quarter of a second, not just loaded. (`played`
    holds the ranges actually played, so a short video that has already ended counts too.)"""
    page.wait_for_function("""selector => { const played = document.querySelector(selector).played; let seconds = 0;
        for (let i = 0; i < played.length; i++) seconds += played.end(i) - played.start(i);
        return seconds >= 0.25; }""", arg=selector, timeout=60_000)


def test_the_whole_flow_in_a_browser(page, stack: Stack, tmp_path: Path) -> None:
    _sign_in(page)
    # a fresh browser: the label comes from the workers' announcement (GET /models), before any job
    # (a render process announces once its model is loaded, which may be after the stack is up)
    expect(page.locator("#untrained-banner")).to_be_visible(timeout=60_000)
    page.click("#use-example")
    expect(page.locator("#example-state")).to_contain_text("dance_openpose.json")
    for selector, value in PARAMS.items():
        page.fill(selector, value)

    page.click("#check")
    expect(page.locator("#preflight")).to_be_visible()
    expect(page.locator("#error")).to_be_hidden()
    page.wait_for_function("() => { const img = document.getElementById('preview-image');"
                           " return img.complete && img.naturalWidth > 0; }")
    expect(page.locator("#preflight-segments")).to_contain_text("segments")
    expect(page.locator("#preflight-estimates tbody tr").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page is wider than a phone"
    page.screenshot(path=tmp_path / "1-preflight.png", full_page=True)

    # every value the progress bar takes, recorded in the page (a render may be quick)
    page.evaluate("""() => { window.progressSeen = [];
        setInterval(() => window.progressSeen.push(document.getElementById('job-progress').value), 20); }""")
    page.click("#render")
    expect(page.locator("#job")).to_be_visible()
    job_id = page.locator("#job-id").text_content()
    expect(page.locator("#live-box")).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    expect(page.locator("#untrained-banner")).to_be_visible()
    _playing(page, "#live-video")
    page.screenshot(path=tmp_path / "2-live.png", full_page=True)

    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=RENDER_TIMEOUT_MS)
    expect(page.locator("#live-state")).to_contain_text(re.compile(r"all \d+ segments received"))
    seen = page.evaluate("window.progressSeen")
    assert any(0 < value < 1 for value in seen), f"no progress between 0 and 1 was shown: {sorted(set(seen))}"
    assert seen[-1] == 1
    expect(page.locator("#result-box")).to_be_visible()
    _playing(page, "#result-video")
    assert json.loads(page.locator("#job-params").text_content())["steps"] == 2
    page.screenshot(path=tmp_path / "3-result.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=tmp_path / "4-desktop.png")  # docs/screenshot.png is one of these

    with page.expect_download() as download_info:
        page.click("#download")
    saved = tmp_path / "download.mp4"
    download_info.value.save_as(saved)
    with stack.client() as client:
        job = client.get(f"/jobs/{job_id}").raise_for_status().json()
    result = job["result"]
    assert saved.stat().st_size == result["size_bytes"]
    received = re.search(r"all (\d+) segments", page.locator("#live-state").text_content())
    assert int(received[1]) == len(job["segments"]), "the live player did not get every segment"
    with av.open(str(saved)) as container:
        assert sum(1 for _ in container.decode(video=0)) == result["frames"]

    # the next visit knows the server renders with the untrained model: banner and small defaults at once
    page.goto("/")
    expect(page.locator("#untrained-banner")).to_be_visible()
    expect(page.locator("#p-steps")).not_to_have_value("")


def test_a_bad_upload_shows_the_apis_problem(page, stack: Stack, tmp_path: Path) -> None:
    _sign_in(page)
    not_a_photo = tmp_path / "photo.png"
    not_a_photo.write_text("this is text, not a picture")
    page.set_input_files("#reference-image", str(not_a_photo))
    motion = Path(__file__).resolve().parents[2] / "examples" / "dance_openpose.json"
    page.set_input_files("#motion", str(motion))
    page.fill("#p-fps", "15")
    with stack.client() as client:  # what the API says to the same upload
        expected = client.post("/animate/preflight", files={
            "reference_image": ("photo.png", not_a_photo.read_bytes(), "image/png"),
            "pose_keypoints": ("dance_openpose.json", motion.read_bytes(), "application/json")},
            data={"params": '{"fps": 15}'})
    assert expected.status_code == 422
    # the detail as the API words it; only the name of the request's temporary folder differs
    detail = re.compile(re.sub(r"unianimate\\-\w+\\-\w+", r"unianimate-\\w+-\\w+",
                               re.escape(expected.json()["detail"])))

    page.click("#check")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("(422)")
    expect(error.locator(".detail")).to_have_text(detail)
    page.screenshot(path=tmp_path / "bad-upload.png", full_page=True)

    page.evaluate("() => { const box = document.getElementById('error'); box.replaceChildren(); box.hidden = true; }")
    page.click("#render")  # the same problem from POST /animate, and no job appears
    expect(error).to_be_visible()
    expect(error.locator(".detail")).to_have_text(detail)
    expect(page.locator("#job")).to_be_hidden()
