"""Open a page in Debian's headless Chromium (selenium + chromedriver) and report what rendered."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def require_browser() -> None:
    """Skip with a clear reason when no browser could be installed on this machine."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()) and not shutil.which("chromium"):
        pytest.skip("headless Chromium not installed (make test installs Debian's chromium + chromium-driver)")


def open_browser(width: int = 1280, height: int = 2000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def inspect_page(url: str, screenshot: Path) -> dict:
    """Load ``url``; return console errors, each chart's rendered size, section ids, and save a screenshot."""
    from selenium.webdriver.common.by import By

    drv = open_browser()
    try:
        drv.get(url)
        errors = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
        svgs = drv.find_elements(By.CSS_SELECTOR, "svg.chart")
        chart_sizes = {s.get_attribute("id"): (s.size["width"], s.size["height"]) for s in svgs}
        sections = [s.get_attribute("id") for s in drv.find_elements(By.TAG_NAME, "section")]
        unavailable = [s.get_attribute("id") for s in drv.find_elements(By.CSS_SELECTOR, "section.unavailable")]
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        height = drv.execute_script("return document.documentElement.scrollHeight")
        drv.set_window_size(1280, min(int(height) + 50, 30000))  # a full-page screenshot
        drv.save_screenshot(str(screenshot))
        return {"errors": errors, "charts": chart_sizes, "sections": sections, "unavailable": unavailable}
    finally:
        drv.quit()


def console_errors(drv, ignore: tuple[str, ...] = ()) -> list[dict]:
    """SEVERE console entries logged since the last call (reading the browser log drains it), minus messages that
    contain one of ``ignore``."""
    entries = drv.get_log("browser")
    return [e for e in entries if e.get("level") == "SEVERE" and not any(s in e.get("message", "") for s in ignore)]
