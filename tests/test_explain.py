"""qwen3c.explain: the page's data against the engine, the safe embedding of token text, and the
page itself in a real headless browser (Debian's chromium + chromedriver, driven by Selenium;
.ci/run installs them, so in CI this test runs: QWEN3C_REQUIRE_BROWSER=1 turns a missing
browser into a failure instead of a skip)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import qwen3c
from qwen3c import explain
from qwen3c.introspect import prompt_tokens, softmax64

QUESTION = "What is the capital of France?"
N_GEN = 6


@pytest.fixture(scope="module")
def page_data(tiny_chat_gguf):
    with qwen3c.Model(tiny_chat_gguf, n_ctx=256) as m:
        ids = prompt_tokens(m, QUESTION, enable_thinking=False)
        data = explain.explain_data(m, ids, max_tokens=N_GEN, prompt_text=QUESTION,
                                    mode="chat template")
        # the reference: the logits the generation itself sampled from
        seen = []
        gen = m.generate(ids, max_tokens=N_GEN, sampler=qwen3c.Sampler(temperature=0),
                         reuse_cache=False, on_token=lambda t, lg: seen.append((t, lg.copy())))
        list(gen)
        attn_full = m.attention(ids + [t for t, _ in seen][:-1])
    return ids, data, seen, attn_full


def test_data_matches_the_engine(page_data):
    ids, data, seen, attn_full = page_data
    assert [t["id"] for t in data["prompt"]] == ids
    assert [t["id"] for t in data["answer"]] == [t for t, _ in seen]
    assert len(data["answer"]) == N_GEN and data["finish_reason"] == "length"
    n_p, L = len(ids), data["model"]["n_layers"]
    for i, (tok, (_, logits)) in enumerate(zip(data["answer"], seen)):
        p = softmax64(logits)
        assert abs(tok["p"] - p[tok["id"]]) < 1e-5
        assert tok["rank"] == 1  # greedy
        alt_ids = [a[0] for a in tok["alts"]]
        assert alt_ids == [int(j) for j in np.argsort(-p, kind="stable")[:10]]
        np.testing.assert_allclose([a[2] for a in tok["alts"]], p[alt_ids], atol=1e-5)
        # attention of the step that chose token i: query position n_p - 1 + i, heads averaged
        assert len(tok["attn"]) == L and all(len(r) == n_p + i for r in tok["attn"])
        want = attn_full[:, :, n_p - 1 + i, :n_p + i].mean(1)
        np.testing.assert_allclose(np.array(tok["attn"]) / data["attn_scale"], want, atol=1e-4)
        # the logit lens: one row per layer, the last is the model's own distribution
        assert len(tok["lens"]) == L + 1
        assert abs(tok["lens"][-1][3] - tok["p"]) < 1e-6 and tok["lens"][-1][4] == 1
    assert data["layers"][0] == "embedding" and len(data["layers"]) == L + 1


def test_hostile_text_stays_data():
    """Token text can be anything: nothing in it may end the JSON block or become markup."""
    nasty = ["</script><script>alert(1)</script>", "<!--", "]]>", "\u2028\u2029", "&amp;",
             "__QWEN3C_DATA__", "\\", '"', "\x00", "\ud800"]
    data = {"version": 1, "prompt_text": "</SCRIPT >" + "".join(nasty), "t": nasty}
    page = explain.render_html(data)
    block = re.search(r'<script type="application/json" id="qwen3c-data">(.*?)</script>', page,
                      re.S).group(1)
    assert "<" not in block and ">" not in block and "&" not in block
    assert json.loads(block) == data  # (a marker in the text is not filled in a second time)
    assert page.count("</script>") == 2  # the data block's and the code block's own ends
    assert "<title>qwen3c explain: &lt;/SCRIPT &gt;" in page


def test_page_is_self_contained(page_data):
    page = explain.render_html(page_data[1])
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page), "no external resource"
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "@import" not in page


def test_explain_cli(tiny_chat_gguf, tmp_path, capsys):
    out = tmp_path / "e.html"
    rc = explain.main_explain(["--model", str(tiny_chat_gguf), "--prompt", QUESTION,
                               "--no-think", "--max-tokens", "4", "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert f"wrote {out} (4 answer tokens" in err
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(SystemExit) as e:
        explain.main_explain(["--model", str(tiny_chat_gguf), "Hi", "--prompt", "Hi", "--out",
                              str(out)])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        explain.main_explain(["--model", str(tiny_chat_gguf), "Hi", "--out", str(out),
                              "--temperature", "-1"])
    assert e.value.code == 2
    assert explain.main_explain(["--model", str(tiny_chat_gguf), "Hi", "--out",
                                 str(tmp_path / "no" / "dir" / "e.html")]) == 1


# ---- the page in a real browser -------------------------------------------------------------------

def _browser():
    """A headless Chromium driven by Selenium, or a skip (a failure in CI) saying what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    missing = [n for n, ok in (("selenium (pip)", webdriver), ("chromium (apt)", chromium),
                               ("chromium-driver (apt)", driver)) if not ok]
    if missing:
        msg = "the browser test needs " + ", ".join(missing)
        if os.environ.get("QWEN3C_REQUIRE_BROWSER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--disable-extensions"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_page_in_a_headless_browser(page_data, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    data = page_data[1]
    page = tmp_path / "explain.html"
    page.write_text(explain.render_html(data), encoding="utf-8")
    d = _browser()
    try:
        d.get(page.as_uri())
        n = len(data["answer"])
        tokens = d.find_elements(By.CSS_SELECTOR, "#answer .tok")
        assert len(tokens) == n
        assert d.find_element(By.ID, "n-tokens").text == str(n)
        assert len(d.find_elements(By.CSS_SELECTOR, "#prompt .tok")) == len(data["prompt"])
        assert not d.find_element(By.ID, "empty").get_attribute("hidden")
        # the shading: every answer token has its probability colour
        assert all(t.value_of_css_property("background-color") not in ("", "rgba(0, 0, 0, 0)")
                   for t in tokens)
        d.save_screenshot(str(tmp_path / "explain_start.png"))

        # click a token: its alternatives, attention and logit lens appear
        tokens[2].click()
        details = d.find_element(By.ID, "details")
        assert details.is_displayed()
        alts = d.find_elements(By.CSS_SELECTOR, "#alts tr")
        assert len(alts) == 10
        assert alts[0].get_attribute("class") == "chosen"  # greedy: the chosen one is first
        assert data["answer"][2]["label"] in d.find_element(By.ID, "tok-title").text
        assert len(d.find_elements(By.CSS_SELECTOR, "#lens tr")) == len(data["layers"]) + 1
        assert len(d.find_elements(By.CSS_SELECTOR, "#attn-strip rect")) == len(data["prompt"]) + 2
        assert len(d.find_elements(By.CSS_SELECTOR, "#answer .tok.future")) == n - 3  # after it
        # per-layer attention: pick layer 0
        d.find_element(By.CSS_SELECTOR, "#layer option[value='0']").click()
        assert "layer 0" in d.find_element(By.ID, "shading").text
        d.save_screenshot(str(tmp_path / "explain_clicked.png"))

        # keyboard: -> moves to the next token, Esc lets go
        ActionChains(d).move_to_element(d.find_element(By.TAG_NAME, "h1")).perform()
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
        assert data["answer"][3]["label"] in d.find_element(By.ID, "tok-title").text
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        assert not details.is_displayed()

        errors = [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == [], errors
    finally:
        d.quit()
    for name in ("explain_start.png", "explain_clicked.png"):
        assert (tmp_path / name).stat().st_size > 10_000
