"""A real browser (Debian's headless Chromium through Selenium and Debian's chromedriver) drives the arena page.

It sends a prompt, waits for both answers of two tiny local models, checks that no model name is on the
page before the vote, votes, checks the names are revealed and the vote line written, reads the
leaderboard, checks that every request the page made went to the arena itself (it works offline), and
saves screenshots: to ``$CHATFLOW_ARENA_SCREENSHOT`` (e.g. docs/images/arena.png) when set, else into
the test's temporary directory.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("needs Debian's headless Chromium: apt-get install -y chromium chromium-driver",
                allow_module_level=True)
pytest.importorskip("selenium", reason="needs Selenium: pip install 'chatflow-plugin[test]'")
pytest.importorskip("gradio", reason="needs Gradio: pip install 'chatflow-plugin[arena]'")
pytest.importorskip("transformers")

from arena_support import NAMES, make_models, start_arena, wait_ready  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1050", "--lang=en-US")
PROMPT = "Tell me about the river near the old school."


@pytest.fixture
def browser():
    profile = tempfile.mkdtemp(prefix="arena-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def served(spm_model, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    models = make_models(spm_model, tmp_path / "models")
    votes = tmp_path / "votes.jsonl"
    server = start_arena(models, votes, max_new_tokens=24)
    wait_ready(server)
    yield server, votes
    server.close()
    torch.set_num_threads(threads)


def requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def screenshot_path(tmp_path: Path, name: str) -> Path:
    target = os.environ.get("CHATFLOW_ARENA_SCREENSHOT")
    if not target:
        return tmp_path / name
    target = Path(target)
    return target if name == "arena.png" else target.with_name(target.stem + "_" + name.split("_", 1)[1])


def test_a_person_chats_votes_and_reads_the_leaderboard(browser, served, tmp_path):
    server, votes = served
    wait = WebDriverWait(browser, 120, poll_frequency=0.2)
    browser.get(server.url)
    prompt = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#prompt textarea"))
    wait.until(lambda d: "2 of 2 models ready" in d.find_element(By.ID, "arena_status").text)
    assert not browser.find_element(By.ID, "vote_a").is_enabled()

    prompt.send_keys(PROMPT)
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: d.find_element(By.ID, "vote_a").is_enabled())   # both answers complete
    panes = [browser.find_element(By.ID, f"chat_{side}") for side in "ab"]
    for pane in panes:
        assert PROMPT in pane.text
        bubbles = pane.find_elements(By.CSS_SELECTOR, ".bot, [data-testid='bot']")
        assert bubbles and bubbles[-1].text.strip(), "an answer is missing"
    before = browser.page_source + browser.find_element(By.TAG_NAME, "body").text
    for name in NAMES:
        assert name not in before, f"{name} shown before the vote"
    assert "Model A" in panes[0].text and "Model B" in panes[1].text
    assert not votes.exists() or votes.stat().st_size == 0

    browser.find_element(By.ID, "vote_a").click()
    wait.until(lambda d: "Model A was" in d.find_element(By.ID, "notice").text)
    notice = browser.find_element(By.ID, "notice").text
    line = json.loads(votes.read_text(encoding="utf-8"))
    assert line["winner"] == "a" and {line["model_a"], line["model_b"]} == set(NAMES)
    assert line["conversation_a"][0] == {"role": "user", "content": PROMPT} and line["turns"] == 1
    assert notice.index(line["model_a"]) < notice.index(line["model_b"])   # A's name first, as recorded
    assert f"Model A: {line['model_a']}" in browser.find_element(By.ID, "chat_a").text
    assert not browser.find_element(By.ID, "vote_a").is_enabled()   # one vote per round
    shot = screenshot_path(tmp_path, "arena.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    browser.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Leaderboard')]").click()
    wait.until(lambda d: "1 vote, 2 models" in d.find_element(By.ID, "leaderboard").text)
    board = browser.find_element(By.ID, "leaderboard").text
    assert "Bradley-Terry" in board and all(name in board for name in NAMES) and "chatflow elo" in board
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#figure3 img"))
    browser.save_screenshot(str(screenshot_path(tmp_path, "arena_leaderboard.png")))

    host = urlparse(server.url).netloc
    urls = [u for u in requested_urls(browser) if u.startswith(("http:", "https:", "ws:", "wss:"))]
    assert urls and all(urlparse(u).netloc == host for u in urls), sorted({u for u in urls
                                                                           if urlparse(u).netloc != host})


# What a model may answer (and a person may send): markup that runs if the page renders it as HTML (issue 21).
HOSTILE = ('Try <script>window.__xss = "script"</script> or <img src="x" onerror="window.__xss = \'img\'"> or '
           '[click me](javascript:window.__xss="link") or <a id="evil" href="javascript:window.__xss=\'a\'">this</a>, '
           'and `<b>code</b>` stays code.')


@pytest.fixture
def hostile_answers(monkeypatch):
    """Both models answer :data:`HOSTILE`, whatever they are asked."""
    from chatflow_plugin.evaluation.arena import workers
    from chatflow_plugin.evaluation.arena.chat import Reply

    def answer(model, tokenizer, kind, messages, settings, on_text, cancelled):
        on_text(HOSTILE)
        return Reply(HOSTILE, 40, 0.01, "eos")
    monkeypatch.setattr(workers, "generate_reply", answer)


def _exchange(browser, server) -> list:
    """Send a hostile prompt, wait for both (hostile) answers; the two panes."""
    wait = WebDriverWait(browser, 120, poll_frequency=0.2)
    browser.get(server.url)
    prompt = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#prompt textarea"))
    wait.until(lambda d: "2 of 2 models ready" in d.find_element(By.ID, "arena_status").text)
    prompt.send_keys('<img src="y" onerror="window.__xss = \'prompt\'">')
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: d.find_element(By.ID, "vote_a").is_enabled())
    return [browser.find_element(By.ID, f"chat_{side}") for side in "ab"]


def test_model_output_is_shown_as_text_never_run(browser, hostile_answers, served):
    server, _ = served
    panes = _exchange(browser, server)
    assert browser.execute_script("return window.__xss") is None            # nothing ran
    for pane in panes:
        text = pane.text
        for shown in ('<script>window.__xss = "script"</script>', '<img src="x" onerror=',
                      '[click me](javascript:window.__xss="link")', '<a id="evil" href=', '<img src="y" onerror='):
            assert shown in text, (shown, text)                                # shown as the characters written
        assert not pane.find_elements(By.CSS_SELECTOR, "script, img[onerror], [onerror], a[href^='javascript'], #evil")
        assert [c.text for c in pane.find_elements(By.CSS_SELECTOR, "code")][-1] == "<b>code</b>"
    # the second guard stays on: Gradio's sanitiser of both chat panes
    chats = [block for block in server.app.blocks.values() if block.__class__.__name__ == "Chatbot"]
    assert len(chats) == 2 and all(chat.sanitize_html for chat in chats)


def test_without_either_guard_the_hostile_output_would_run(browser, hostile_answers, monkeypatch, spm_model, tmp_path):
    """The check above is not vacuous: with the page's escaping and Gradio's sanitiser both turned off, the same
    answer runs in the browser (and the test above would fail)."""
    import gradio as gr
    import torch

    from chatflow_plugin.evaluation.arena import app

    chatbot = gr.Chatbot
    monkeypatch.setattr(gr, "Chatbot", lambda *a, **k: chatbot(*a, **{**k, "sanitize_html": False}))
    monkeypatch.setattr(app, "shown_as_text", lambda text: text)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    server = start_arena(make_models(spm_model, tmp_path / "models"), tmp_path / "votes.jsonl")
    try:
        wait_ready(server)
        _exchange(browser, server)
        WebDriverWait(browser, 30).until(lambda d: d.execute_script("return window.__xss"))
    finally:
        server.close()
        torch.set_num_threads(threads)
