"""``mnistkit serve`` in a real browser: Playwright driving Debian's Chromium
(``/usr/bin/chromium``; never ``playwright install``) against a server on 127.0.0.1.

Skipped, saying why, only where Chromium or the playwright package is not installed;
``.ci/run`` installs both. ``MNISTKIT_SCREENSHOT=1`` also writes README's screenshot,
``docs/images/serve.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from serve_support import SOFTMAX, drawn_picture, png_bytes, running_server, train

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
#: A little better than the API tests' run, for a fairer screenshot (about 96%).
TWOLAYER = ["--model", "twolayer", "--limit", "30000", "--val-size", "1000", "--epochs", "3",
            "-m", "hidden_size=100"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "serve.png"

if not os.path.exists(CHROMIUM):
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium; "
                f".ci/run does it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is not installed (pip install "
                                      "-e '.[test]')")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser-runs")
    runs = [train(folder / "twolayer", TWOLAYER), train(folder / "softmax", SOFTMAX)]
    with running_server(runs) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    outside: list[str] = []
    opened.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    errors: list[str] = []
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.goto(server.url)
    opened.wait_for_selector("body[data-ready=true]")
    yield opened
    assert not errors, errors
    assert not outside, f"the page fetched from elsewhere: {outside}"
    context.close()


def draw(page, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through ``points`` given as fractions of the pad."""
    box = page.locator("#pad").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def probabilities(page, run: int) -> list[float]:
    bars = page.locator(f".run[data-run='{run}'] .bar")
    return [float(bars.nth(k).get_attribute("data-probability")) for k in range(10)]


def wait_for_answer(page) -> None:
    """Wait until the page's last prediction is shown (nothing queued or on its way)."""
    page.wait_for_selector("body[data-idle=true] .run .bar[data-probability]", state="attached")


def pad_ink(page) -> int:
    return page.evaluate("""() => { const c = document.getElementById('pad');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s; }""")


def test_each_run_has_a_column_with_name_model_and_accuracy(page):
    cards = page.locator(".run")
    assert cards.count() == 2
    assert cards.nth(0).locator(".run-name").inner_text() == "twolayer"
    info = cards.nth(0).locator(".run-info").inner_text()
    assert info.startswith("twolayer, 100 hidden units, test accuracy ") and info.endswith("%")
    assert cards.nth(1).locator(".run-info").inner_text().startswith("softmax, test accuracy")
    assert cards.nth(0).locator(".activations").is_visible()
    assert not cards.nth(1).locator(".activations").is_visible()


def test_a_stroke_updates_the_bars_and_a_drawn_one_is_read_as_1(page):
    draw(page, [(0.5, 0.18), (0.5, 0.5), (0.5, 0.82)])
    wait_for_answer(page)
    for run in (0, 1):
        probs = probabilities(page, run)
        assert abs(sum(probs) - 1) < 1e-3 and all(0 <= p <= 1 for p in probs)
        assert page.locator(f".run[data-run='{run}'] .top-class").inner_text() == "1"
        assert max(probs) == probs[1]
    assert page.locator(".run[data-run='0'] .bar.top").get_attribute("data-class") == "1"
    assert page.locator(".run[data-run='0'] .units li").count() >= 1
    seen = page.evaluate("""() => Array.from(document.getElementById('seen').getContext('2d')
        .getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))""")
    ink = np.array(seen).reshape(28, 28) > 0
    assert not ink[:4].any() and not ink[-4:].any()  # fitted into the 20x20 box, centred
    assert page.locator("#status").inner_text() == "Showing your drawing."


def test_clear_empties_the_pad(page):
    draw(page, [(0.3, 0.3), (0.7, 0.7)])
    wait_for_answer(page)
    assert pad_ink(page) > 0
    draw(page, [(0.3, 0.7), (0.7, 0.3)])
    page.click("#clear")  # at once: the answer to the second stroke is still on its way
    assert pad_ink(page) == 0
    page.wait_for_selector("body[data-idle=true]", state="attached")
    page.wait_for_timeout(300)  # an answer still on its way when Clear was pressed is dropped
    assert page.locator("#status").inner_text() == "Cleared. Draw a digit."
    assert page.locator(".run[data-run='0'] .top-class").inner_text() == "–"
    assert page.locator(".bar[data-probability]").count() == 0


def test_upload_a_picture_file(page, tmp_path):
    from mnistkit.data.mnist import load_mnist

    test = load_mnist().test
    picture = tmp_path / "my-seven.png"
    picture.write_bytes(png_bytes(drawn_picture(test.images[0])))
    page.set_input_files("#upload", str(picture))
    page.wait_for_function("() => document.getElementById('status').textContent"
                           ".startsWith('Showing my-seven.png')")
    assert page.locator(".run[data-run='0'] .top-class").inner_text() == str(test.labels[0])
    assert pad_ink(page) > 0  # the picture is shown on the pad


def test_a_file_that_is_no_picture_shows_the_servers_error(page, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture at all")
    page.set_input_files("#upload", str(fake))
    page.wait_for_selector("#status.error")
    assert page.locator("#status").inner_text() == (
        "image: not a readable picture (not a format Pillow knows, or damaged at the start)")


def test_random_test_digit_and_keyboard_shortcuts(page):
    page.click("#random")
    page.wait_for_function("() => /^Test image #\\d+, true label \\d\\.$/"
                           ".test(document.getElementById('status').textContent)")
    wait_for_answer(page)
    first = page.locator("#status").inner_text()
    page.keyboard.press("c")
    assert pad_ink(page) == 0
    page.keyboard.press("r")
    page.wait_for_function("prev => document.getElementById('status').textContent !== prev "
                           "&& document.getElementById('status').textContent.startsWith('Test')",
                           arg="Cleared. Draw a digit.")
    assert pad_ink(page) > 0
    assert first.startswith("Test image #")


def test_a_1_drawn_with_the_arrow_keys(page):
    page.focus("#pad")
    assert page.locator("#cursor").is_visible()
    page.keyboard.press("Space")  # pen up: move to the top without drawing
    for _ in range(2):
        page.keyboard.press("ArrowUp")
    assert pad_ink(page) == 0
    page.keyboard.press("Space")
    for _ in range(11):
        page.keyboard.press("ArrowDown")
    wait_for_answer(page)
    assert pad_ink(page) > 0
    assert page.locator(".run[data-run='0'] .top-class").inner_text() == "1"


def test_every_control_is_reachable_with_tab(page):
    reached = []
    for _ in range(6):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id"))
    assert {"pad", "clear", "random", "upload"} <= set(reached)
    page.focus("#random")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('status').textContent"
                           ".startsWith('Test image')")


def test_phone_width_has_no_sideways_scrolling(browser, server):
    context = browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True,
                                  is_mobile=True)
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector("body[data-ready=true]")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    pad = page.locator("#pad").bounding_box()
    context.close()
    assert width <= 375 and pad["width"] >= 250


def test_screenshot(page, tmp_path):
    """A drawn 7 with both runs' answers; the picture README shows."""
    draw(page, [(0.22, 0.22), (0.78, 0.22), (0.62, 0.5), (0.45, 0.82)])
    wait_for_answer(page)
    page.wait_for_function("() => Array.from(document.querySelectorAll('.units img'))"
                           ".every(i => i.complete && i.naturalWidth === 28)")
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("MNISTKIT_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)
