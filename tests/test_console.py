"""The web console (/console): its figures (pure functions) here, then a real browser (Debian's chromium,
driven headless by Playwright) against a real `shoal server` with keys and real copies of gemma-3-270m:
copies drawn on their cores, charts fed by the server's own metrics, scale / autoscaling / deploy / delete
through the page with the API's own error texts, a failed copy's reason and log, `shoal bench` results,
and a key with invoke scope that cannot scale. Screenshots go to $SHOAL_CONSOLE_SCREENSHOTS (docs/screenshots
when regenerating the docs' pictures), else a temporary folder."""
from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import server_process

from shoal.sdk import Model, ResourceRequirements, Session
from shoal.security.keys import Scope, append_key, new_key
from shoal.webconsole import bench
from shoal.webconsole.figures import bucket_delta, engine_figures, quantile, rate, ratio, rounded
from shoal.webconsole.routes import _assets

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SHOAL_CHROMIUM", "/usr/bin/chromium")  # Debian's chromium (apt), as .ci/run installs it
PAGE_LOAD_LIMIT_MS = 1000.0


# -- the figures, without a server ---------------------------------------------------------------------------------
def test_quantile_interpolates_inside_the_bucket_as_prometheus_does() -> None:
    buckets = ((0.1, 0.0), (0.5, 10.0), (1.0, 20.0), (math.inf, 20.0))
    assert quantile(0.5, buckets) == pytest.approx(0.5)
    assert quantile(0.25, buckets) == pytest.approx(0.3)
    assert quantile(0.99, ((1.0, 0.0), (math.inf, 4.0))) == 1.0  # in +Inf: the highest finite bound
    assert quantile(0.5, ((1.0, 0.0), (math.inf, 0.0))) is None
    assert quantile(0.5, None) is None


def test_window_deltas_and_rates_survive_a_restarted_copy() -> None:
    old = ((0.1, 2.0), (math.inf, 5.0))
    assert bucket_delta(((0.1, 3.0), (math.inf, 9.0)), old) == ((0.1, 1.0), (math.inf, 4.0))
    assert bucket_delta(((0.1, 0.0), (math.inf, 1.0)), old) is None  # counters went back: a new process
    assert rate(30.0, 10.0, 10.0) == 2.0
    assert rate(5.0, 10.0, 10.0) is None
    assert rate(5.0, None, 10.0) is None
    assert ratio([1.0, None, 3.0], [4.0, 2.0, 4.0]) == 0.5
    assert ratio([0.0], [0.0]) is None
    assert rounded(123.456789) == 123.5 and rounded(0.000123456) == 0.0001235 and rounded(math.nan) is None


def test_engine_figures_read_the_built_in_engines_metrics_and_vllms() -> None:
    text = """# HELP tgi_request_generated_tokens Generated tokens per request
tgi_request_generated_tokens_sum 120.0
tgi_request_duration_bucket{le="0.5"} 3.0
tgi_request_duration_bucket{le="+Inf"} 4.0
tgi_queue_size 2.0
shoal_prefix_cache_cached_tokens_total 30.0
shoal_prefix_cache_prompt_tokens_total 120.0
vllm:num_requests_running{model_name="m"} 3.0
vllm:num_requests_running{model_name="n"} 1.0
something_else_total 7.0
"""
    values, histograms = engine_figures(text)
    assert values == {"tokens": 120.0, "queue": 2.0, "cached_tokens": 30.0, "prompt_tokens": 120.0, "batch": 4.0}
    assert histograms == {"latency": ((0.5, 3.0), (math.inf, 4.0))}


def test_bench_results_are_found_by_name_and_read_only_when_they_are_bench_json(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "results.json").write_text(json.dumps({"meta": {}, "points": []}))
    (tmp_path / "a" / "b" / "results.json").write_text("[1, 2]")  # JSON, not a bench result
    (tmp_path / "a" / "other.json").write_text("{}")
    found = {r.label: r for r in bench.find((tmp_path, tmp_path / "missing"))}
    assert set(found) == {f"{tmp_path.name}/a", f"{tmp_path.name}/a/b"}
    assert bench.load(found[f"{tmp_path.name}/a"]) == {"meta": {}, "points": []}
    assert bench.load(found[f"{tmp_path.name}/a/b"]) is None


