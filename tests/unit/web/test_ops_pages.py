"""The console's queue paging, reports page, health panels (last backup, transfers) and the backup
gauge, through Starlette's test client over a real engine and store."""

from __future__ import annotations

import re
import time
from pathlib import Path

from starlette.testclient import TestClient

from engine.engine import Engine
from engine.ops.backup import create_backup
from engine.ops.schedule import BackupSettings, record_good_backup
from server.web.app import create_app
from server.web.config import WebConfig
from server.web.reports import REPORT_CSP
from tests.unit.web.test_console import client, login
from tests.web_support import add_pending


def _refs(html: str) -> list[str]:
    return re.findall(r'<td><a href="/case/[^"]+">([^<]+)</a></td>', html)


def test_queue_pages_keep_order_and_filter(engine: Engine) -> None:
    queued = add_pending(engine, 60)
    c = client(engine)
    login(c, "adjudicator")
    first = c.get("/queue?partition=camp-q&size=25")
    assert "60 open cases in camp-q" in first.text
    assert _refs(first.text) == queued[:25]
    assert "Page 1 of 3 · cases 1–25 of 60" in first.text
    nxt = re.search(r'<a href="([^"]+)" rel="next"', first.text)
    assert nxt and "page=2" in nxt.group(1)
    second = c.get(nxt.group(1).replace("&amp;", "&"))
    assert _refs(second.text) == queued[25:50]
    last = c.get("/queue?partition=camp-q&size=25&page=3")
    assert _refs(last.text) == queued[50:] and 'rel="next"' not in last.text and 'rel="prev"' in last.text
    # by score across pages: the highest fused first, page 2 goes on where page 1 stopped
    by_score = [*_refs(c.get("/queue?partition=camp-q&size=25&sort=score").text),
                *_refs(c.get("/queue?partition=camp-q&size=25&sort=score&page=2").text)]
    assert by_score == queued[::-1][:50]
    # every partition: 62 cases; R-4 (fused 21) leads by score; past the end shows the last page
    everything = c.get("/queue?sort=score&size=50&page=9")
    assert "62 open cases" in everything.text and "Page 2 of 2" in everything.text
    assert _refs(c.get("/queue?sort=score").text)[0] == "R-4"
    assert _refs(c.get("/queue?size=7").text) == _refs(c.get("/queue?size=50").text)  # unknown size: 50


def test_reports_page_builds_shows_and_downloads(engine: Engine) -> None:
    inv = client(engine)
    login(inv, "investigator")
    page = inv.get("/reports")
    assert page.status_code == 200 and 'type="date"' in page.text and "report-frame" not in page.text
    built = inv.get("/reports?build=1&from=2020-01-01&to=2030-12-31&partition=camp-a&min_cell=5")
    assert built.status_code == 200
    assert "2020-01-01 to 2030-12-31 (UTC) · partition: camp-a" in built.text
    frame = re.search(r'<iframe id="report-frame" class="report-frame" sandbox src="([^"]+)"', built.text)
    assert frame, "the report is shown in a sandboxed frame"
    assert "frame-src 'self'" in built.headers["content-security-policy"]
    html = inv.get(frame.group(1))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.headers["content-security-policy"] == REPORT_CSP and "script" not in REPORT_CSP
    assert html.headers["x-frame-options"] == "SAMEORIGIN" and html.headers["cache-control"] == "no-store"
    assert "Registration report" in html.text
    csv_link = re.search(r'href="(/reports/[^"]+\.csv)\?download=1"', built.text)
    assert csv_link
    csv = inv.get(csv_link.group(1) + "?download=1")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="nasname-report-2020-01-01_2030-12-31-' in csv.headers["content-disposition"]
    assert csv.headers["cache-control"] == "no-store"
    # another session (even an admin's) cannot fetch this session's report
    admin = client(engine)
    login(admin, "admin")
    assert admin.get(frame.group(1)).status_code == 404
    assert admin.get("/reports").status_code == 200
    # a bad period: the form again with the reason
    bad = inv.get("/reports?build=1&from=2026-12-01&to=2026-11-01")
    assert bad.status_code == 400 and "period is empty" in bad.text
    for role in ("station", "adjudicator"):  # GetReport's roles are investigator and admin
        other = client(engine)
        login(other, role)
        assert other.get("/reports").status_code == 403
        assert other.get(frame.group(1)).status_code == 403


def test_health_shows_backup_and_transfers_and_metrics_gauge(engine: Engine, tmp_path: Path) -> None:
    admin = client(engine)
    login(admin, "admin")
    before = admin.get("/health")
    assert 'id="backup-none"' in before.text
    assert "No peer sites yet" in before.text  # admins see the transfer panel (TransferStatus)
    assert "nasname_backup_age_seconds +Inf" in admin.get("/metrics").text
    result = create_backup(engine.gallery, tmp_path / "backups", config=engine.config)
    record_good_backup(engine.datadir, result)
    after = admin.get("/health")
    assert result.path.name in after.text and 'id="backup-time"' in after.text
    assert "OVERDUE" not in after.text
    age = re.search(r"^nasname_backup_age_seconds (\S+)$", admin.get("/metrics").text, re.M)
    assert age and 0.0 <= float(age.group(1)) < 600
    inv = client(engine)
    login(inv, "investigator")
    page = inv.get("/health")
    assert result.path.name in page.text and 'id="transfers"' not in page.text  # admin only
    # a schedule the last backup is far behind: overdue, in words
    late = TestClient(create_app(engine, WebConfig(), backup=BackupSettings(every="1s")),
                      base_url="https://testserver")
    login(late, "admin")
    time.sleep(2.1)
    assert "OVERDUE (scheduled every 1s)" in late.get("/health").text
