"""The backend stops and starts again under a steady trickle of page views.

While it is down, the frontend answers every page with its friendly 503 page (never a 500, a
502 or a dropped connection of its own); once the backend is healthy again, pages come back by
themselves within seconds, without the frontend being restarted. Both a graceful stop
(SIGTERM) and a crash (SIGKILL of the whole backend) are tried, each time on the same port.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

import httpx

VIEWERS = 3
PAGES = ("/", "/datasets", "/datasets/steady", "/datasets/steady?sort=-id")
# Each viewer waits this long between page views: a trickle, not a load test.
PAUSE_S = 0.02
DOWN_S = 1.0
# Pages must be back this soon after the backend answers its health check again.
RECOVERY_S = 2.0
FRIENDLY_503 = "The data service is not available"


@dataclass
class View:
    started: float
    ended: float
    page: str
    status: int | None  # None: the frontend itself did not answer
    friendly: bool
    error: str = ""


class Viewers:
    """A few threads viewing pages in a loop, recording every answer."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.views: list[View] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._view, args=(i,), daemon=True) for i in range(VIEWERS)
        ]

    def __enter__(self) -> Viewers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _view(self, offset: int) -> None:
        with httpx.Client(
            base_url=self.base_url, timeout=30, headers={"Accept": "text/html"}
        ) as client:
            n = offset
            while not self.stop.is_set():
                page = PAGES[n % len(PAGES)]
                n += 1
                started = time.monotonic()
                try:
                    response = client.get(page)
                    view = View(
                        started,
                        time.monotonic(),
                        page,
                        response.status_code,
                        response.status_code == 503 and FRIENDLY_503 in response.text,
                    )
                except httpx.HTTPError as exc:
                    view = View(started, time.monotonic(), page, None, False, repr(exc))
                with self.lock:
                    self.views.append(view)
                time.sleep(PAUSE_S)

    def between(self, start: float, end: float) -> list[View]:
        with self.lock:
            return [v for v in self.views if start <= v.started < end]


def _wait_for_views(viewers: Viewers, since: float, count: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while len(viewers.between(since, float("inf"))) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_frontend_answers_503_while_the_backend_is_down_and_recovers_alone(start_server):
    backend = start_server("backend")
    with httpx.Client(base_url=backend.url, timeout=30) as api:
        created = api.put("/api/datasets/steady", content=b"id,name\n1,one\n2,two\n")
        assert created.status_code == 201, created.text
    web = start_server("frontend", env={"MYAPP_BACKEND_URL": backend.url})
    assert web.proc is not None
    frontend_pid = web.proc.pid

    outages = []
    with Viewers(web.url) as viewers:
        warm = time.monotonic()
        _wait_for_views(viewers, warm, 20)
        for how in (signal.SIGTERM, signal.SIGKILL):
            went_down = time.monotonic()
            if how == signal.SIGTERM:
                assert backend.stop(signal.SIGTERM) == 0
            else:
                backend.kill()
            stopped = time.monotonic()
            time.sleep(DOWN_S)
            backend.start()
            healthy = time.monotonic()
            time.sleep(RECOVERY_S)
            _wait_for_views(viewers, healthy + RECOVERY_S, 20)
            outages.append((how.name, went_down, stopped, healthy))
        ended = time.monotonic()

    assert web.proc.poll() is None and web.proc.pid == frontend_pid, "the frontend restarted"
    views = viewers.between(0, float("inf"))
    own_failures = [v for v in views if v.status is None or v.status not in (200, 503)]
    assert not own_failures, own_failures[:5]
    unfriendly = [v for v in views if v.status == 503 and not v.friendly]
    assert not unfriendly, unfriendly[:5]
    # Before the first stop every page works. A view still running when the stop began may
    # meet the backend already closing: only views that ended before it count.
    first_stop = outages[0][1]
    before = [v for v in viewers.between(warm, first_stop) if v.ended < first_stop]
    assert before, "no page was viewed before the first stop"
    failing = [v for v in before if v.status != 200]
    assert not failing, ("failing before the first stop", failing[:5])

    summary = []
    for (name, _went_down, stopped, healthy), next_down in zip(
        outages, [o[1] for o in outages[1:]] + [ended], strict=True
    ):
        # Until the backend is started again, every page is the friendly 503.
        gone = stopped + DOWN_S
        down = [v for v in viewers.between(stopped, gone) if v.ended < gone]
        assert down, f"{name}: no page was viewed while the backend was down"
        assert {v.status for v in down} == {503}, f"{name}: {[v.status for v in down]}"
        after = viewers.between(healthy, next_down)
        back = [v for v in after if v.status == 200]
        assert back, f"{name}: no page came back after the restart"
        first_back = back[0].ended - healthy
        assert first_back < RECOVERY_S, f"{name}: first page back after {first_back:.1f} s"
        # Pages viewed once recovered, until the next stop, all work.
        late = [
            v
            for v in viewers.between(healthy + RECOVERY_S, next_down)
            if v.status != 200 and v.ended < next_down
        ]
        assert not late, f"{name}: failing {RECOVERY_S} s after the backend was healthy: {late}"
        summary.append(
            f"{name}: down {healthy - stopped:.1f} s; in its first {DOWN_S:g} s {len(down)} views "
            f"({sum(v.status == 503 for v in down)} friendly 503), first 200 "
            f"{first_back:.2f} s after healthy"
        )
    print("\n" + "\n".join(summary) + f"\n{len(views)} views in all")
