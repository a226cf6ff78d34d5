"""Notifications with a link, never an attachment: a JSON POST to each configured webhook.

The body is ``{"msgtype": "text", "text": {"content": ...}, "title": ..., "url": ...}``,
which 企业微信 (WeCom) group robots accept as it is and a generic receiver can read. A
target that does not answer 2xx within the timeout is a failure; the caller records it and
tries again later. Only http(s) URLs are accepted; the text never carries personal data.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from manyi.exc import ConfigError

TIMEOUT = 10.0


def check_targets(urls) -> list[str]:
    """The webhook URLs (a list, or one comma-separated text as the environment gives it), each checked
    to be http(s) with a host; ConfigError otherwise."""
    if isinstance(urls, str):
        urls = urls.split(",")
    out = []
    for url in urls or ():
        url = str(url).strip()
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"notification target {url!r} is not an http(s) URL")
        out.append(url)
    return out


def send(urls, title: str, text: str, link: str, timeout: float = TIMEOUT) -> list[str]:
    """POST the message to every URL; return the failures as texts (empty: all accepted)."""
    body = json.dumps({"msgtype": "text", "text": {"content": f"{title}\n{text}\n{link}"}, "title": title,
                       "url": link}, ensure_ascii=False).encode("utf-8")
    failures = []
    for url in check_targets(urls):
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:   # noqa: S310 - checked scheme
                if not 200 <= response.status < 300:
                    failures.append(f"{urlsplit(url).hostname}: HTTP {response.status}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failures.append(f"{urlsplit(url).hostname}: {exc}")
    return failures
