"""Tests of domainbert.serve.app against the real server: uvicorn on a free loopback port, in a thread.

* the endpoints give what the Python API gives (fill-mask, NER, classify, embed) and /health;
* bad input is a 4xx with a one-line ``message``: empty, whitespace-only and oversized texts, too
  many texts, ``top_k`` out of range, no ``[MASK]``, bodies that are not UTF-8, not JSON or too
  large, and endpoints whose model was not loaded;
* property-based: schemathesis generates requests from the service's own OpenAPI schema (valid and
  invalid ones, a bounded number) and checks that none gets a 5xx and that responses match the schema;
* the web page in headless Chromium (Debian's /usr/bin/chromium via selenium and /usr/bin/chromedriver):
  typed text, the entities highlighted and the [MASK] predictions shown; a screenshot is saved in
  ``test-artifacts/serve_page.png``. Without chromium this test FAILS with the install command.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import torch

from domainbert.serve.app import Limits, create_app
from inference_models import rule_entities, save_rule_ner, save_tiny_classifier, save_tiny_mlm

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LIMITS = Limits(max_text_chars=3000, max_batch=4, max_top_k=10, max_body_bytes=40_000)
PAGE_TEXT = "Patients with breast cancer and diabetes mellitus were treated with [MASK]."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread, stopped by :meth:`stop`."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-models")
    return {"model": save_tiny_mlm(root / "mlm"), "ner_model": save_rule_ner(root / "ner"),
            "classify_model": save_tiny_classifier(root / "cls", ["no", "yes", "maybe"],
                                                   "single_label_classification")}


@pytest.fixture(scope="module")
def live(model_dirs: dict[str, Path]) -> Iterator[LiveServer]:
    server = LiveServer(create_app(**model_dirs, limits=LIMITS, precision="fp32"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


# ==================================================================================== endpoints
def test_health_lists_models_and_limits(client: httpx.Client, model_dirs: dict[str, Path]) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["models"] == {"fill_mask": str(model_dirs["model"]), "ner": str(model_dirs["ner_model"]),
                              "classify": str(model_dirs["classify_model"]), "embed": str(model_dirs["model"])}
    assert body["limits"]["max_batch"] == 4


def test_endpoints_give_what_the_python_api_gives(client: httpx.Client, live: LiveServer) -> None:
    models = live.server.config.app.state.models
    texts = ["Heart failure after [MASK] therapy.", "breast cancer and [MASK] [MASK]"]
    r = client.post("/fill-mask", json={"texts": texts, "top_k": 3})
    assert r.status_code == 200
    assert r.json()["results"] == models.fill_mask(texts, top_k=3)
    assert [len(m["predictions"]) for res in r.json()["results"] for m in res["masks"]] == [3, 3, 3]

    r = client.post("/ner", json={"texts": texts})
    assert r.status_code == 200
    for text, result in zip(texts, r.json()["results"]):
        assert [(e["start"], e["end"], e["text"]) for e in result["entities"]] == rule_entities(text)

    r = client.post("/classify", json={"texts": ["Does aspirin help?", "x"], "text_pairs": ["Yes it does.", None]})
    assert r.status_code == 200
    assert r.json()["problem_type"] == "single_label_classification"
    assert r.json()["results"] == models.classify(["Does aspirin help?", "x"], ["Yes it does.", None])
    assert r.json()["results"][0]["label"] in ("no", "yes", "maybe")

    r = client.post("/embed", json={"texts": texts, "normalize": True})
    assert r.status_code == 200
    body = r.json()
    assert body["dim"] == 32 and len(body["embeddings"]) == 2
    torch.testing.assert_close(torch.tensor(body["embeddings"]), models.embed(texts, normalize=True))


def test_long_text_ner_over_http(client: httpx.Client) -> None:
    text = "Renal failure was common in lung cancer patients. " * 50  # ~2,500 chars, several windows
    r = client.post("/ner", json={"texts": [text]})
    assert r.status_code == 200
    assert [(e["start"], e["end"], e["text"]) for e in r.json()["results"][0]["entities"]] == rule_entities(text)


@pytest.mark.parametrize("path, body, status, message", [
    ("/ner", {"texts": [""]}, 422, "at least 1 character"),
    ("/ner", {"texts": [" \n\t "]}, 422, "at least one non-space character"),
    ("/ner", {"texts": ["x" * 3001]}, 422, "at most 3000 characters"),
    ("/ner", {"texts": ["a", "b", "c", "d", "e"]}, 422, "at most 4 items"),
    ("/ner", {"texts": []}, 422, "at least 1 item"),
    ("/ner", {"text": "x"}, 422, "texts: Field required"),
    ("/ner", ["x"], 422, "valid dictionary"),
    ("/fill-mask", {"texts": ["no mask"]}, 422, "has no [MASK]"),
    ("/fill-mask", {"texts": ["a [MASK]"], "top_k": 11}, 422, "less than or equal to 10"),
    ("/fill-mask", {"texts": ["word " * 200 + "[MASK]"]}, 422, "reads at most 128"),
    ("/embed", {"texts": ["x"], "pooling": "max"}, 422, "pooling"),
    ("/classify", {"texts": ["a", "b"], "text_pairs": ["c"]}, 422, "give one pair"),
])
def test_bad_input_is_a_4xx_with_a_message(client: httpx.Client, path: str, body: Any, status: int,
                                           message: str) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["message"]


def test_non_utf8_invalid_json_and_oversized_bodies(client: httpx.Client) -> None:
    headers = {"content-type": "application/json"}
    r = client.post("/ner", content=b'{"texts": ["caf\xe9 au lait"]}', headers=headers)
    assert r.status_code == 400 and "not UTF-8" in r.json()["message"]
    r = client.post("/ner", content=b'{"texts": ["unclosed', headers=headers)
    assert r.status_code == 422 and "not valid JSON" in r.json()["message"]
    r = client.post("/ner", content=b'{"texts": ["\\ud800"]}', headers=headers)  # a lone surrogate
    assert r.status_code == 422
    r = client.post("/ner", content=b'{"texts": ["' + b"x" * 50_000 + b'"]}', headers=headers)
    assert r.status_code == 413 and "limit is 40000" in r.json()["message"]

    def chunks() -> Iterator[bytes]:  # chunked upload: no Content-Length to check up front
        yield b'{"texts": ["'
        for _ in range(50):
            yield b"y" * 1000
        yield b'"]}'

    r = client.post("/ner", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert client.get("/health").status_code == 200  # still serving


def test_missing_model_is_a_404_naming_the_flag(model_dirs: dict[str, Path]) -> None:
    from fastapi.testclient import TestClient

    app = create_app(ner_model=model_dirs["ner_model"], limits=LIMITS)
    with TestClient(app) as c:
        for path, flag in (("/fill-mask", "--model"), ("/embed", "--model"), ("/classify", "--classify-model")):
            r = c.post(path, json={"texts": ["a [MASK]"]})
            assert r.status_code == 404 and flag in r.json()["message"], r.text
        assert c.get("/health").json()["models"]["fill_mask"] is None


def test_model_without_mlm_head_serves_embeddings_and_says_why_fill_mask_is_off() -> None:
    from fastapi.testclient import TestClient

    from inference_models import minilm_dir

    with TestClient(create_app(minilm_dir(), limits=LIMITS)) as c:
        r = c.post("/fill-mask", json={"texts": ["a [MASK]"]})
        assert r.status_code == 404 and "no masked-LM head weights" in r.json()["message"]
        assert c.post("/embed", json={"texts": ["aspirin"]}).json()["dim"] == 384


def test_page_and_openapi_schema(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="highlighted"' in page.text
    schema = client.get("/openapi.json").json()
    assert {"/health", "/fill-mask", "/ner", "/classify", "/embed"} <= set(schema["paths"])
    texts = schema["components"]["schemas"]["NerRequest"]["properties"]["texts"]
    assert texts["maxItems"] == 4 and texts["items"]["maxLength"] == 3000


# ==================================================================================== schemathesis
def test_schemathesis_no_server_errors(live: LiveServer) -> None:
    """Requests generated from the service's own schema (valid and invalid): never a 5xx; responses conform."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import checks
    from schemathesis.config import SchemathesisConfig

    config = SchemathesisConfig()
    config.projects.default.generation.update(
        max_examples=25, modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", config=config)
    failures: list[str] = []
    statuses: list[int] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        tested += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(base_url=live.url, timeout=30)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path} {case.body!r} -> {response.status_code}")
            # Checks against the schema: no 5xx, documented status codes, conforming bodies.
            case.validate_response(response, checks=[checks.not_a_server_error, checks.status_code_conformance,
                                                      checks.content_type_conformance,
                                                      checks.response_schema_conformance])

        run()
    assert tested >= 5
    assert not failures, failures
    # Both kinds of request were really sent: accepted ones and refused ones.
    assert len(statuses) >= 50 and 200 in statuses and 422 in statuses, sorted(set(statuses))


