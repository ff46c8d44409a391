"""Screenshot of the page `dtx serve` puts at /, after asking it one question (for docs/serving.md).

    dtx serve runs/recipe/qa-dev-store --port 8000 &
    .venv/bin/python scripts/screenshot_page.py --url http://127.0.0.1:8000 --question "..." -o docs/results/serve-page.png

Drives the system's Chromium through playwright, as tests/test_serve.py does.
"""

from __future__ import annotations

import argparse
import shutil

from playwright.sync_api import expect, sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--question", required=True)
    ap.add_argument("--top-k", default="5")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        raise SystemExit("no Chromium on PATH (scripts/setup.sh installs Debian's)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(args.url.rstrip("/") + "/")
        page.fill("#question", args.question)
        page.fill("#top_k", args.top_k)
        page.click("#go")
        expect(page.locator("#status")).to_contain_text("best first", timeout=120_000)
        page.screenshot(path=args.out, full_page=False)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