def test_the_page_loads_only_files_the_package_ships() -> None:
    """Every script, style and module the page names is in shoal/webconsole/static (nothing from elsewhere)."""
    import re

    assets = _assets()
    html = assets["index.html"].body.decode()
    named = re.findall(r'(?:src|href)="([^"]+)"', html)
    for js in (n for n in assets if n.endswith(".js") and not n.startswith("vendor/")):
        named += [f"/console/static/{m}" for m in re.findall(r'from "\./([^"]+)"', assets[js].body.decode())]
    for name in named:
        if name.startswith(("data:", "#")):  # the favicon (none), the tabs
            continue
        assert name.startswith("/console/static/"), name
        assert name.removeprefix("/console/static/") in assets, name
    assert "http://" not in html and "https://" not in html


# -- a real server, real copies, a real browser ---------------------------------------------------------------------
def _secret(key) -> str:  # type: ignore[no-untyped-def]
    return key.secret.get_secret_value()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("console-keys") / "keys.json"
    admin, invoke = new_key("ops", Scope.ADMIN), new_key("app", Scope.INVOKE)
    append_key(path, admin)
    append_key(path, invoke)
    return {"path": path, "admin": _secret(admin), "invoke": _secret(invoke)}


@pytest.fixture(scope="module")
def server(keys: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One keyed server for the module, with gemma-3-270m deployed as 2 copies of half a core, and a bench result
    where the console looks for them (state/bench)."""
    state = tmp_path_factory.mktemp("console-server")
    (state / "bench" / "autoscale").mkdir(parents=True)
    shutil.copy(ROOT / "docs" / "results" / "autoscale" / "results.json", state / "bench" / "autoscale" / "results.json")
    with server_process(state, "--api-keys", str(keys["path"]), "--allow-command-engine") as url:
        session = Session(url, api_key=keys["admin"])
        Model("gemma-3-270m", name="gemma", session=session,
              env={"MAX_INPUT_LENGTH": "256", "MAX_TOTAL_TOKENS": "512", "MAX_BATCH_TOTAL_TOKENS": "4096"}).deploy(
            "console", resources=ResourceRequirements(requests={"copies": 2, "num_cpus": 0.5, "memory": 512}))
        yield {"url": url, "session": session, "state": state}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise AssertionError(f"no chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        # Playwright's own browser download cannot work here: Debian's chromium; as root it needs --no-sandbox
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(os.environ.get("SHOAL_CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("console-screenshots"))
    where.mkdir(parents=True, exist_ok=True)
    return where


def _wait(check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}: last {result!r}")
        time.sleep(0.25)


def _open(browser: Any, url: str, secret: str | None, width: int = 1400) -> Any:
    """A new tab on /console, signed in with `secret` through the page's own key prompt."""
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))  # type: ignore[attr-defined]
    page.goto(f"{url}/console")
    page.wait_for_selector("body[data-ready='login']")
    if secret is not None:
        page.fill("#key-input", secret)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("body[data-ready='1']")
    return page


@pytest.fixture(scope="module")
def admin(browser: Any, server: dict[str, Any], keys: dict[str, Any]) -> Iterator[Any]:
    page = _open(browser, server["url"], keys["admin"])
    yield page
    assert page.errors == [], page.errors  # no script error on any view the tests went through
    page.context.close()


def _component(server: dict[str, Any], name: str = "gemma") -> dict[str, Any]:
    return server["session"].component(name)


def _view(page: Any, tab: str) -> None:
    page.click(f"#tabs a[data-tab={tab}]")
    page.wait_for_selector(f"#view-{tab}:not([hidden])")


