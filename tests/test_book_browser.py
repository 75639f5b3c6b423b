"""The built book (``_build/html``) in headless Chromium, plus a crawl of every internal link.

``scripts/test.sh`` builds the book first (the same command as ``scripts/build_book.sh``). Without a build these
tests are skipped; without the Debian ``chromium`` binary the browser tests fail (``scripts/test.sh`` installs
it). Chromium runs with ``--headless --no-sandbox`` and no network: every host name resolves to nothing.

Screenshots of the landing page and of one notebook page go to ``test-artifacts/``, and so do screenshots at
1300 px and 400 px (a phone) of the landing page, one theory page and every notebook page
(``w1300_<page>.png``, ``w400_<page>.png``). The phone-width checks drive one Chromium over the DevTools protocol
on a pipe (exact viewport, scripts run in the page); ``CHROMIUM_TIMEOUT`` (seconds, default 90) bounds each
browser call on a slow machine.

MathJax is served with the book (``_static/mathjax``, from a pinned package), so with no network every theory and
notebook page must typeset its math in the browser.
"""
from __future__ import annotations

import base64
import html as html_lib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
ARTIFACTS = ROOT / "test-artifacts"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(not (HTML / "index.html").exists(),
                                reason="book not built: run scripts/build_book.sh (scripts/test.sh does)")


# --------------------------------------------------------------------------- the book's own structure
def toc_files() -> list[str]:
    """Every ``file:`` entry of the table of contents plus the root, as built page paths relative to
    ``_build/html``. The toc is ``_toc.yml`` (``BOOK_TOC`` overrides it, for a build made with ``--toc``)."""
    text = (ROOT / os.environ.get("BOOK_TOC", "_toc.yml")).read_text()
    files = re.findall(r"^\s*root:\s*(\S+)", text, re.M) + re.findall(r"file:\s*(\S+)", text)
    return [re.sub(r"\.(md|ipynb)$", "", f) + ".html" for f in files]


def notebook_pages() -> list[Path]:
    return [HTML / p for p in toc_files() if p.startswith("notebooks/")]


def part_pages(caption: str) -> list[Path]:
    """Built pages of the ``_toc.yml`` part with this caption (e.g. "Theory", "Notebooks"), in toc order."""
    import yaml

    toc = yaml.safe_load((ROOT / os.environ.get("BOOK_TOC", "_toc.yml")).read_text())
    for part in toc.get("parts", []):
        if part.get("caption") == caption:
            return [HTML / (re.sub(r"\.(md|ipynb)$", "", c["file"]) + ".html") for c in part.get("chapters", [])]
    return []


def repository_url() -> str:
    m = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    assert m, "_config.yml has no repository.url"
    return m.group(1).rstrip("/")


# --------------------------------------------------------------------------- HTML parsing (stdlib only)
class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []   # (tag.attr, url)
        self.imgs: list[str] = []
        self.h1: list[str] = []
        self._in_h1 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href") is not None:
            self.links.append(("a.href", a["href"]))
        elif tag == "link" and a.get("href"):
            self.links.append(("link.href", a["href"]))
        elif tag in ("img", "script") and a.get("src"):
            self.links.append((f"{tag}.src", a["src"]))
            if tag == "img":
                self.imgs.append(a["src"])
        if tag == "h1":
            self._in_h1 = True
            self.h1.append("")

    def handle_endtag(self, tag):
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._in_h1:
            self.h1[-1] += data


