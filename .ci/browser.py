"""Browser tests: the docs site and the JupyterLab explorers, in Debian's chromium driven by playwright.

    python .ci/browser.py              # build the site (docs/build.py), then test the site and JupyterLab
    python .ci/browser.py --no-build   # test the site already in _site/html

Every server listens on 127.0.0.1 only and is stopped by its process id in a `finally`; the browser aborts and
counts any request to another host. Screenshots go to _site/screenshots/ (ignored by git: test artifacts).
Needs: `apt-get install chromium fonts-liberation` and the `docs` extra (playwright is never asked to download a
browser: it drives /usr/bin/chromium).
"""
import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_site"
SHOTS = SITE / "screenshots"
LAB_NB = ROOT / "nbs" / "tutorials" / "explore_records.ipynb"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
LOCAL = {"127.0.0.1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    "A server in its own process group (so stopping it by its pid also stops the processes it started)."
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, **kw)


def stop(proc: subprocess.Popen | None):
    "Stop the server `proc` and its process group by its pid: SIGTERM, then SIGKILL after 10 s."
    if proc is None or proc.poll() is not None: return
    os.killpg(proc.pid, signal.SIGTERM)
    try: proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL); proc.wait(10)


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read(); return
        except OSError: time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


class Watch:
    "Console errors, failed requests and requests to hosts other than 127.0.0.1 (aborted) of a browser context."
    def __init__(self, context):
        self.errors, self.failed, self.outside = [], [], []
        context.route("**/*", self._route)

    def _route(self, route):
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in LOCAL: route.continue_()
        else: self.outside.append(route.request.url); route.abort()

    def page(self, page, ignore_failed=()):
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"{page.url}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        page.on("requestfailed", lambda r: any(re.search(p, r.url) for p in ignore_failed)
                or self.failed.append(f"{r.url}: {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and not any(re.search(p, r.url) for p in ignore_failed)
                and self.failed.append(f"{r.url}: HTTP {r.status}"))
        return page


class Results:
    def __init__(self): self.passed, self.failed = [], []

    def check(self, name: str, ok: bool, detail: str = ""):
        (self.passed if ok else self.failed).append(name)
        print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}", flush=True)


def shot(target, name: str):
    "Screenshot of a page (its viewport) or of one element."
    SHOTS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(SHOTS / f"{name}.png"))


def source_lines_ok(href: str, name: str) -> bool:
    "The repository link `href` (…/blob/<branch>/<path>#La-Lb) points at the lines that define `name` in this checkout."
    m = re.search(r"/blob/[^/]+/(.+)#L(\d+)-L(\d+)$", href)
    if not m: return False
    lines = (ROOT / m.group(1)).read_text(encoding="utf-8").splitlines()[int(m.group(2)) - 1:int(m.group(3))]
    return bool(lines) and any(re.match(rf"\s*(async )?(def|class) {re.escape(name)}\b", l) for l in lines[:4])


