"""The pure parts of object storage: sizes and rates as written, the shared byte rate, the
provider's reason cut to one line and free of secrets, and ETags in one form."""

from __future__ import annotations

import threading

import pytest

from cassy_scheduler.configfile.sizes import SizeError, parse_rate, parse_size
from cassy_scheduler.storage.bandwidth import BandwidthLimit
from cassy_scheduler.storage.objectstore import _etag, provider_reason, scrub
from cassy_scheduler.storage.probe import _with_fix


@pytest.mark.parametrize(
    ("text", "size"),
    [("16MiB", 16 << 20), ("5 MB", 5_000_000), ("1048576", 1 << 20), ("1.5GiB", 3 << 29)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_rates_need_per_second() -> None:
    assert parse_rate("200MB/s") == 200_000_000
    with pytest.raises(SizeError, match="not a rate"):
        parse_rate("200MB")
    with pytest.raises(SizeError, match="not a size"):
        parse_size("16 mebibytes")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
            self.slept += seconds


def test_the_rate_holds_over_many_chunks_and_lets_a_quarter_second_burst_through() -> None:
    time = FakeTime()
    limit = BandwidthLimit(10_000_000, clock=time.clock, sleep=time.sleep)
    for _ in range(100):  # 100 MB at 10 MB/s
        limit.take(1_000_000)
    assert time.now == pytest.approx(9.9)  # the last megabyte starts after 99 others


def test_a_quiet_limiter_does_not_bank_more_than_the_burst() -> None:
    time = FakeTime()
    limit = BandwidthLimit(1_000_000, clock=time.clock, sleep=time.sleep)
    time.now = 100.0  # idle for 100 s
    for _ in range(10):
        limit.take(1_000_000)
    # The tenth megabyte starts 9 s after the first would have, less the one burst.
    assert time.now - 100.0 == pytest.approx(8.75)


def test_the_providers_reason_is_one_line_with_status_code_and_message() -> None:
    error = Exception(
        "Error performing PUT http://127.0.0.1:9/b/k in 5ms - Server returned non-2xx status "
        'code: 404 Not Found: <?xml version="1.0"?><Error><Code>NoSuchBucket</Code>'
        "<Message>The specified bucket does not exist</Message></Error>\n\nDebug source:\n..."
    )
    assert provider_reason(error) == (
        "404 Not Found: NoSuchBucket: The specified bucket does not exist"
    )


def test_secrets_are_scrubbed_and_fixes_added() -> None:
    assert (
        scrub("sig=sv-2024&sk=SECRETKEY1 refused", ["SECRETKEY1"]) == "sig=sv-2024&sk=*** refused"
    )
    assert "check the credentials" in _with_fix("failed: 403 Forbidden: AccessDenied")
    assert "create the bucket" in _with_fix("failed: 404 Not Found: NoSuchBucket")


def test_etags_in_one_form() -> None:
    assert _etag('"abc-3"') == _etag("abc-3") == _etag('W/"abc-3"') == "abc-3"
    assert _etag(None) is None