@lru_cache(maxsize=None)
def parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def _internal_target(page: Path, url: str):
    """``(file, fragment)`` for an internal URL, None for external ones (scheme, ``//host``, data URIs)."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("//"):
        return None
    path = unquote(parts.path)
    if not path:
        return page, unquote(parts.fragment)
    target = (HTML / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
    target = Path(os.path.normpath(target))
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


# --------------------------------------------------------------------------- tests without a browser
def test_toc_pages_were_built():
    missing = [p for p in toc_files() if not (HTML / p).exists()]
    assert not missing, f"pages in _toc.yml missing from _build/html: {missing}"


def test_internal_links_resolve():
    """Crawl every page of the site; every internal href/src must name an existing file and, for pages, anchor."""
    pages = sorted(p for p in HTML.rglob("*.html") if "_static" not in p.parts)
    assert len(pages) >= len(toc_files())
    broken, checked = [], 0
    for page in pages:
        for kind, url in parse(page).links:
            t = _internal_target(page, url)
            if t is None:
                continue
            target, frag = t
            checked += 1
            rel = page.relative_to(HTML)
            if not target.exists():
                broken.append(f"{rel}: {kind}={url} (no file {target.relative_to(HTML) if HTML in target.parents else target})")
            elif frag and target.suffix == ".html" and frag not in parse(target).ids:
                broken.append(f"{rel}: {kind}={url} (no #{frag} in {target.relative_to(HTML)})")
    assert checked > 100, f"only {checked} internal links found; is the build complete?"
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken[:50])


def test_chapter_links_to_built_notebooks():
    """``{nb}`02``` in a chapter renders as text when notebook 02 is absent; once it is in the book it must link."""
    built = set(toc_files())
    missing = []
    for md in sorted((ROOT / "book").glob("*.md")):
        page = HTML / "book" / (md.stem + ".html")
        if f"book/{md.stem}.html" not in built:
            continue
        hrefs = {urlsplit(u).path for _, u in parse(page).links}
        for ref in re.findall(r"\{nb\}`([^`]+)`", md.read_text()):
            target = re.sub(r"^.*<(.+)>$", r"\1", ref).strip()
            prefix = target if "/" in target else f"notebooks/{target}"
            pages = [p for p in built if p == prefix + ".html" or p.startswith(prefix + "_")
                     or (p.startswith(prefix) and "/" not in target)]
            for p in pages:
                rel = os.path.relpath(HTML / p, page.parent)
                if rel not in hrefs:
                    missing.append(f"book/{md.name}: {{nb}}`{ref}` -> {p}")
    assert not missing, "chapters that do not link to notebooks in the book:\n" + "\n".join(missing)


def test_notebook_pages_have_png_figures():
    """Every notebook page shows at least one figure whose file (or data URI) is a non-empty PNG."""
    pages = notebook_pages()
    assert pages, "no notebook pages in _toc.yml"
    problems = []
    for page in pages:
        pngs = 0
        for src in parse(page).imgs:
            if src.startswith("data:image/png;base64,"):
                import base64
                data = base64.b64decode(src.split(",", 1)[1])
            else:
                t = _internal_target(page, src)
                if t is None or t[0].suffix.lower() != ".png" or "_static" in t[0].parts:
                    continue  # badges, logos
                data = t[0].read_bytes() if t[0].exists() else b""
            if data.startswith(PNG_MAGIC) and len(data) > 2000:
                pngs += 1
        if pngs == 0:
            problems.append(page.relative_to(HTML).as_posix())
    assert not problems, f"notebook pages without a PNG figure: {problems}"


def test_every_notebook_page_has_a_colab_launch_link():
    repo = repository_url().replace("https://github.com/", "")
    missing = []
    for page in notebook_pages():
        nb = page.relative_to(HTML).with_suffix(".ipynb").as_posix()
        want = f"https://colab.research.google.com/github/{repo}/blob/"
        if not any(u.startswith(want) and u.endswith(nb) for _, u in parse(page).links):
            missing.append(nb)
    assert not missing, f"notebook pages without a Colab launch link to {repo}: {missing}"


# --------------------------------------------------------------------------- headless Chromium
def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("Debian `chromium` not found; scripts/test.sh installs it (apt-get install -y chromium)")
    return exe


def _run_chromium(*args: str, timeout: int = int(os.environ.get("CHROMIUM_TIMEOUT", 90))) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND",  # no network
               f"--user-data-dir={profile}", "--virtual-time-budget=4000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@lru_cache(maxsize=None)
def _dom(page: Path) -> tuple[int, str]:
    """``(returncode, DOM)`` of a page after it ran in the browser (scripts, MathJax), read once per test session."""
    r = _run_chromium("--dump-dom", page.as_uri())
    return r.returncode, r.stdout


def _title_of(page: Path) -> str:
    return " ".join(parse(page).h1[0].replace("#", "").split()) if parse(page).h1 else ""


def test_main_pages_load_in_chromium():
    """The landing page, every chapter and every notebook page render in the browser with their title."""
    failures = []
    for rel in toc_files():
        page = HTML / rel
        rc, dom = _dom(page)
        title = _title_of(page)
        visible = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
        if rc != 0 or "bd-article" not in dom or not title or title not in visible:
            failures.append(f"{rel}: rc={rc}, {len(dom)} bytes of DOM, title {title!r}")
    # index.html is a redirect to the root page
    r = _run_chromium("--dump-dom", (HTML / "index.html").as_uri())
    if _title_of(HTML / toc_files()[0]) not in " ".join(re.sub(r"<[^>]+>", " ", r.stdout).split()):
        failures.append("index.html does not lead to the landing page")
    assert not failures, "pages that did not load:\n" + "\n".join(failures)


def _screenshot(page: Path, out: Path, height: int, width: int = 1280):
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    r = _run_chromium("--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={out}", page.as_uri())
    assert out.exists(), f"no screenshot of {page}: {r.stderr[-2000:]}"
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(out) as im:
        lo, hi = im.convert("L").getextrema()
        assert im.size == (width, height) and hi - lo > 100, f"{out.name} looks blank ({im.size}, {lo}..{hi})"


def test_screenshots():
    _screenshot(HTML / toc_files()[0], ARTIFACTS / "landing.png", 1600)
    pages = notebook_pages()
    page = next((p for p in pages if p.name.startswith("02")), pages[0])
    _screenshot(page, ARTIFACTS / f"notebook_{page.stem}.png", 4000)


# --------------------------------------------------------------------------- math, typeset offline
def _visible_text(dom: str) -> str:
    """The text a reader sees: no scripts, styles or tags, entities decoded."""
    dom = re.sub(r"<(script|style|template|noscript)\b.*?</\1\s*>", " ", dom, flags=re.S | re.I)
    return html_lib.unescape(" ".join(re.sub(r"<[^>]+>", " ", dom).split()))


def test_mathjax_is_served_with_the_book():
    """Every page with math loads MathJax 3 from ``_static/mathjax`` of the build, never from the network."""
    script = HTML / "_static" / "mathjax" / "tex-mml-chtml.js"
    assert script.exists() and script.stat().st_size > 100_000, "MathJax is not in the build's _static/mathjax"
    version = re.search(r'\.VERSION="(\d+)\.\d+\.\d+"', script.read_text(encoding="utf-8", errors="replace"))
    assert version and version.group(1) == "3", f"not MathJax 3: {version and version.group(0)}"
    fonts = list((HTML / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) > 10, "MathJax's CHTML fonts are missing from the build"
    problems = []
    for page in part_pages("Theory") + part_pages("Notebooks") + [HTML / toc_files()[0]]:
        srcs = [u for kind, u in parse(page).links if kind == "script.src" and "mathjax" in u.lower()]
        local = [u for u in srcs if _internal_target(page, u) and _internal_target(page, u)[0] == script]
        if not local or len(local) != len(srcs):
            problems.append(f"{page.relative_to(HTML)}: MathJax scripts {srcs}")
    assert not problems, "pages that do not load the book's own MathJax:\n" + "\n".join(problems)


def test_math_is_typeset_offline_on_every_theory_and_notebook_page():
    """In the browser with no network, MathJax turns every formula into rendered math: at least one
    ``mjx-container`` per formula of the page, no TeX error, and no raw ``\\(`` / ``\\[`` left in the text."""
    pages = part_pages("Theory") + part_pages("Notebooks")
    assert len(pages) >= 6, f"theory and notebook pages in _toc.yml: {pages}"
    failures = []
    for page in pages:
        formulas = len(re.findall(r'class="math notranslate nohighlight"', page.read_text(encoding="utf-8")))
        rc, dom = _dom(page)
        typeset = dom.count("<mjx-container")
        raw = re.findall(r".{0,30}\\[(\[].{0,30}", _visible_text(dom))
        errors = dom.count("<mjx-merror")
        if formulas == 0 or rc != 0 or typeset < formulas or raw or errors:
            failures.append(f"{page.relative_to(HTML)}: {formulas} formulas, {typeset} typeset, {errors} TeX errors, "
                            f"raw TeX in the text: {raw[:3]}")
    assert not failures, "pages whose math is not typeset:\n" + "\n".join(failures)


# --------------------------------------------------------------------------- front page, navigation
GALLERY = {  # glue key -> (notebook, image type)
    "gallery_siren": ("notebooks/03_siren_images", "png"),
    "gallery_panorama": ("notebooks/04_panoramas", "png"),
    "gallery_nerf": ("notebooks/05_nerf", "gif"),
}


def _glued_html(notebook: str, key: str) -> str:
    """The HTML a notebook glued under ``key`` when the book was built (myst-nb's ``<doc>.glue.json``)."""
    path = ROOT / "_build" / "jupyter_execute" / f"{notebook}.glue.json"
    assert path.exists(), f"{path.relative_to(ROOT)} missing: did {notebook} run its gallery cell?"
    data = json.loads(path.read_text())
    assert key in data, f"{notebook} glued no {key!r} (keys: {sorted(data)})"
    return data[key]["data"]["text/html"]


def test_intro_opens_with_the_gallery_the_notebooks_made():
    """The landing page starts with the gallery: each image is the one its notebook glued during this build
    (not a file copied in by hand), decodes as a real PNG / animated GIF, and its card links to the notebook."""
    from PIL import Image

    intro = HTML / toc_files()[0]
    text = intro.read_text(encoding="utf-8")
    source = (ROOT / re.sub(r"\.html$", ".md", toc_files()[0])).read_text()
    assert "data:image" not in source and not re.search(r"\.(png|gif|jpe?g)\b", source), \
        "the intro's source embeds an image by hand"
    text = text[text.find("<article"):]  # the page's own content (not the print-only table of contents)
    start = text.find("diffrep-gallery")
    assert start >= 0, "no gallery on the landing page"
    first_text = text.find("Diffusing Differentiable Representations</em>")
    h1, h2 = text.find("<h1"), text.find("<h2")
    assert 0 <= h1 < start < first_text and start < h2, "the gallery is not at the top of the landing page"
    cards = re.split(r'<div class="sd-col[ "]', text[start:])[1:]
    problems = []
    for key, (notebook, kind) in GALLERY.items():
        glued = _glued_html(notebook, key)
        card = next((c for c in cards if glued in c), None)
        if card is None:
            problems.append(f"{key}: the image {notebook} glued is not in a gallery card")
            continue
        m = re.search(r'src="data:image/(\w+);base64,([^"]+)"', glued)
        data = base64.b64decode(m.group(2)) if m else b""
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt, size, frames = im.format.lower(), im.size, getattr(im, "n_frames", 1)
        except Exception as e:  # noqa: BLE001 - report every card
            problems.append(f"{key}: not an image ({e})")
            continue
        if fmt != kind or min(size) < 40 or (kind == "gif" and frames < 2):
            problems.append(f"{key}: {fmt} {size} with {frames} frames, expected a {kind}"
                            + (" turntable" if kind == "gif" else ""))
        hrefs = [urlsplit(u).path for u in re.findall(r'href="([^"]+)"', card)]
        if os.path.relpath(HTML / f"{notebook}.html", intro.parent) not in hrefs:
            problems.append(f"{key}: the card does not link to {notebook}.html ({hrefs})")
    assert not problems, "gallery problems:\n" + "\n".join(problems)


class _Sidebar(HTMLParser):
    """The entries of the left sidebar (``nav.bd-docs-nav``): ``(href, title)``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.entries: list[list[str]] = []
        self._depth = 0   # > 0 inside the nav
        self._in_a = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self._depth:
            self._depth += tag == "nav"
            if tag == "a":
                self._in_a = True
                self.entries.append([a.get("href", ""), ""])
        elif tag == "nav" and "bd-docs-nav" in (a.get("class") or ""):
            self._depth = 1

    def handle_endtag(self, tag):
        if self._depth and tag == "nav":
            self._depth -= 1
        if tag == "a":
            self._in_a = False

    def handle_data(self, data):
        if self._depth and self._in_a:
            self.entries[-1][1] += data


def test_sidebar_numbers_the_notebooks_and_has_no_tex():
    """The sidebar reads "1. ..." to "6. ..." for the notebooks, like their file names, with no TeX in any title,
    and every title is short enough for one or two sidebar lines."""
    intro = HTML / toc_files()[0]
    bar = _Sidebar()
    bar.feed(intro.read_text(encoding="utf-8"))
    entries = [(urlsplit(h).path, " ".join(t.split())) for h, t in bar.entries]
    assert len(entries) >= len(toc_files()) - 1, f"sidebar entries: {entries}"
    nb_entries = [(h, t) for h, t in entries if "notebooks/" in h]
    assert [Path(h).name for h, _ in nb_entries] == [p.name for p in notebook_pages()]
    problems = []
    for i, (href, title) in enumerate(nb_entries, 1):
        number = int(re.match(r"\d+", Path(href).name).group(0))
        if number != i or not title.startswith(f"{number}. "):
            problems.append(f"{href}: {title!r} is not numbered {number}.")
    for href, title in entries:
        if "\\" in title or "$" in title:
            problems.append(f"{href}: raw TeX in {title!r}")
        if len(title) > 56:   # about two lines of the sidebar
            problems.append(f"{href}: {title!r} is {len(title)} characters long")
    assert not problems, "sidebar:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- readable on a phone
class _Browser:
    """One headless Chromium for many pages, driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    commands on fd 3, answers on fd 4; no network, no extra package). It sets an exact viewport (a phone's 400 px,
    which the command-line ``--window-size`` cannot go below 500 px for ``--dump-dom``), runs scripts in the page
    and takes screenshots."""

    def __init__(self, timeout: float = float(os.environ.get("CHROMIUM_TIMEOUT", 90))):
        self.timeout, self.profile = timeout, tempfile.mkdtemp()
        to_chrome, self._w = os.pipe()
        self._r, from_chrome = os.pipe()
        cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={self.profile}", "--hide-scrollbars",
               "--remote-debugging-pipe", "about:blank"]
        # bash puts the pipe ends on fds 3 and 4 (through spare fds, whatever numbers the pipes got), then becomes
        # chromium
        script = 'exec 200<&"$0" 201>&"$1"; exec 3<&200 4>&201 200<&- 201>&-; shift; exec "$@"'
        self.proc = subprocess.Popen(["bash", "-c", script, str(to_chrome), str(from_chrome), *cmd],
                                     pass_fds=(to_chrome, from_chrome), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf, self._id, self._events = b"", 0, []
        page = next(t for t in self._call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self._session = self._call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self._call("Page.enable", page=True)

    def _read(self) -> dict:
        import select

        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            if not select.select([self._r], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError(f"chromium did not answer within {self.timeout} s")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def _call(self, method: str, page: bool = False, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if page:
            msg["sessionId"] = self._session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read()
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self._events.append(m)

    def open(self, page: Path, width: int, height: int = 1000):
        """Load ``page`` in a ``width`` x ``height`` viewport (a phone's when narrow) and wait for its math."""
        self._call("Emulation.setDeviceMetricsOverride", page=True, width=width, height=height, deviceScaleFactor=1,
                   mobile=width < 600)
        self._events.clear()
        self._call("Page.navigate", page=True, url=page.as_uri())
        while not any(m.get("method") == "Page.loadEventFired" for m in self._events):
            self._events.append(self._read())
        self.evaluate("window.MathJax && MathJax.startup && MathJax.startup.promise || null")

    def evaluate(self, expression: str):
        r = self._call("Runtime.evaluate", page=True, expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in r, r["exceptionDetails"]
        return r["result"].get("value")

    def screenshot(self, out: Path):
        out.write_bytes(base64.b64decode(self._call("Page.captureScreenshot", page=True, format="png")["data"]))

    def close(self):
        try:
            self._call("Browser.close")
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a browser that does not close is killed
            self.proc.kill()
        os.close(self._w)
        os.close(self._r)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    b = _Browser()
    yield b
    b.close()


def _reader_pages() -> list[Path]:
    theory = part_pages("Theory")
    one = next((p for p in theory if p.stem == "pullback_geometry"), theory[0])
    return [HTML / toc_files()[0], one, *notebook_pages()]


@pytest.mark.parametrize("width,height", [(1300, 2200), (400, 2600)])
def test_screenshots_at_desktop_and_phone_widths(browser, width, height):
    """test-artifacts/w<width>_<page>.png for the landing page, one theory page and every notebook page."""
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for page in _reader_pages():
        out = ARTIFACTS / f"w{width}_{'intro' if page == HTML / toc_files()[0] else page.stem}.png"
        out.unlink(missing_ok=True)
        browser.open(page, width, height)
        browser.screenshot(out)
        with Image.open(out) as im:
            lo, hi = im.convert("L").getextrema()
            assert im.size == (width, height) and hi - lo > 100, f"{out.name} looks blank ({im.size}, {lo}..{hi})"


# Elements of the article that stick out to the right of the window, unless a box that scrolls sideways holds them
# (MathJax's copy of each formula for screen readers, mjx-assistive-mml, is clipped to nothing: not counted).
OVERFLOW = """(() => {
  const W = document.documentElement.clientWidth, bad = [];
  const article = document.querySelector(".bd-article") || document.body;
  for (const el of article.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= W + 1 || el.closest("mjx-assistive-mml")) continue;
    let held = false;
    for (let a = el.parentElement; a && a !== article.parentElement; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if ((ox === "auto" || ox === "scroll") && a.getBoundingClientRect().right <= W + 1) { held = true; break; }
    }
    if (!held) bad.push(el.tagName.toLowerCase() + "." + String(el.className).split(" ")[0] + " ["
                        + (el.textContent || "").trim().slice(0, 40) + "] right=" + Math.round(r.right));
  }
  return {width: W, innerWidth: window.innerWidth, overflowing: bad};
})()"""


def test_nothing_overflows_a_phone_screen(browser):
    """On every page of the book, in a 400 px phone viewport, figures scale and tables scroll inside their own box:
    no element of the article sticks out of the window, and the page does not grow wider than the screen."""
    failures = []
    for page in _all_pages():
        browser.open(page, 400, 800)
        r = browser.evaluate(OVERFLOW)
        assert r["width"] == 400, f"{page.name}: viewport {r['width']} px, not 400"
        if r["innerWidth"] > 400 or r["overflowing"]:
            failures.append(f"{page.relative_to(HTML)}: page {r['innerWidth']} px wide; "
                            + "; ".join(r["overflowing"][:6]))
    assert not failures, "wider than a phone screen:\n" + "\n".join(failures)


# --------------------------------------------------------------------------- readable at desktop width
def _all_pages() -> list[Path]:
    return [HTML / p for p in toc_files()]


#: Matplotlib figures are saved at 100 dpi, so 10-point text is about 14 px in the PNG; shown at 0.65 of its size or
#: more it stays >= 9 px on screen. Pixel renders (the gallery, turntables) must never be shrunk.
MIN_FIGURE_SCALE = 0.65

FIGURE_SIZES = """(() => {
  const out = [];
  for (const img of document.querySelectorAll(".bd-article img")) {
    const r = img.getBoundingClientRect();
    if (!img.naturalWidth || r.width === 0) continue;
    out.push({src: (img.getAttribute("src") || "").slice(0, 60), alt: img.alt || "",
              natural: img.naturalWidth, shown: r.width,
              pixels: img.classList.contains("diffrep-gallery-pixels")});
  }
  return out;
})()"""


def test_figures_are_shown_large_enough_to_read_at_1300px(browser):
    """On every page at 1300 px, no figure is shown below MIN_FIGURE_SCALE of its natural width (its text would fall
    under 9 px), and no pixel render of the gallery is shown below its natural size."""
    problems = []
    for page in _all_pages():
        browser.open(page, 1300, 1000)
        for f in browser.evaluate(FIGURE_SIZES):
            scale = f["shown"] / f["natural"]
            need = 1.0 if f["pixels"] else MIN_FIGURE_SCALE
            if f["natural"] >= 64 and scale < need - 1e-3:
                problems.append(f"{page.relative_to(HTML)}: {f['alt'] or f['src']!r} {f['natural']} px shown at "
                                f"{f['shown']:.0f} px (scale {scale:.2f} < {need})")
    assert not problems, "figures shrunk below a readable size:\n" + "\n".join(problems)


# Blocks of the article whose content is wider than the block (cut, or hidden behind a scroll bar) at this width.
COLUMN_OVERFLOW = """(() => {
  const bad = [];
  const sel = ".bd-article div.math, .bd-article mjx-container[display='true'], .bd-article pre, .bd-article table";
  for (const el of document.querySelectorAll(sel)) {
    if (el.closest("mjx-assistive-mml")) continue;
    const over = el.scrollWidth - el.clientWidth;
    if (el.clientWidth > 0 && over > 2)
      bad.push(el.tagName.toLowerCase() + " [" + (el.textContent || "").trim().replace(/\\s+/g, " ").slice(0, 50)
               + "] " + over + " px too wide");
  }
  // On a desktop a table also fits whole: the theme puts a wide table in a scrolling box, which hides its right side.
  if (window.innerWidth >= 1000)
    for (const t of document.querySelectorAll(".bd-article table")) {
      const over = Math.round(t.getBoundingClientRect().width - t.parentElement.clientWidth);
      if (over > 2)
        bad.push("table [" + (t.textContent || "").trim().replace(/\\s+/g, " ").slice(0, 50) + "] " + over
                 + " px wider than its box");
    }
  return bad;
})()"""


@pytest.mark.parametrize("width", [1300, 400])
def test_no_equation_code_or_table_is_cut(browser, width):
    """At 1300 px (a desktop) and 400 px (a phone) every display equation, code block, printed output and table
    fits its column whole: long equations are split over aligned lines, code wraps."""
    failures = []
    for page in _all_pages():
        browser.open(page, width, 1000)
        bad = browser.evaluate(COLUMN_OVERFLOW)
        if bad:
            failures.append(f"{page.relative_to(HTML)}: " + "; ".join(bad[:5]))
    assert not failures, f"wider than the column at {width} px:\n" + "\n".join(failures)


def test_no_console_errors_and_no_request_leaves_the_book(browser):
    """Every page loads with no JavaScript error or console error, and requests nothing but files of the book
    (no CDN: scripts, fonts, images and widgets are all served with it)."""
    browser._call("Runtime.enable", page=True)
    browser._call("Log.enable", page=True)
    browser._call("Network.enable", page=True)
    problems = []
    try:
        for page in _all_pages():
            browser.open(page, 1300, 1000)
            browser.evaluate("new Promise(r => setTimeout(() => r(null), 300))")  # late scripts
            for m in browser._events:
                method, p = m.get("method", ""), m.get("params", {})
                if method == "Runtime.exceptionThrown":
                    d = p.get("exceptionDetails", {})
                    problems.append(f"{page.name}: exception {d.get('exception', {}).get('description', d.get('text'))}")
                elif method == "Runtime.consoleAPICalled" and p.get("type") == "error":
                    problems.append(f"{page.name}: console.error " + " ".join(str(a.get("value", a.get("description", "")))
                                                                             for a in p.get("args", [])))
                elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                    problems.append(f"{page.name}: {p['entry'].get('text', '')} {p['entry'].get('url', '')}")
                elif method == "Network.requestWillBeSent":
                    url = p.get("request", {}).get("url", "")
                    if not url.startswith(("file:", "data:", "about:", "blob:")):
                        problems.append(f"{page.name}: request to {url}")
    finally:
        for domain in ("Network", "Log", "Runtime"):
            browser._call(f"{domain}.disable", page=True)
    assert not problems, "console errors or requests outside the book:\n" + "\n".join(dict.fromkeys(problems))


@pytest.mark.parametrize("width,height", [(1300, 2200), (400, 2600)])
def test_screenshots_of_every_page(browser, width, height):
    """Every page of the book whole, a screen at a time: test-artifacts/all_w<width>_<page>_<k>.png, k = 0, 1, ...
    (consecutive screens overlap by 100 px; one capture of a page taller than Chromium's texture limit would come
    out partly blank)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(f"all_w{width}_*.png"):
        old.unlink()
    for page in _all_pages():
        name = str(page.relative_to(HTML).with_suffix("")).replace("/", "_")
        browser.open(page, width, height)
        total = int(browser.evaluate("document.documentElement.scrollHeight"))
        for k, y in enumerate(range(0, total, height - 100)):
            browser.evaluate(f"window.scrollTo(0, {y})")
            browser.evaluate("new Promise(r => setTimeout(() => r(null), 100))")
            shot = ARTIFACTS / f"all_w{width}_{name}_{k}.png"
            browser.screenshot(shot)
            assert shot.stat().st_size > 1000


class _OutputText(HTMLParser):
    """The text of every ``pre`` inside a cell's output (``div.cell_output``) of a built page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._stack: list[tuple[str, bool]] = []   # (tag, opens an output)
        self._in_output = 0
        self._pre: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "hr", "meta", "link", "input", "source", "wbr"):
            return
        opens = "cell_output" in (dict(attrs).get("class") or "").split()
        self._stack.append((tag, opens))
        self._in_output += opens
        if tag == "pre" and self._in_output:
            self._pre = []

    def handle_endtag(self, tag):
        while self._stack:
            t, opens = self._stack.pop()
            self._in_output -= opens
            if t == "pre" and self._pre is not None:
                self.blocks.append("".join(self._pre))
                self._pre = None
            if t == tag:
                break

    def handle_data(self, data):
        if self._pre is not None:
            self._pre.append(data)


def test_printed_output_lines_fit_the_column():
    """Every line a notebook prints on a page of the built book (the text of its cell outputs) is <= 88 columns,
    so that printed tables show whole in the column instead of wrapping mid-row (code and output are set at a size
    that holds 88 columns at 1300 px). Read from the HTML, so a build from the execution cache is checked too."""
    bad = []
    for page in _all_pages():
        parser = _OutputText()
        parser.feed(page.read_text())
        for block in parser.blocks:
            bad += [f"{page.relative_to(HTML)}: {len(ln)} columns: {ln[:60]!r}"
                    for ln in block.splitlines() if len(ln) > 88]
    assert not bad, "printed lines over 88 columns:\n" + "\n".join(bad)


def test_the_output_reader_finds_printed_text():
    parser = _OutputText()
    parser.feed('<div class="cell_input"><pre>code</pre></div><div class="cell_output docutils container">'
                '<div class="output stream"><div class="highlight"><pre><span>a &lt; b</span>\nrow 2</pre></div>'
                '</div></div><pre>not output</pre>')
    assert parser.blocks == ["a < b\nrow 2"]