def _load(url: str, seconds: float, secret: str) -> threading.Thread:
    """Requests to gemma for `seconds` from 3 clients, streamed and not."""
    def client(i: int) -> None:
        end = time.monotonic() + seconds
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {secret}"}) as c:
            while time.monotonic() < end:
                body = {"inputs": "Tell me about the sea." + " Please." * i, "parameters": {"max_new_tokens": 8}}
                c.post(f"{url}/generate_stream" if i % 2 else f"{url}/generate", json=body)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    runner = threading.Thread(target=lambda: [t.join() for t in threads], daemon=True)
    runner.start()
    return runner


@pytest.mark.slow
def test_the_page_shows_each_copy_on_its_cores_within_a_second(admin: Any, server: dict[str, Any], shots: Path) -> None:
    view = _component(server)
    assert view["current_copies"] == 2
    for copy in view["copies"]:
        slot = copy["slot"]
        for core in slot["cores"]:
            chip = admin.locator(f'[data-endpoint="console"] [data-instance="{slot["instance"]}"] '
                                 f'[data-core="{core}"] [data-copy="{copy["id"]}"]')
            assert chip.is_visible() and chip.get_attribute("data-status") == "InService"
    assert admin.locator('[data-copies="gemma"]').inner_text() == "2 / 2"
    loads = []
    for _ in range(5):  # the key stays in the tab: a reload draws the page from its first byte
        admin.reload()
        admin.wait_for_selector("body[data-ready='1']")
        loads.append(admin.evaluate("performance.getEntriesByName('console-ready')[0].startTime"))
    print(f"console page load (navigation start to the first data drawn), ms: {[round(x) for x in loads]}")
    assert statistics.median(loads) <= PAGE_LOAD_LIMIT_MS, loads
    admin.screenshot(path=str(shots / "placement.png"), full_page=True)


@pytest.mark.slow
def test_charts_receive_data_from_the_servers_own_metrics(admin: Any, server: dict[str, Any], keys: dict[str, Any],
                                                            shots: Path) -> None:
    _view(admin, "load")
    load = _load(server["url"], 14, keys["admin"])

    def points(chart: str) -> int:
        return int(admin.locator(f'[data-chart="{chart}"]').get_attribute("data-points") or 0)

    def latest(kind: str, name: str, figure: str) -> float:
        return admin.evaluate(f"(() => {{ const s = window.shoalConsole.store.samples.at(-1); const f = s && s.{kind}['{name}'];"
                              f" return f ? f['{figure}'] : null; }})()") or 0

    _wait(lambda: latest("components", "gemma", "requests_per_s") > 0, 40, "requests/s in the samples")
    _wait(lambda: latest("components", "gemma", "tokens_per_s") > 0, 40, "tokens/s (the copies' engine figures)")
    _wait(lambda: latest("components", "gemma", "ttft_p50_s") > 0, 40, "time to first token of the streams")
    for chart in ("component:gemma:requests", "component:gemma:in_flight", "component:gemma:latency",
                  "component:gemma:ttft", "component:gemma:tokens", "component:gemma:prefix",
                  "copies:gemma:requests", "copies:gemma:tokens", "copies:gemma:cpu"):
        _wait(lambda chart=chart: points(chart) > 0, 20, f"points in {chart}")
    copies = [c["id"] for c in _component(server)["copies"]]
    _wait(lambda: all(latest("copies", c, "requests_per_s") > 0 for c in copies), 30, "every copy's requests/s")
    _wait(lambda: admin.locator("tr.busiest[data-copy-row]").count() == 1, 20, "the busiest copy marked")
    admin.screenshot(path=str(shots / "load.png"), full_page=True)
    load.join(30)
    _view(admin, "overview")
    _wait(lambda: "req/s" in admin.locator('[data-fact="busiest"]').inner_text(), 20, "the busiest copy, and why")


