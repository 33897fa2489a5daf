"""The catalogue site: a page per registered component, an index whose search works in a real browser
(headless Chromium, the Debian package), escaped strings, and no broken link."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from trevo.interop.site import component_page, page_name, write_site
from trevo.registry import Entry, Paper, entries


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])
        self.scripts += tag == "script"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return write_site(tmp_path_factory.mktemp("site"))


def test_a_page_per_component_and_no_broken_link(site):
    root = site.parent
    pages = sorted((root / "components").glob("*.html"))
    assert len(pages) == len(entries())
    for page in [site, *pages]:
        parser = Links()
        parser.feed(page.read_text())
        for link in parser.links:
            if link.startswith("https://arxiv.org/abs/"):
                continue
            assert not re.match(r"^[a-z]+:", link), f"{page.name} links outside the site: {link}"
            assert (page.parent / link.split("?")[0]).resolve().is_file(), f"{page.name}: broken link {link}"


def test_component_page_shows_paper_equation_forms(site):
    text = (site.parent / "components" / "mixer-rwkv4.html").read_text()
    assert "https://arxiv.org/abs/2305.13048" in text
    assert "WKV with per-channel decay w" in text and "(eq. 14)" in text  # the docstring's equation
    for form in ("chunk", "quadratic", "recurrent"):
        assert f"<code>{form}</code>" in text
    assert "tests/mixers/test_rwkv4.py" in text


def test_strings_are_escaped():
    class Evil:
        """y = <script>alert(1)</script> & more"""

    entry = Entry(kind="mixer", name="<b>evil</b>", factory=Evil, paper=Paper("<i>t</i>", "1234.5678'", 2020),
                  summary="<img src=x onerror=alert(1)>")
    page = component_page(entry, [{"file": "<x>.json", "ms": 1.0}], [])
    assert "<script>" not in page and "<img" not in page and "<b>evil" not in page and "<i>t" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "1234.5678&#x27;" in page
    assert page_name(entry) == "mixer-_b_evil__b_.html"


def test_bench_figures_and_arena_ranks(tmp_path):
    from trevo.arena.store import Run, Store
    from trevo.config import RunConfig

    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "mixers-fwd-cpu.json").write_text('{"meta": {}, "rows": [{"mixer": "rwkv4", "form": "chunk", '
                                               '"length": 128, "ms": 3.25, "status": "ok"}]}')
    store = Store(tmp_path / "arena.sqlite")
    for label, bpb in (("softmax_attention", 2.5), ("rwkv4", 2.25)):
        for seed in (0, 1):
            store.add(Run(key=f"{label}{seed}", sweep="s", label=label, family=label, task="byte_lm", seed=seed,
                          lr=1e-3, status="done", config=RunConfig().replace({"model.mixer": label}).to_dict(),
                          metric="bpb", higher_is_better=False, val={"bpb": bpb + seed / 100},
                          test={"bpb": bpb + seed / 100}, params=1000, flops_per_token=1.0, tokens_per_s=10.0,
                          peak_mem_mb=1.0))
    index = write_site(tmp_path / "site", results=tmp_path / "arena.sqlite", bench=bench)
    rwkv = (index.parent / "components" / "mixer-rwkv4.html").read_text()
    assert "3.25" in rwkv and "mixers-fwd-cpu.json" in rwkv
    assert "1 of 2" in rwkv  # rwkv4's lower bits per byte ranks it first
    assert "2 of 2" in (index.parent / "components" / "mixer-softmax_attention.html").read_text()


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    return found


def dump_dom(url: str) -> str:
    result = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_index_renders_and_searches_in_chromium(site):
    dom = dump_dom(site.as_uri() + "?q=rwkv&kind=mixer")
    total = len(entries())
    expected = sum(1 for e in entries("mixer") if "rwkv" in " ".join(
        [e.kind, e.name, e.family, e.category, e.summary, e.paper.title if e.paper else ""]).lower())
    assert f"{expected} of {total} components" in dom  # the script ran and filtered
    assert expected >= 1
    page = dump_dom((site.parent / "components" / "mixer-mamba.html").as_uri())
    assert "<h1>" in page and "arXiv:2312.00752" in page


def test_screenshots_are_written(site, tmp_path):
    for name, url in (("index", site.as_uri()), ("page", (site.parent / "components" / "mixer-rwkv4.html").as_uri())):
        png = tmp_path / f"{name}.png"
        subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1280,900", f"--screenshot={png}", url], capture_output=True, timeout=120)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_arena_ranks_come_from_each_sweeps_latest_plan(tmp_path):
    """Runs of an earlier plan (other steps) are not pooled into the ranks; a second sweep ranks apart."""
    from trevo.arena.store import Run, Store
    from trevo.config import RunConfig
    from trevo.interop.site import arena_ranks

    store = Store(tmp_path / "arena.sqlite")

    def plan(sweep: str, steps: int, bpbs: dict[str, float]) -> None:
        keys = []
        for label, bpb in bpbs.items():
            cfg = RunConfig().replace({"model.mixer": label, "train.steps": steps}).to_dict()
            key = f"{sweep}-{label}-{steps}"
            store.add(Run(key=key, sweep=sweep, label=label, family=label, task="byte_lm", seed=0, lr=1e-3,
                          status="done", config=cfg, metric="bpb", higher_is_better=False, val={"bpb": bpb},
                          test={"bpb": bpb}, params=1000, flops_per_token=1.0, tokens_per_s=10.0, peak_mem_mb=1.0))
            keys.append(key)
        store.add_sweep(sweep, None, "", {}, keys)

    plan("s", 20, {"rwkv4": 1.0, "softmax_attention": 3.0})  # superseded: rwkv4 first here
    plan("s", 40, {"rwkv4": 2.5, "softmax_attention": 2.0})
    plan("other", 20, {"rwkv4": 1.5})
    ranks = arena_ranks(tmp_path / "arena.sqlite")
    assert sorted((r["sweep"], r["rank"], r["of"], r["mean"]) for r in ranks["rwkv4"]) == [
        ("other", 1, 1, 1.5), ("s", 2, 2, 2.5)]
    assert [(r["sweep"], r["rank"], r["mean"]) for r in ranks["softmax_attention"]] == [("s", 1, 2.0)]