def test_site(browser, res: Results, port: int):
    base = f"http://127.0.0.1:{port}"
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    watch = Watch(ctx)
    page = watch.page(ctx.new_page())

    page.goto(f"{base}/index.html", wait_until="load")
    res.check("site: index has the README title", page.locator("h1").first.inner_text().strip().startswith("mmnb"))
    nav = page.locator(".sidebar-tree a").all_inner_texts()
    res.check("site: index links API, params, records", all(any(w in t for t in nav) for w in ("API", "Params reference", "Records gallery")), str(nav))
    shot(page, "site-index")

    page.goto(f"{base}/api/10_corruption.html", wait_until="load")
    entry = page.evaluate("""() => {
        const h = [...document.querySelectorAll('h2, h3, h4')].find(h => h.querySelector('code')?.textContent === 'degrade');
        const s = h && h.closest('section');
        return s && {signature: s.querySelector('pre')?.innerText || '', text: s.innerText, href: s.querySelector('a.source-link')?.href || ''};
    }""") or {"signature": "", "text": "", "href": ""}
    res.check("site: API page shows degrade's signature", "def degrade(" in entry["signature"], entry["signature"][:200])
    res.check("site: API page shows degrade's docstring", "deterministically for" in entry["text"])
    res.check("site: degrade's source link points at its lines", source_lines_ok(entry["href"], "degrade"), entry["href"])
    badge = page.locator("a.colab-badge").first
    res.check("site: Colab badge links this notebook", (badge.get_attribute("href") or "").endswith("/blob/main/nbs/10_corruption.ipynb"))
    res.check("site: Colab badge image loaded", badge.locator("img").evaluate("i => i.complete && i.naturalWidth > 0"))
    shot(page, "site-api")

    page.goto(f"{base}/api/21_vovnet.policies.html", wait_until="load")
    page.wait_for_function("() => document.querySelectorAll('span.MathJax').length > 0", timeout=30000)
    res.check("site: math typeset by the local MathJax", page.locator("span.MathJax").count() > 0)
    page.wait_for_load_state("networkidle")    # MathJax loads its fonts after the first typeset

    page.goto(f"{base}/params.html", wait_until="load")
    res.check("site: params reference lists train.lr with its default", page.locator("td", has_text="train.lr").count() > 0)

    page.goto(f"{base}/records/index.html", wait_until="load")
    rows = page.locator("table tbody tr").count()
    res.check("site: records gallery table lists the records", rows >= 10, f"{rows} rows")
    page.get_by_role("link", name="codecs/plots", exact=True).first.click()
    page.wait_for_load_state("load")
    imgs = page.locator("article img")
    loaded = imgs.evaluate_all("xs => xs.filter(i => i.complete && i.naturalWidth > 100).length")
    res.check("site: a record page shows its plots", loaded >= 1, f"{loaded} of {imgs.count()} images loaded on {page.url}")
    imgs.first.scroll_into_view_if_needed()
    shot(page, "site-record")

    res.check("site: no console errors", not watch.errors, "; ".join(watch.errors[:5]))
    res.check("site: no failed requests", not watch.failed, "; ".join(watch.failed[:5]))
    res.check("site: no request left 127.0.0.1", not watch.outside, "; ".join(watch.outside[:5]))
    ctx.close()


