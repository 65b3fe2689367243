r"""Render a recorded sweep's landscape figure to a PNG (the README's quick-preset figure comes from this).

    .venv/bin/python scripts/landscape_png.py --storage sqlite:///.hpscape/demo.db --sweep quick \
        -o docs/quick-landscape.png

Builds the same offline HTML as `hpscape run` writes, opens it in Debian's Chromium (`make chromium`) through
playwright, and screenshots the figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="Optuna storage URL holding the sweep")
    parser.add_argument("--sweep", required=True, help="the sweep's name")
    parser.add_argument("--metric", default=None, help="landscape metric (default: the sweep spec's)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        parser.exit(2, f"{CHROMIUM} is missing: install it with `make chromium`\n")

    from playwright.sync_api import sync_playwright

    from hpscape.dashboards import landscape_html
    from hpscape.landscapes import build_sweep_landscapes
    from hpscape.workers.sweep import recorded_spec

    try:
        spec = recorded_spec(args.storage, args.sweep)
    except LookupError as exc:
        parser.exit(2, f"{exc}\n")
    metric = args.metric or spec.metric
    landscapes = build_sweep_landscapes(args.storage, args.sweep, metric=metric)
    html = landscape_html(landscapes, title=f"{args.sweep}: {metric.replace('_', ' ')}", dataset=spec.dataset)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        page_file = Path(tmp) / "landscape.html"
        page_file.write_text(html, encoding="utf-8")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1320, "height": 900})
        page.goto(page_file.as_uri())
        page.wait_for_selector(".main-svg")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        page.locator(".js-plotly-plot").first.screenshot(path=str(args.output))
        browser.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
