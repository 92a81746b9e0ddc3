"""Screenshots of a running console for the README: ``python scripts/console_screenshots.py URL TOKEN_FILE``.

Drives Debian's headless Chromium (selenium, the driver at /usr/bin/chromedriver) against a running
``fraudscore console`` (the demo's: ``make run`` prints its address and token file): logs in, saves the queue,
the top case's page and the overview as PNG files under ``docs/``. Read-only: it decides nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url", help="the console's address, e.g. http://127.0.0.1:8080/")
    parser.add_argument("token_file", type=Path, help="the token file the console was started with")
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--case", default="", help="the case to show (default: the top of the queue)")
    args = parser.parse_args(argv)
    url = args.url if args.url.endswith("/") else args.url + "/"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
    try:
        driver.get(url + "login")
        driver.find_element(By.ID, "analyst").send_keys("analyst")
        driver.find_element(By.ID, "token").send_keys(args.token_file.read_text().strip())
        driver.find_element(By.ID, "login").click()
        driver.find_element(By.ID, "who")
        driver.get(url)
        args.out.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out / "console-queue.png"))
        case = args.case or driver.find_element(By.CLASS_NAME, "case-link").text
        driver.get(f"{url}cases/{case}")
        for _ in range(2):  # the window's height is the page's, up to 2400 px (a wider window reflows it)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1500, min(max(1000, height + 150), 2400))
        driver.save_screenshot(str(args.out / "console-case.png"))
        driver.set_window_size(1500, 1000)
        driver.get(url + "overview")
        driver.save_screenshot(str(args.out / "console-overview.png"))
        print(f"saved console-queue.png, console-case.png ({case}) and console-overview.png in {args.out}")
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