def kernel_ready(page, base: str, token: str, name: str, timeout: float = 90) -> None:
    """Wait until a session for notebook `name` has a kernel that is idle (a cell run before that would be dropped).
    It waits with `page.wait_for_timeout`: playwright's sync API serves the page's routed requests only inside its own calls."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        req = urllib.request.Request(f"{base}/api/sessions", headers={"Authorization": f"token {token}"})
        sessions = json.loads(urllib.request.urlopen(req, timeout=5).read())
        for s in sessions:
            if s.get("path", "").endswith(name) and s.get("kernel", {}).get("execution_state") == "idle": return
        page.wait_for_timeout(500)
    raise TimeoutError(f"no idle kernel for {name} after {timeout:.0f} s")


def _output(page, n: int):
    "The output area of the n-th code cell that shows a widget."
    return page.locator(".jp-OutputArea-output:has(.jupyter-widgets)").nth(n)


def test_lab(browser, res: Results, port: int, lab_dir: Path):
    token = secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    log = SHOTS.parent / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={lab_dir}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly", "--ServerApp.open_browser=False", "--allow-root"]
    lab = None
    try:
        lab = start(cmd, log, cwd=lab_dir)
        wait_http(f"{base}/api/status?token={token}", lab, log)
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, service_workers="block")  # so route() sees every request
        watch = Watch(ctx)
        page = watch.page(ctx.new_page(), ignore_failed=[r"/api/.*(kernels|sessions)/.*/channels", r"/lsp/", r"translations"])
        page.goto(f"{base}/lab/tree/{LAB_NB.name}?token={token}", wait_until="load")
        page.locator(".jp-Notebook").wait_for(timeout=90000)
        try: kernel_ready(page, base, token, LAB_NB.name)
        except TimeoutError: shot(page, "lab-no-kernel"); raise
        page.locator(".jp-Notebook").click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        page.locator(".widget-slider").first.wait_for(timeout=120000)
        page.wait_for_function("() => document.querySelectorAll('.jp-OutputArea-output .jupyter-widgets img').length >= 6",
                               timeout=120000)
        n = page.locator(".jp-OutputArea-output:has(.jupyter-widgets)").count()
        res.check("lab: six explorers render", n >= 6, f"{n} widget outputs")
        shot(page, "lab-loaded")

        runs_out = _output(page, 0)
        runs_out.scroll_into_view_if_needed()
        job, run = runs_out.locator(".widget-dropdown select").nth(0), runs_out.locator(".widget-dropdown select").nth(2)
        job.select_option("codecs")
        page.wait_for_function("(s) => s.options.length > 0 && [...s.options].every(o => o.value.startsWith('codecs/'))",
                               arg=run.element_handle(), timeout=30000)
        run.select_option(next(v for v in run.evaluate("s => [...s.options].map(o => o.value)") if v.startswith("codecs/plots")))
        page.wait_for_function("(el) => { const i = el.querySelector('.widget-image'); return i && i.naturalWidth > 100; }",
                               arg=runs_out.element_handle(), timeout=30000)
        res.check("lab: runs explorer shows the selected run's plot", True)
        shot(runs_out.locator("img.widget-image"), "lab-runs-plot")

        vov = _output(page, 1)
        vov.scroll_into_view_if_needed()
        before = vov.locator(".widget-html").last.inner_text()
        img_before = vov.locator("img.widget-image").get_attribute("src")
        vov.locator(".widget-slider .noUi-handle, .widget-slider .slider-handle, .widget-slider [role=slider]").first.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("([el, old]) => el.querySelectorAll('.widget-html')[el.querySelectorAll('.widget-html').length - 1].innerText !== old",
                               arg=[vov.element_handle(), before], timeout=30000)
        after = vov.locator(".widget-html").last.inner_text()
        res.check("lab: VoVNet λ slider moves the table", after != before, f"{before!r} -> {after!r}")
        res.check("lab: VoVNet λ slider redraws the bars", vov.locator("img.widget-image").get_attribute("src") != img_before)
        shot(vov, "lab-vovnet")

        cod = _output(page, 2)
        cod.scroll_into_view_if_needed()
        info_before = cod.locator(".widget-html").last.inner_text()
        src_before = cod.locator("img.widget-image").get_attribute("src")
        cod.locator(".widget-slider .noUi-handle, .widget-slider [role=slider]").first.focus()
        for _ in range(5): page.keyboard.press("PageDown")
        page.wait_for_function("([el, old]) => el.querySelector('img.widget-image').src !== old",
                               arg=[cod.element_handle(), src_before], timeout=30000)
        res.check("lab: codec length slider redraws the page", True)
        cod.locator(".widget-dropdown select").nth(1).select_option("heavy")
        page.wait_for_function("(el) => el.innerText.includes('not exact')", arg=cod.element_handle(), timeout=30000)
        res.check("lab: codec at 'heavy' shows the decoder failing", "not exact" in cod.inner_text(), info_before)
        shot(cod, "lab-codecs")

        shape = _output(page, 3)
        shape.scroll_into_view_if_needed()
        caption_before, src_before = shape.locator(".widget-html p").inner_text(), shape.locator("img.widget-image").get_attribute("src")
        shape.locator(".widget-slider [role=slider], .widget-slider .noUi-handle").nth(1).focus()   # azimuth
        page.keyboard.press("ArrowRight")
        page.wait_for_function("([el, old]) => el.querySelector('img.widget-image').src !== old",
                               arg=[shape.element_handle(), src_before], timeout=30000)
        res.check("lab: shape azimuth slider turns the view, same shape",
                  shape.locator(".widget-html p").inner_text() == caption_before)
        shot(shape, "lab-shape")

        vitp = _output(page, 4)
        vitp.scroll_into_view_if_needed()
        info_before, src_before = vitp.locator(".widget-html").inner_text(), vitp.locator("img.widget-image").get_attribute("src")
        vitp.locator(".widget-slider [role=slider], .widget-slider .noUi-handle").first.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("([el, old]) => el.querySelector('img.widget-image').src !== old",
                               arg=[vitp.element_handle(), src_before], timeout=30000)
        res.check("lab: ViTP query slider shows another query's neighbours", vitp.locator(".widget-html").inner_text() != info_before)
        shot(vitp, "lab-vitp")

        r3 = page.locator(".jp-OutputArea-output:has(.widget-slider)").last   # the last cell's: its progress bars are widgets too
        r3.scroll_into_view_if_needed()
        info = r3.locator(".widget-html").last                 # the text under the picture
        info_before, src_before = info.inner_text(), r3.locator("img.widget-image").get_attribute("src")
        r3.locator(".widget-slider [role=slider], .widget-slider .noUi-handle").nth(1).focus()   # the corruption level
        page.keyboard.press("End")
        page.wait_for_function("([el, old]) => el.querySelector('img.widget-image').src !== old && el.innerText.includes('level 1.0')",
                               arg=[r3.element_handle(), src_before], timeout=60000)
        info_after = info.inner_text()
        conf = lambda t: float(re.search(r"visual confidence ([0-9.]+)", t).group(1))
        res.check("lab: R3++ level slider corrupts the page and lowers its visual confidence",
                  "level 0.0" in info_before and conf(info_after) < conf(info_before), f"{info_before[:200]!r} -> {info_after[:200]!r}")
        named = r3.locator(".widget-html table tr td:first-child").all_inner_texts()
        res.check("lab: R3++ explorer lists both indices' neighbours", {"text", "image"} <= set(named), str(named))
        shot(r3, "lab-r3")

        res.check("lab: no console errors", not watch.errors, "; ".join(watch.errors[:5]))
        res.check("lab: no failed requests", not watch.failed, "; ".join(watch.failed[:5]))
        res.check("lab: no request left 127.0.0.1", not watch.outside, "; ".join(watch.outside[:5]))
        ctx.close()
    finally:
        stop(lab)


def main(build: bool) -> int:
    if build and subprocess.run([sys.executable, str(ROOT / "docs" / "build.py")], cwd=ROOT).returncode:
        print("browser: 0 passed, 1 failed (the docs build failed)"); return 1
    if not (SITE / "html" / "index.html").is_file(): sys.exit("no site in _site/html: run python docs/build.py")
    chromium = shutil.which("chromium")
    if not chromium: sys.exit("chromium is not installed: apt-get install -y --no-install-recommends chromium fonts-liberation")
    if SHOTS.exists(): shutil.rmtree(SHOTS)
    lab_dir = SITE / "lab"           # a copy: JupyterLab may save what it ran; two levels below the root like nbs/tutorials
    if lab_dir.exists(): shutil.rmtree(lab_dir)
    lab_dir.mkdir(parents=True)
    shutil.copy(LAB_NB, lab_dir / LAB_NB.name)
    res, http = Results(), None
    t0 = time.time()
    try:
        port = free_port()
        log = SITE / "http.log"
        http = start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(SITE / "html")], log)
        wait_http(f"http://127.0.0.1:{port}/index.html", http, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                test_site(browser, res, port)
                stop(http); http = None
                test_lab(browser, res, free_port(), lab_dir)
            except Exception as e:
                res.check(f"browser step raised {type(e).__name__}", False, str(e)[:2000])
            finally:
                browser.close()
    finally:
        stop(http)
    print(f"browser tests in {time.time() - t0:.0f} s; screenshots in {SHOTS.relative_to(ROOT)}/")
    print(f"browser: {len(res.passed)} passed, {len(res.failed)} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-build", action="store_true", help="test the site already built in _site/html")
    sys.exit(main(not ap.parse_args().no_build))
