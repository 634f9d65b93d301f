"""The web page and the example inputs, checked without a browser (tests/integration/test_web_browser.py
drives the page in chromium against the real stack)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from service.api.routes.web import WEB_DIR
from service.settings import ApiSettings

ROOT = Path(__file__).resolve().parents[2]
KEY = "key-web-page-0123456789"


def _page_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/web/[^"]+)"', html)


@pytest.fixture
def examples(tmp_path) -> Path:
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "person.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    (folder / "dance.json").write_text('{"fps": 8, "frames": []}')
    (folder / "notes.txt").write_text("not an input")
    (tmp_path / "secret.json").write_text('{"secret": true}')
    (folder / "leak.json").symlink_to(tmp_path / "secret.json")
    return folder


def test_page_and_its_files_are_served_without_a_key(make_client) -> None:
    client = make_client(api_keys=KEY)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<meta name="viewport"' in page.text
    assets = _page_assets(page.text)
    assert sorted(assets) == ["/web/app.js", "/web/style.css"]
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert answer.content == (WEB_DIR / asset.removeprefix("/web/")).read_bytes()
    assert client.get("/jobs/0123456789abcdef0123456789abcdef").status_code == 401  # the API itself still needs it


def test_unknown_web_file_is_a_problem_404(client) -> None:
    answer = client.get("/web/missing.js")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def test_examples_are_listed_and_served(make_client, examples) -> None:
    client = make_client(examples_dir=examples, api_keys=KEY)
    listed = client.get("/examples").json()["examples"]
    assert "person.png" in listed and "dance.json" in listed and "notes.txt" not in listed
    photo = client.get("/examples/person.png")
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/png"
    assert photo.content == (examples / "person.png").read_bytes()
    assert client.get("/examples/dance.json").headers["content-type"] == "application/json"


@pytest.mark.parametrize("name", ["..%2Fsecret.json", "%2E%2E%2Fsecret.json", ".hidden.json", "notes.txt",
                                  "missing.png", "leak.json", "%2E%2E", "%2Fetc%2Fpasswd"])
def test_example_names_cannot_leave_the_folder(make_client, examples, name) -> None:
    (examples / ".hidden.json").write_text("{}")
    answer = make_client(examples_dir=examples).get(f"/examples/{name}")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"  # never the file behind the name


def test_a_server_without_examples_says_so(make_client, tmp_path) -> None:
    client = make_client(examples_dir=tmp_path / "nowhere")
    answer = client.get("/examples")
    assert answer.status_code == 404
    assert "UNIANIMATE_EXAMPLES_DIR" in answer.json()["detail"]
    assert client.get("/examples/person.png").status_code == 404


def test_default_examples_dir_is_the_checkouts(redis_url) -> None:
    if not (ROOT / "examples").is_dir():
        pytest.skip("this checkout has no examples/")
    assert ApiSettings(redis_url=redis_url).examples_dir == ROOT / "examples"


def test_the_example_files_the_page_asks_for_exist() -> None:
    script = (WEB_DIR / "app.js").read_text()
    names = re.search(r"const EXAMPLE = \{([^}]*)\}", script).group(1)
    for name in re.findall(r'"([^"]+)"', names):
        assert (ROOT / "examples" / name).is_file(), f"the page offers examples/{name}, which does not exist"


def test_every_element_the_script_uses_is_on_the_page() -> None:
    html = (WEB_DIR / "index.html").read_text()
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    used = set(re.findall(r'\$\("([^"]+)"\)', (WEB_DIR / "app.js").read_text()))
    assert used, "the script names no element"
    assert used <= ids, f"app.js uses ids missing from index.html: {sorted(used - ids)}"


def test_the_script_calls_only_documented_endpoints(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    script = (WEB_DIR / "app.js").read_text()
    called = {re.sub(r"\$\{[^}]+\}", "{x}", path) for path in re.findall(r'[`"](/(?:animate|jobs|examples)[^`"?]*)', script)}
    assert called
    templates = {re.sub(r"\{[^}]+\}", "{x}", path) for path in paths}
    missing = called - templates
    assert not missing, f"app.js calls paths the API does not have: {sorted(missing)}"


def test_the_script_never_writes_api_text_as_html() -> None:
    script = (WEB_DIR / "app.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script)


def test_the_page_files_ship_in_the_package() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = [f"service/{pattern}" for pattern in package_data["service"]]
    for path in WEB_DIR.iterdir():
        relative = path.relative_to(ROOT)
        assert any(relative.match(pattern) for pattern in patterns), f"{relative} is not in the package data"
