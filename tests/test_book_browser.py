"""The built book (``_build/html``) in headless Chromium, plus a crawl of every internal link.

``scripts/test.sh`` builds the book first (the same command as ``scripts/build_book.sh``). Without a build these
tests are skipped; without the Debian ``chromium`` binary the browser tests fail (``scripts/test.sh`` installs
it). Chromium runs with ``--headless --no-sandbox`` and no network: every host name resolves to nothing.

Screenshots of the landing page and of one notebook page go to ``test-artifacts/``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
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


def _run_chromium(*args: str, timeout: int = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND",  # no network
               f"--user-data-dir={profile}", "--virtual-time-budget=4000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _title_of(page: Path) -> str:
    return " ".join(parse(page).h1[0].replace("#", "").split()) if parse(page).h1 else ""


def test_main_pages_load_in_chromium():
    """The landing page, every chapter and every notebook page render in the browser with their title."""
    failures = []
    for rel in toc_files():
        page = HTML / rel
        r = _run_chromium("--dump-dom", page.as_uri())
        dom = r.stdout
        title = _title_of(page)
        visible = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
        if r.returncode != 0 or "bd-article" not in dom or not title or title not in visible:
            failures.append(f"{rel}: rc={r.returncode}, {len(dom)} bytes of DOM, title {title!r}")
    # index.html is a redirect to the root page
    r = _run_chromium("--dump-dom", (HTML / "index.html").as_uri())
    if _title_of(HTML / toc_files()[0]) not in " ".join(re.sub(r"<[^>]+>", " ", r.stdout).split()):
        failures.append("index.html does not lead to the landing page")
    assert not failures, "pages that did not load:\n" + "\n".join(failures)


def _screenshot(page: Path, out: Path, height: int):
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    r = _run_chromium("--hide-scrollbars", f"--window-size=1280,{height}", f"--screenshot={out}", page.as_uri())
    assert out.exists(), f"no screenshot of {page}: {r.stderr[-2000:]}"
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(out) as im:
        lo, hi = im.convert("L").getextrema()
        assert im.size == (1280, height) and hi - lo > 100, f"{out.name} looks blank ({im.size}, {lo}..{hi})"


def test_screenshots():
    _screenshot(HTML / toc_files()[0], ARTIFACTS / "landing.png", 1600)
    pages = notebook_pages()
    page = next((p for p in pages if p.name.startswith("02")), pages[0])
    _screenshot(page, ARTIFACTS / f"notebook_{page.stem}.png", 4000)
