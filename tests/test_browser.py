"""The report in a real browser: headless Chromium (Debian's ``chromium``, ``make
browser-setup``) opens ``index.html`` from disk at 1400x900 and finds no console error, the
scoreboard on the first screen and within the viewport's width, and every image the page
references loaded; a screenshot of the first screen is checked against the same layout (the
scoreboard's coloured cells lie inside its box, the last column's among them).  A page
broken on purpose (an image missing, a script error, a scoreboard too wide) fails each check.

Chromium is driven over its DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL on file descriptors 3 and 4), with nothing but the standard
library; each browser is bounded in time, has its own fresh profile and is killed (its
process group, by id) when the page is done.  Without Chromium the tests skip, saying so.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

WIDTH, HEIGHT = 1400, 900
TIMEOUT_S = 90.0
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         f"--window-size={WIDTH},{HEIGHT}", "--remote-debugging-pipe"]


def chromium() -> str | None:
    for name in (os.environ.get("VMBENCH_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


needs_browser = pytest.mark.skipif(
    chromium() is None, reason="no Chromium here (Debian package chromium): run "
                               "`make browser-setup` (as root with apt) to test the report "
                               "in a browser")


class Browser:
    """One headless Chromium and one page, over the DevTools protocol on a pipe."""

    def __init__(self, profile: Path):
        cmd_r, self._cmd_w = os.pipe()          # we write commands, it reads fd 3
        self._res_r, res_w = os.pipe()          # it writes fd 4, we read responses

        def fds():                              # (in the child) fds 3 and 4 for the pipe
            a, b = os.dup(cmd_r), os.dup(res_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=fds, start_new_session=True)
        os.close(cmd_r)
        os.close(res_w)
        self.deadline = time.monotonic() + TIMEOUT_S
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.session = None

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", session=False, wait=False)
                    self.proc.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired, TimeoutError):
                    pass
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)     # the group of the one we started
                self.proc.wait(timeout=10)
            for fd in (self._cmd_w, self._res_r):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Chromium did not answer within {TIMEOUT_S:g} s")
            ready, _, _ = select.select([self._res_r], [], [], left)
            if ready:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe (exit {self.proc.poll()})")
                self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method, params=None, session=None, wait=True):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session is not False and (session or self.session):
            msg["sessionId"] = session or self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        if not wait:
            return None
        while True:
            m = self._read()
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method):
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._read()
            self.events.append(m)
            if m.get("method") == method:
                return m

    def evaluate(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate: {r['exceptionDetails']}")
        return r["result"].get("value")


LAYOUT_JS = """(() => {
  const sb = document.getElementById("scoreboard");
  const r = sb ? sb.getBoundingClientRect() : null;
  return {scoreboard: r && {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                            width: r.width, height: r.height,
                            columns: sb.tHead.rows[0].cells.length},
          viewport: {width: window.innerWidth, height: window.innerHeight},
          page_width: document.documentElement.scrollWidth};
})()"""

IMAGES_JS = """(async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = "eager"; });
  const done = i => i.complete ? Promise.resolve() : new Promise(r => {
    i.addEventListener("load", r); i.addEventListener("error", r); });
  await Promise.race([Promise.all(imgs.map(done)), new Promise(r => setTimeout(r, 30000))]);
  return imgs.map(i => ({src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0}));
})()"""


def open_page(page: Path, profile: Path, screenshot: Path, script: str | None = None) -> dict:
    """Open ``page`` at 1400x900: its layout, a screenshot of the first screen, every image
    loaded (lazy ones made eager), the value of ``script`` (an expression evaluated last),
    and every console error, uncaught exception and failed load on the way."""
    b = Browser(profile)
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"}, session=False)
        b.session = b.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                     "flatten": True},
                           session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            b.send(f"{domain}.enable")
        b.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": HEIGHT,
                                                      "deviceScaleFactor": 1, "mobile": False})
        b.send("Page.navigate", {"url": page.resolve().as_uri()})
        b.wait_event("Page.loadEventFired")
        layout = b.evaluate(LAYOUT_JS)
        shot = b.send("Page.captureScreenshot", {"format": "png"})
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        images = b.evaluate(IMAGES_JS)
        value = b.evaluate(script) if script else None
        b.evaluate("new Promise(r => setTimeout(r, 200))")     # late events
    finally:
        b.close()
    errors = []
    for m in b.events:
        p, kind = m.get("params", {}), m.get("method")
        if kind == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append("exception: " + (d.get("exception", {}).get("description")
                                           or d.get("text", "")).splitlines()[0])
        elif kind == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                       for a in p.get("args", [])))
        elif kind == "Log.entryAdded" and p["entry"].get("level") == "error":
            errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        elif kind == "Network.loadingFailed":
            errors.append(f"load failed: {p.get('errorText')}")
    return {"layout": layout, "images": images, "errors": errors, "screenshot": screenshot,
            "value": value}


def coloured_box(png: Path, from_y: int = 0):
    """(left, top, right, bottom) of the saturated pixels of a screenshot from row ``from_y``
    down (the scoreboard's red and green cells; text, rules and greys are not saturated;
    the legend's colour keys above the scoreboard are left out), or None."""
    import numpy as np
    from PIL import Image
    a = np.asarray(Image.open(io.BytesIO(png.read_bytes())).convert("RGB")).astype(int)
    sat = a.max(axis=2) - a.min(axis=2) > 40
    sat[:max(0, from_y)] = False
    ys, xs = np.nonzero(sat)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def problems(res: dict, whole_scoreboard: bool = True) -> list[str]:
    """What is wrong with an opened page: the three checks and the screenshot's layout."""
    out = [f"console: {e}" for e in res["errors"]]
    out += [f"image did not load: {i['src']}" for i in res["images"] if not i["ok"]]
    lay, sb = res["layout"], res["layout"]["scoreboard"]
    vw, vh = lay["viewport"]["width"], lay["viewport"]["height"]
    if (vw, vh) != (WIDTH, HEIGHT):
        out.append(f"viewport {vw}x{vh}, not {WIDTH}x{HEIGHT}")
    if sb is None:
        return out + ["no #scoreboard on the page"]
    if sb["left"] < 0 or sb["right"] > vw:
        out.append(f"scoreboard spans x {sb['left']:.0f}..{sb['right']:.0f}, beyond the "
                   f"viewport's width {vw}")
    if not 0 <= sb["top"] < vh / 3:
        out.append(f"scoreboard starts at y {sb['top']:.0f}, not on the first third of the "
                   f"first screen")
    if whole_scoreboard and sb["bottom"] > vh:
        out.append(f"scoreboard ends at y {sb['bottom']:.0f}, below the first screen ({vh})")
    if lay["page_width"] > vw:
        out.append(f"the page is {lay['page_width']} px wide: it scrolls sideways at {vw}")
    from PIL import Image
    size = Image.open(res["screenshot"]).size
    if size != (WIDTH, HEIGHT):
        out.append(f"screenshot {size}, not {WIDTH}x{HEIGHT}")
    box = coloured_box(res["screenshot"], int(sb["top"]))
    if box is None:
        return out + ["no coloured cell on the first screen"]
    left, top, right, bottom = box
    if left < sb["left"] - 2 or right > min(sb["right"], vw) + 2 or \
            (whole_scoreboard and bottom > sb["bottom"] + 2):
        out.append(f"coloured pixels at {box}, outside the scoreboard's box "
                   f"({sb['left']:.0f}, {sb['top']:.0f}, {sb['right']:.0f}, {sb['bottom']:.0f})")
    last_col = sb["right"] - sb["width"] / sb["columns"]
    if right < last_col:
        out.append(f"no coloured cell in the scoreboard's last column (x >= {last_col:.0f}) "
                   f"on the screenshot: it ends at x {right}")
    return out


# ---------------------------------------------------------------------------- a small report
@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """A report of a small real matrix: 3 policies x 2 workloads x 2 seeds, with its plots;
    rmap (the last column) is stuck on dstate-victim, so its cells are coloured."""
    from harness import bench, results
    root = tmp_path_factory.mktemp("browser") / "results"
    res = bench.bench(policies=["mainline", "morton", "rmap"],
                      workloads=["tiny", "dstate-victim"], seeds=range(2), jobs=2,
                      out_root=root, use_cache=False, progress=False, log=lambda m: None)
    assert res.failed == 0
    results.write(res.out, res.df, res.meta, res.out_root, timeline_views=res.views, n_jobs=2)
    return res.out


SORT_JS = """(() => {
  const t = document.querySelector("#w-dstate-victim table.sortable");
  const col = Array.from(t.tHead.rows[0].cells).findIndex(h => h.textContent === "stuck");
  const order = () => Array.from(t.tBodies[0].rows).map(r => r.cells[0].textContent);
  const before = order();
  t.tHead.rows[0].cells[col].click();
  const up = order();
  t.tHead.rows[0].cells[col].click();
  return {before, up, down: order(), mark: t.tHead.rows[0].cells[col].getAttribute("aria-sort")};
})()"""


@needs_browser
def test_report_in_chromium(report_dir, tmp_path):
    res = open_page(report_dir / "index.html", tmp_path / "profile", tmp_path / "first.png",
                    SORT_JS)
    assert problems(res) == []
    # a click on "stuck" sorts dstate-victim's table by it (morton 0 %, the others 100 %),
    # stably; a second click the other way
    assert res["value"] == {"before": ["mainline", "morton", "rmap"],
                            "up": ["morton", "mainline", "rmap"],
                            "down": ["mainline", "rmap", "morton"], "mark": "descending"}
    srcs = sorted(i["src"] for i in res["images"])
    on_disk = sorted(re.findall(r'<img [^>]*src="([^"]+)"',
                                (report_dir / "index.html").read_text()))
    assert srcs == on_disk and len(srcs) == 5       # 2 ttk + 2 timelines + wrong victims
    sb = res["layout"]["scoreboard"]
    assert sb["columns"] == 4 and sb["width"] > 0.8 * WIDTH


@needs_browser
def test_a_broken_page_fails(report_dir, tmp_path):
    """The same report with an image removed and a script error, then with a scoreboard
    wider than the screen: each shows up as a problem."""
    broken = tmp_path / "broken"
    shutil.copytree(report_dir, broken, symlinks=True)
    (broken / "plots" / "ttk_tiny.png").unlink()
    page = (broken / "index.html").read_text()
    (broken / "index.html").write_text(page.replace(
        "</body>", "<script>window.vmbenchNoSuchFunction();</script></body>"))
    res = open_page(broken / "index.html", tmp_path / "p1", tmp_path / "broken.png")
    found = problems(res)
    assert "image did not load: plots/ttk_tiny.png" in found
    assert any("exception: TypeError" in p and "vmbenchNoSuchFunction" in p for p in found)
    assert any(p.startswith("console: log: Failed to load resource") and "ttk_tiny.png" in p
               for p in found)
    assert not any("scoreboard" in p for p in found)

    (broken / "index.html").write_text(page.replace(
        "</head>", "<style>#scoreboard{width:1900px!important}</style></head>"))
    (broken / "plots" / "ttk_tiny.png").write_bytes((report_dir / "plots" / "ttk_tiny.png")
                                                   .read_bytes())
    res = open_page(broken / "index.html", tmp_path / "p2", tmp_path / "wide.png")
    found = problems(res)
    assert any(p.startswith("scoreboard spans x") and "beyond the viewport's width 1400" in p
               for p in found), found
    assert any(p.startswith("no coloured cell in the scoreboard's last column") for p in found)
    assert not any(p.startswith(("console:", "image")) for p in found)


def test_skips_without_a_browser(monkeypatch):
    """No Chromium on the PATH: chromium() says so (the tests above then skip with how to
    get one)."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("VMBENCH_CHROMIUM", raising=False)
    assert chromium() is None
    assert "make browser-setup" in needs_browser.kwargs["reason"]