@pytest.mark.slow
def test_scale_changes_the_copy_count_and_asks_before_stopping_copies(admin: Any, server: dict[str, Any],
                                                                      shots: Path) -> None:
    _view(admin, "overview")
    admin.click('[data-action="scale"][data-component="gemma"]')
    admin.fill('dialog input[name="CopyCount"]', "3")
    admin.click("dialog [data-submit]")
    _wait(lambda: _component(server)["desired_copies"] == 3, 20, "3 copies desired (API)")
    _wait(lambda: admin.locator('[data-copy="gemma-2"]').count() >= 1, 20, "the new copy drawn")
    admin.screenshot(path=str(shots / "scaling-out.png"), full_page=True)  # a copy starting, if caught
    _wait(lambda: _component(server)["current_copies"] == 3, 90, "3 copies in service (API)")

    admin.click('[data-action="scale"][data-component="gemma"]')
    admin.fill('dialog input[name="CopyCount"]', "2")
    admin.click("dialog [data-submit]")
    text = admin.locator("dialog [data-confirm-text]").inner_text()
    assert "from 3 to 2 copies stops 1 copy" in text and "drains" in text
    assert _component(server)["desired_copies"] == 3  # nothing happened before the confirmation
    admin.click("dialog [data-confirm-yes]")
    _wait(lambda: _component(server)["desired_copies"] == 2, 20, "2 copies desired (API)")
    _wait(lambda: len(_component(server)["copies"]) == 2, 60, "the copy scaled in gone")
    _wait(lambda: admin.locator('[data-copies="gemma"]').inner_text() == "2 / 2", 10, "the page's count")


@pytest.mark.slow
def test_the_autoscaling_policy_and_why_the_autoscaler_acted(admin: Any, server: dict[str, Any], shots: Path) -> None:
    _view(admin, "overview")
    _wait(lambda: admin.locator('[data-copies="gemma"]').inner_text() == "2 / 2", 20, "2 copies on the page")
    _view(admin, "scaling")
    admin.click('[data-policy="gemma"] [data-action="autoscaling"]')
    for name, value in (("MinCapacity", "1"), ("MaxCapacity", "1"), ("TargetConcurrency", "4"),
                        ("ScaleOutCooldown", "0"), ("ScaleInCooldown", "60")):
        admin.fill(f'dialog input[name="{name}"]', value)
    admin.click("dialog [data-submit]")
    assert "drains and stops 1 copy" in admin.locator("dialog [data-confirm-text]").inner_text()
    admin.click("dialog [data-confirm-yes]")
    policy = _wait(lambda: httpx.get(f"{server['url']}/api/inference-components/gemma/autoscaling",
                                     headers=server["session"].http.headers).json(), 10, "the policy")
    assert (policy["policy"]["min_copies"], policy["policy"]["max_copies"]) == (1, 1)
    assert policy["policy"]["tracking"][0]["target"] == 4
    activity = _wait(lambda: (_component(server)["autoscaling"] or {}).get("last_activity"), 20, "an activity")
    assert activity["cause"] == "above the maximum of 1 copy: 2 → 1 copy"
    _wait(lambda: admin.locator("[data-activity]").count() >= 1, 20, "the activity listed")
    assert activity["cause"] in admin.locator("[data-activity]").first.inner_text()
    _wait(lambda: _component(server)["current_copies"] == 1 and len(_component(server)["copies"]) == 1, 60, "1 copy")

    # load over a lower target: the autoscaler adds copies and says why; the page shows it beside the load
    load = _load(server["url"], 25, server["session"].http.headers["Authorization"].removeprefix("Bearer "))
    _wait(lambda: admin.locator('[data-policy="gemma"] [data-action="autoscaling"]').is_visible(), 10, "the policy")
    admin.click('[data-policy="gemma"] [data-action="autoscaling"]')
    admin.fill('dialog input[name="MaxCapacity"]', "3")
    admin.fill('dialog input[name="TargetConcurrency"]', "1")
    admin.click("dialog [data-submit]")  # no copy stops: no confirmation
    out = _wait(lambda: (a := (_component(server)["autoscaling"] or {}).get("last_activity")) and
                a["cause"].startswith("concurrency") and a, 40, "a scale-out for the load")
    assert out["to_copies"] > 1 and "> target 1" in out["cause"], out
    listed = admin.locator(f'[data-activity="{out["id"]}"]')  # cooldown 0: later scale-outs may follow it
    _wait(lambda: listed.count() == 1 and out["cause"] in listed.inner_text(), 20, "the activity listed")
    _view(admin, "overview")
    _wait(lambda: _component(server)["autoscaling"]["last_activity"]["cause"]
          in admin.locator('[data-fact="last-activity"]').inner_text(), 20, "the last action")
    _wait(lambda: "req/s" in admin.locator('[data-fact="busiest"]').inner_text(), 20, "the busiest copy, and why")
    admin.screenshot(path=str(shots / "overview.png"), full_page=True)
    _view(admin, "scaling")
    time.sleep(2.5)  # one more sample on the timeline
    admin.screenshot(path=str(shots / "scaling.png"), full_page=True)
    load.join(40)

    admin.click('[data-action="remove-policy"][data-component="gemma"]')
    _wait(lambda: _component(server)["autoscaling"] is None, 10, "the policy removed")
    server["session"].call("PATCH", "/api/inference-components/gemma", {"CopyCount": 2})
    _wait(lambda: _component(server)["current_copies"] == 2 and len(_component(server)["copies"]) == 2, 90,
          "2 copies again")