# ==================================================================================== the web page
def _chrome() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("the web page test needs Debian's chromium and chromedriver: run .ci/setup, or "
                    "`apt-get install -y chromium chromium-driver`")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_web_page_highlights_entities_and_shows_mask_predictions(live: LiveServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _chrome()
    try:
        browser.get(live.url + "/")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        box = browser.find_element(By.ID, "text")
        box.clear()
        box.send_keys(PAGE_TEXT)
        browser.find_element(By.ID, "run").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "done"))
        marks = browser.find_elements(By.CSS_SELECTOR, "#highlighted mark.entity")
        expected = rule_entities(PAGE_TEXT)
        assert [(int(m.get_attribute("data-start")), int(m.get_attribute("data-end"))) for m in marks] == \
               [(s, e) for s, e, _ in expected]
        assert [m.get_attribute("data-label") for m in marks] == ["Disease", "Disease"]
        # The mark shows the entity's text followed by its label tag.
        assert [m.text.replace("DISEASE", "").strip() for m in marks] == ["breast cancer", "diabetes mellitus"]
        # The whole text is still there, in order, around the highlights.
        assert browser.find_element(By.ID, "highlighted").get_attribute("textContent").replace(
            "Disease", "") == PAGE_TEXT
        rows = browser.find_elements(By.CSS_SELECTOR, "#masks tr.prediction")
        models = live.server.config.app.state.models
        top = models.fill_mask([PAGE_TEXT], top_k=5)[0]["masks"][0]["predictions"]
        assert [r.find_element(By.CLASS_NAME, "token").text for r in rows] == [p["token"] for p in top]
        # Input the server refuses: its message is shown, not swallowed.
        box.clear()
        box.send_keys("x" * 3001)
        browser.find_element(By.ID, "run").click()
        wait.until(lambda b: "at most 3000 characters" in b.find_element(By.ID, "status").text)
        box.clear()
        box.send_keys(PAGE_TEXT)
        browser.find_element(By.ID, "run").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "done"))
        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "serve_page.png"))
    finally:
        browser.quit()