@pytest.mark.slow
def test_a_bad_deploy_shows_the_apis_own_error_text(admin: Any, server: dict[str, Any], shots: Path) -> None:
    _view(admin, "overview")
    for name, model, copies in (("bad", "no-such-model", "1"), ("bad_name", "gemma-3-270m", "1"),
                                ("toomany", "gemma-3-270m", "40")):
        body = {"InferenceComponentName": name, "EndpointName": "console", "ModelId": model, "Engine": "shoal",
                "CopyCount": int(copies), "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": 1,
                "NumberOfAcceleratorDevicesRequired": 0, "MinMemoryRequiredInMb": 1024}, "Environment": {}}
        answer = httpx.post(f"{server['url']}/api/inference-components", json=body,
                            headers=server["session"].http.headers)
        assert answer.status_code == 400, answer.text
        admin.click("#deploy-open")
        admin.select_option('dialog select[name="endpoint"]', "console")
        admin.fill('dialog input[name="InferenceComponentName"]', name)
        admin.fill('dialog input[name="ModelId"]', model)
        admin.fill('dialog input[name="CopyCount"]', copies)
        admin.click("dialog [data-submit]")
        error = admin.locator("dialog [data-error]")
        _wait(error.is_visible, 10, "the error shown")
        assert error.inner_text() == answer.json()["error"]
        if name == "bad":
            admin.screenshot(path=str(shots / "deploy-error.png"))
        admin.click("dialog button:has-text('Cancel')")
    assert [c["spec"]["name"] for c in server["session"].components()] == ["gemma"]


@pytest.mark.slow
def test_a_failed_copy_shows_its_reason_and_last_log_lines(admin: Any, server: dict[str, Any], shots: Path) -> None:
    script = "print('loading the weights'); print('error: this model needs a GPU and there is none'); raise SystemExit(3)"
    Model("broken", name="broken", session=server["session"], engine="command",
          engine_command=f'{sys.executable} -c "{script}" --port {{port}}').deploy(
        "console", resources=ResourceRequirements(requests={"copies": 1, "num_cpus": 0.5, "memory": 64}), wait=False)
    _wait(lambda: _component(server, "broken")["status"] == "Failed", 60, "broken Failed")
    _view(admin, "overview")
    chip = admin.locator('[data-copy="broken-0"]').first
    _wait(lambda: chip.get_attribute("data-status") == "Failed", 20, "the failed copy drawn")
    assert "error: this model needs a GPU" in admin.locator('[data-reason="broken"]').inner_text()
    chip.click()
    log = admin.locator('[data-copy-log="broken-0"]')
    _wait(lambda: "error: this model needs a GPU" in log.inner_text(), 20, "the copy's log in its panel")
    assert "exited with code 3 during startup" in admin.locator('[data-copy-reason="broken-0"]').inner_text()
    admin.screenshot(path=str(shots / "failed-copy.png"), full_page=True)
    admin.click("#copy-panel button.close")

    admin.click('[data-action="delete"][data-component="broken"]')
    assert "Delete broken?" in admin.locator("dialog h2").inner_text()
    admin.click("dialog [data-confirm-yes]")
    _wait(lambda: "broken" not in [c["spec"]["name"] for c in server["session"].components()], 30, "broken deleted")


@pytest.mark.slow
def test_bench_results_show_as_tables_and_plots(admin: Any, server: dict[str, Any], shots: Path) -> None:
    _view(admin, "bench")
    listed = admin.locator("[data-bench-id]")
    _wait(lambda: listed.count() == 1, 10, "the result under state/bench")
    listed.first.click()
    result = json.loads((server["state"] / "bench" / "autoscale" / "results.json").read_text())
    _wait(lambda: admin.locator('[data-bench-table="points"] tbody tr').count() == len(result["points"]), 10, "rows")
    assert admin.locator('[data-bench-table="schedule"] tbody tr').count() == len(result["points"])
    for chart in ("bench:timeline-load", "bench:timeline-latency", "bench:timeline-copies"):
        assert int(admin.locator(f'[data-chart="{chart}"]').get_attribute("data-points")) > 0

    seed = ROOT / "docs" / "results" / "seed" / "results.json"
    admin.set_input_files("input[data-bench-file]", str(seed))
    points = json.loads(seed.read_text())["points"]
    _wait(lambda: admin.locator('[data-bench-table="points"] tbody tr').count() == len(points), 10, "the file's rows")
    first = admin.locator('[data-bench-table="points"] tbody tr').first.inner_text()
    assert points[0]["config"] in first and f"{points[0]['req_per_s']:.2f}" in first
    for chart in ("bench:throughput", "bench:latency", "bench:tokens"):
        assert int(admin.locator(f'[data-chart="{chart}"]').get_attribute("data-points")) == len(points)
    admin.screenshot(path=str(shots / "bench.png"), full_page=True)


@pytest.mark.slow
def test_a_key_with_invoke_scope_cannot_scale(browser: Any, server: dict[str, Any], keys: dict[str, Any],
                                              shots: Path) -> None:
    url = server["url"]
    page = _open(browser, url, None)
    page.fill("#key-input", "not-a-key-at-all-0123456789")
    page.click("#login-form button[type=submit]")
    _wait(lambda: page.locator("#login-error").is_visible(), 10, "the refusal")
    assert page.locator("#login-error").inner_text() == "The security token included in the request is invalid."
    page.screenshot(path=str(shots / "key.png"))

    page.fill("#key-input", keys["invoke"])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("body[data-ready='1']")
    assert "scope invoke" in page.locator("#limited").inner_text()
    _wait(lambda: page.locator("[data-models] li").count() >= 1, 10, "the models it may call")
    assert "gemma" in page.locator("[data-models]").inner_text()
    assert page.locator('[data-action="scale"]').count() == 0 and page.locator("#deploy-open").is_hidden()
    # what the page's key gets if it tries anyway: the middleware's refusal, and nothing changes
    status = page.evaluate("""async () => (await fetch('/api/inference-components/gemma', {method: 'PATCH',
        headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('shoal-console-key'),
                  'Content-Type': 'application/json'}, body: JSON.stringify({CopyCount: 5})})).status""")
    assert status == 403
    assert _component(server)["desired_copies"] == 2
    invoke = {"Authorization": f"Bearer {keys['invoke']}"}
    assert httpx.get(f"{url}/console/api/state", headers=invoke).status_code == 403
    assert httpx.get(f"{url}/console/api/session", headers=invoke).json() == {"keys": True, "key": "app",
                                                                               "scope": "invoke"}
    assert httpx.get(f"{url}/console/api/state").status_code == 401
    assert httpx.get(f"{url}/console").status_code == 200  # the page itself holds no data
    assert page.errors == []  # type: ignore[attr-defined]
    page.context.close()
