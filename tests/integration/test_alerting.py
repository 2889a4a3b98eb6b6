"""Alerting and observability end to end, with Debian's Prometheus and Alertmanager started by
scripts/dev-services (`up monitoring`): Prometheus scrapes a running pipeline and evaluates the
shipped rules against its real metrics; every dashboard panel's query returns data; alerts pushed
by Thermocline's client go through the shipped Alertmanager example to a local stand-in for Slack's
webhook and a local SMTP server, escalate to the second tier, resolve, and survive a 30 s
Alertmanager outage.

The Alertmanager runs the shipped deploy/alertmanager/alertmanager.yml with the webhook, the SMTP
relay and the timings (group_wait and friends) replaced for the test; the routing is the example's.
The whole module holds /tmp/tc-monitoring.lock: it restarts the dev Alertmanager and Prometheus."""

import calendar
import contextlib
import email
import email.policy
import fcntl
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from conftest import ROOT
from test_observe import _up, free_port, get, wait_for
from test_quality import tool
from test_timescale import _timescaledb_usable

DEV = os.path.join(ROOT, "scripts", "dev-services")
AM_EXAMPLE = os.path.join(ROOT, "deploy", "alertmanager", "alertmanager.yml")
RULES = os.path.join(ROOT, "deploy", "prometheus", "thermocline-rules.yml")
GRAFANA = os.path.join(ROOT, "deploy", "grafana")
DOCS = os.path.join(ROOT, "docs", "observability.md")
BI_DASHBOARDS = {"fleet-overview.json", "device-drilldown.json"}

# Metrics the rules name that this build cannot show, and why. Anything else a rule names must be
# a series Prometheus has scraped from the pipeline under test.
NOT_EXPORTED_HERE: dict = {}
TIMESCALE_ONLY = {"thermocline_timescaledb_job_failures_total",
                  "thermocline_timescaledb_job_last_run_failed",
                  "thermocline_timescaledb_job_next_start_timestamp_seconds",
                  "thermocline_timescaledb_job_last_success_timestamp_seconds"}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                "group_right", "offset", "bool", "inf", "nan"}


class Inbox:
    """What the stand-ins received: Slack webhook posts and emails."""

    def __init__(self):
        self.lock = threading.Lock()
        self.slack = []
        self.mail = []

    def slack_where(self, pred):
        with self.lock:
            return [m for m in self.slack if pred(m)]

    def mail_where(self, pred):
        with self.lock:
            return [m for m in self.mail if pred(m)]


def slack_text(msg):
    a = msg["attachments"][0]
    return a.get("title", ""), a.get("text", "")


class SlackStandIn(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        msg = json.loads(body)
        with self.server.inbox.lock:
            self.server.inbox.slack.append(msg)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class SmtpStandIn:
    def __init__(self, inbox):
        self.inbox = inbox

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        with self.inbox.lock:
            self.inbox.mail.append({"to": list(envelope.rcpt_tos), "subject": str(msg["Subject"]),
                                    "body": part.get_content() if part else ""})
        return "250 OK"


def read(path):
    with open(path) as f:
        return f.read()


def dev(*args, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    p = subprocess.run([DEV, *args], capture_output=True, text=True, env=env, timeout=180)
    assert p.returncode == 0, f"dev-services {' '.join(args)}: {p.stderr[-3000:]}"
    return p.stdout


def substitute(text, old, new):
    assert text.count(old) >= 1, f"the example Alertmanager configuration has no {old!r} any more"
    return text.replace(old, new)


class Monitoring:
    def __init__(self, tmp):
        self.prom = os.environ.get("THERMOCLINE_PROMETHEUS_URL")
        self.am = os.environ.get("THERMOCLINE_ALERTMANAGER_URL")
        self.targets = os.environ.get("THERMOCLINE_PROMETHEUS_TARGETS")
        if not (self.prom and self.am and self.targets):
            pytest.fail('THERMOCLINE_PROMETHEUS_URL etc. are not set: eval "$(scripts/dev-services env)"')
        self.inbox = Inbox()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), SlackStandIn)
        self.http.inbox = self.inbox
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.smtp = Controller(SmtpStandIn(self.inbox), hostname="127.0.0.1", port=free_port())
        self.smtp.start()
        self.am_config = os.path.join(tmp, "alertmanager.yml")

    def start(self):
        cfg = read(AM_EXAMPLE)
        cfg = substitute(cfg, "https://hooks.slack.com/services/T00000000/B00000000/REPLACE-ME",
                         f"http://127.0.0.1:{self.http.server_address[1]}/slack")
        cfg = substitute(cfg, "smtp.example.com:587", f"127.0.0.1:{self.smtp.port}")
        cfg = substitute(cfg, "smtp_require_tls: true", "smtp_require_tls: false")
        cfg = substitute(cfg, "group_wait: 30s", "group_wait: 1s")
        cfg = substitute(cfg, "group_interval: 5m", "group_interval: 2s")
        with open(self.am_config, "w") as f:
            f.write(cfg)
        os.makedirs(self.targets, exist_ok=True)
        for name in os.listdir(self.targets):  # left by an interrupted run: would go down
            if name.startswith("it-"):
                os.remove(os.path.join(self.targets, name))
        self.restart_alertmanager()
        dev("down", "prometheus")
        dev("up", "prometheus", env_extra={"THERMOCLINE_PROMETHEUS_RULES": RULES})

    def restart_alertmanager(self):
        dev("down", "alertmanager")
        self.start_alertmanager()

    def start_alertmanager(self):
        dev("up", "alertmanager", env_extra={"THERMOCLINE_ALERTMANAGER_CONFIG": self.am_config})

    def query(self, promql):
        url = f"{self.prom}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            detail = e.read().decode()
            e.close()
            raise AssertionError(f"{promql}: {detail}") from None
        assert body["status"] == "success", body
        return body["data"]["result"]

    def api(self, path):
        with urllib.request.urlopen(f"{self.prom}{path}", timeout=30) as r:
            return json.load(r)["data"]

    def close(self):
        self.http.shutdown()
        self.http.server_close()
        self.smtp.stop()
        dev("down", "alertmanager")
        dev("up", "alertmanager")  # the default configuration again: receives and drops


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory):
    with open("/tmp/tc-monitoring.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        dev("up", "monitoring")
        m = Monitoring(str(tmp_path_factory.mktemp("monitoring")))
        try:
            m.start()
            yield m
        finally:
            m.close()


@contextlib.contextmanager
def scraped(monitoring, tc, port):
    """Prometheus scrapes 127.0.0.1:port (job thermocline) while inside."""
    path = os.path.join(monitoring.targets, f"it-{tc.topic}.json")
    with open(path + ".tmp", "w") as f:
        json.dump([{"targets": [f"127.0.0.1:{port}"]}], f)
    os.rename(path + ".tmp", path)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        os.remove(path)


def stop(proc, tc):
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    tc.assert_clean(err)


def metric_names(promql):
    """The metric names a PromQL expression reads."""
    q = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)    # strings
    q = re.sub(r"\{[^}]*\}", " ", q)                   # label matchers
    q = re.sub(r"\[[^\]]*\]", " ", q)                  # ranges and subqueries
    q = re.sub(r"\boffset\s+\S+", " ", q)               # offset 1d
    q = re.sub(r"(?<![A-Za-z_:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", q)  # numbers: 1e+09
    q = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", q)
    q = re.sub(r"[A-Za-z_:][A-Za-z0-9_:]*\s*\(", "(", q)  # function calls
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", q))
    return {n for n in names if n.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d.*", n)}


def sql_panel(query, schema, variables=None, hours=6):
    """A panel's SQL as Grafana's PostgreSQL datasource sends it: the dashboard's variables
    ($schema, and any of variables) substituted, and the time macros expanded to RFC 3339
    literals of the range (the last `hours` hours, up to an hour ahead for clocks apart)."""
    now = time.time()
    start, end = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (now - hours * 3600, now + 3600))
    for name, value in {"schema": schema, **(variables or {})}.items():
        query = re.sub(r"\$" + name + r"\b", value, query)
    query = query.replace("$__timeFrom()", f"'{start}'").replace("$__timeTo()", f"'{end}'")
    return re.sub(r"\$__timeFilter\(([a-z_]+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", query)


def seed_quality_tables(tc):
    """Rows in the quality monitor's tables, as the monitor writes them (its sink is not part of
    this build): one device minute, the fleet's minute, dead letters, an open finding."""
    out = subprocess.run([tool("tc_quality_migrate"), tc.dsn, tc.schema], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
    tc.sql("INSERT INTO quality_1m (device_id, bucket, readings, temperature_n, gaps, gap_max_s)"
           " VALUES ('s-1', date_trunc('minute', now()) - interval '1 minute', 6, 5, 1, 40)")
    tc.sql("INSERT INTO quality_fleet_1m (bucket, readings, temperature_n, humidity_n, pressure_n,"
           " battery_n, late, delay_p50_ms, delay_p99_ms, devices)"
           " VALUES (date_trunc('minute', now()) - interval '1 minute', 60, 58, 60, 59, 60, 2,"
           " 40, 900, 10)")
    tc.sql("INSERT INTO quality_dead_letters_1m (bucket, reason, n)"
           " VALUES (date_trunc('minute', now()) - interval '1 minute', 'out_of_range', 3)")
    tc.sql("INSERT INTO anomalies (device_id, metric, kind, severity, start_time, score)"
           " VALUES ('s-1', 'temperature', 'stuck', 'warning', now() - interval '5 minutes', 12)")


def check_dashboard_shape(dash, uids):
    for key in ("uid", "title", "panels", "schemaVersion", "templating", "time"):
        assert key in dash, f"dashboard {dash.get('title')}: no {key}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), f"{dash['title']}: panel ids repeat"
    for p in dash["panels"]:
        assert {"type", "title", "gridPos", "datasource", "targets"} <= set(p), p.get("title")
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        assert p["datasource"]["uid"] in uids, p["title"]
        for t in p["targets"]:
            assert t["refId"] and ("expr" in t or "rawSql" in t), p["title"]


def test_metrics_rules_and_dashboards(tc, monitoring, tmp_path):
    """Prometheus scrapes a running pipeline: every rule evaluates without error, every metric a
    rule names exists, every family of /metrics is documented, every dashboard query returns
    data."""
    timescale, _ = _timescaledb_usable()
    mode = ("postgres.timescaledb=on",) if timescale else ()
    tc.cmd("migrate", extra=mode)
    port = free_port()
    proc = tc.spawn("run", extra=(*mode, f"http.listen=127.0.0.1:{port}", f"lake.dir={tmp_path}/lake",
                                  "lake.roll_seconds=1", "http.storage_sample_s=1",
                                  f"alerting.alertmanager_urls={monitoring.am}"))
    try:
        with scraped(monitoring, tc, port) as instance:
            assert wait_for(lambda: _up(port))
            tc.simulate("--devices", "40", "--count", "4000", "--invalid-ratio", "0.05", "--seed", "5")
            sel = f'{{instance="{instance}"}}'
            assert wait_for(lambda: (lambda r: r and float(r[0]["value"][1]) == 4000)(
                monitoring.query(f"sum(thermocline_readings_stored_total{sel}"
                                 f" + thermocline_dead_letters_total{sel})")), timeout=120)
            assert wait_for(lambda: monitoring.query(f"thermocline_lake_files{sel} > 0"), timeout=120)
            seen = time.time()

            # Every rule evaluated since, without error.
            def evaluated():
                groups = monitoring.api("/api/v1/rules")["groups"]
                rules = [r for g in groups for r in g["rules"]]
                fresh = all(r.get("lastEvaluation", "")[:19] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seen))
                            for r in rules)
                return rules if fresh and rules else None
            rules = wait_for(evaluated, timeout=60)
            assert rules, "Prometheus did not evaluate the rules"
            assert len({r["name"] for r in rules}) >= 15
            bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
            assert not bad, bad

            # Every metric the rules read is scraped from the pipeline.
            names = set().union(*(metric_names(r["query"]) for r in rules))
            assert "thermocline_end_to_end_delay_seconds_bucket" in names and "up" in names
            missing = []
            for name in sorted(names):
                if name in NOT_EXPORTED_HERE or (name in TIMESCALE_ONLY and not timescale):
                    continue
                if not monitoring.query(f'{{__name__="{name}", instance="{instance}"}}'):
                    missing.append(name)
            assert not missing, f"rules read metrics the pipeline does not export: {missing}"

            # Every sink's commit latency per write (the store's batches, the lake's files, the
            # rollups' flushes in plain mode), and the fleet's freshness, have real values.
            for sink in ("store", "lake") + (() if timescale else ("rollups",)):
                got = monitoring.query(f'thermocline_sink_commit_duration_seconds_count{{sink="{sink}", instance="{instance}"}}')
                assert got and float(got[0]["value"][1]) >= 1, (sink, got)
            assert "thermocline_sink_commit_duration_seconds_bucket" in names
            newest = monitoring.query(f"thermocline_newest_reading_timestamp_seconds{sel}")
            assert newest and 0 < seen - float(newest[0]["value"][1]) < 600, newest

            # Every family of the page is documented.
            _, page = get(port, "/metrics")
            families = set(re.findall(r"^# TYPE (\S+) ", page, re.M))
            docs = read(DOCS)
            assert families and not [f for f in families if f"`{f}`" not in docs], \
                [f for f in families if f"`{f}`" not in docs]

            # Every dashboard panel's query returns data (rates want a few scrapes in their window).
            seed_quality_tables(tc)
            assert wait_for(lambda: monitoring.query(
                f"count_over_time(thermocline_readings_consumed_total{sel}[1m]) >= 4"), timeout=60)
            ds = read(os.path.join(GRAFANA, "provisioning", "datasources", "thermocline.yml"))
            uids = set(re.findall(r"^\s+uid: (\S+)$", ds, re.M))
            assert uids == {"thermocline-prometheus", "thermocline-postgres", "thermocline-bi"}
            prov = read(os.path.join(GRAFANA, "provisioning", "dashboards", "thermocline.yml"))
            assert "apiVersion: 1" in prov and "type: file" in prov
            # The BI dashboards (the api views as the BI role) are test_bi.py's.
            dashboards = sorted(set(os.listdir(os.path.join(GRAFANA, "dashboards"))) - BI_DASHBOARDS)
            assert dashboards == ["data-quality.json", "pipeline-health.json"]
            empty = []
            for name in dashboards:
                dash = json.loads(read(os.path.join(GRAFANA, "dashboards", name)))
                check_dashboard_shape(dash, uids)
                for p in dash["panels"]:
                    for t in p["targets"]:
                        if "expr" in t:
                            q = t["expr"].replace("$instance", re.escape(instance).replace("\\", "\\\\")).replace("$__rate_interval", "1m")
                            ok = monitoring.query(q)
                        else:
                            ok = tc.sql(sql_panel(t["rawSql"], tc.schema))
                        if not ok:
                            empty.append(f"{name}: {p['title']} {t['refId']}")
            assert not empty, f"panels without data: {empty}"
    finally:
        stop(proc, tc)


def alert(tc, monitoring, *args, check=True):
    return tc.cmd("alert", "send", *args, extra=(f"alerting.alertmanager_urls={monitoring.am}",),
                  check=check)


def test_alerts_reach_slack_and_email_grouped_and_resolve(tc, monitoring):
    site = f"it-{uuid.uuid4().hex[:8]}"
    inbox = monitoring.inbox
    common = ("--site", site, "--metric", "temperature", "--detector", "stuck",
              "--runbook", "docs/operations.md#stuck-sensor")
    for dev_id in ("s-1", "s-2"):
        alert(tc, monitoring, "--name", "StuckSensor", "--severity", "warning", "--device", dev_id,
              "--summary", f"temperature of {dev_id} is stuck", *common)
    # A fleet's alerts in one message: the same name and site are one group.
    grouped = lambda m: (slack_text(m)[0].startswith(f"[FIRING:2] StuckSensor at {site}")
                         and "s-1" in slack_text(m)[1] and "s-2" in slack_text(m)[1])
    assert wait_for(lambda: inbox.slack_where(grouped), timeout=60), inbox.slack
    msg = inbox.slack_where(grouped)[0]
    assert msg["channel"] == "#thermocline-alerts"
    assert "temperature of s-1 is stuck" in slack_text(msg)[1]
    assert "docs/operations.md#stuck-sensor" in slack_text(msg)[1]

    # Critical: Slack and email.
    alert(tc, monitoring, "--name", "SilentDevice", "--severity", "critical", "--device", "s-3",
          "--site", site, "--detector", "silence", "--summary", "s-3 has sent nothing for 10 minutes",
          "--runbook", "docs/operations.md#silent-device")
    subject = f"[FIRING] SilentDevice at {site} (1 alerts)"
    assert wait_for(lambda: inbox.mail_where(lambda m: m["subject"] == subject), timeout=60), inbox.mail
    mail = inbox.mail_where(lambda m: m["subject"] == subject)[0]
    assert mail["to"] == ["oncall@example.com"]
    assert "device s-3: s-3 has sent nothing for 10 minutes" in mail["body"]
    assert "Runbook: docs/operations.md#silent-device" in mail["body"]
    assert wait_for(lambda: inbox.slack_where(
        lambda m: slack_text(m)[0] == f"[FIRING:1] SilentDevice at {site}"), timeout=60)

    # Resolved: both channels say so.
    alert(tc, monitoring, "--resolve", "--name", "SilentDevice", "--severity", "critical",
          "--device", "s-3", "--site", site, "--detector", "silence")
    resolved = f"[RESOLVED] SilentDevice at {site} (1 alerts)"
    assert wait_for(lambda: inbox.mail_where(lambda m: m["subject"] == resolved), timeout=60), inbox.mail
    assert "resolved critical device s-3" in inbox.mail_where(lambda m: m["subject"] == resolved)[0]["body"]
    assert wait_for(lambda: inbox.slack_where(
        lambda m: slack_text(m)[0] == f"[RESOLVED] SilentDevice at {site}"), timeout=60)
    # Warnings never go by email.
    assert not inbox.mail_where(lambda m: "StuckSensor" in m["subject"])
    for dev_id in ("s-1", "s-2"):
        alert(tc, monitoring, "--resolve", "--name", "StuckSensor", "--severity", "warning",
              "--device", dev_id, *common[:-2])
    assert wait_for(lambda: inbox.slack_where(
        lambda m: slack_text(m)[0] == f"[RESOLVED] StuckSensor at {site}"), timeout=60)


def test_escalation_and_inhibition_while_not_ready(tc, monitoring):
    """The pipeline's own alert: not ready (no store) for 1 s fires ThermoclineNotReady (critical:
    Slack and email), still firing 3 s later it escalates to the second tier; device alerts are
    inhibited meanwhile."""
    site = f"it-{uuid.uuid4().hex[:8]}"
    inbox = monitoring.inbox
    port = free_port()
    proc = tc.spawn("run", extra=(f"http.listen=127.0.0.1:{port}",
                                  "postgres.dsn=host=127.0.0.1 port=1 connect_timeout=1",
                                  f"alerting.alertmanager_urls={monitoring.am}",
                                  f"alerting.site={site}", "alerting.not_ready_after_s=1",
                                  "alerting.escalate_after_s=3", "alerting.resend_s=1"))
    try:
        first = f"[FIRING] ThermoclineNotReady at {site} (1 alerts)"
        assert wait_for(lambda: inbox.mail_where(lambda m: m["subject"] == first), timeout=90), inbox.mail
        assert inbox.mail_where(lambda m: m["subject"] == first)[0]["to"] == ["oncall@example.com"]
        assert wait_for(lambda: inbox.slack_where(
            lambda m: m["channel"] == "#thermocline-alerts"
            and slack_text(m)[0] == f"[FIRING:1] ThermoclineNotReady at {site}"), timeout=60)
        escalated = f"[ESCALATED FIRING] ThermoclineNotReady at {site}"
        assert wait_for(lambda: inbox.mail_where(lambda m: m["subject"] == escalated), timeout=60), inbox.mail
        assert inbox.mail_where(lambda m: m["subject"] == escalated)[0]["to"] == ["tier2-oncall@example.com"]
        assert wait_for(lambda: inbox.slack_where(
            lambda m: m["channel"] == "#thermocline-escalations"
            and slack_text(m)[0] == escalated), timeout=60)
        # While the pipeline is not ready, a device alert is held back; one without a device
        # (the marker), sent just after it, is not.
        alert(tc, monitoring, "--name", "InhibitedDevice", "--severity", "warning", "--device", "s-7",
              "--site", site)
        alert(tc, monitoring, "--name", "InhibitionMarker", "--severity", "warning", "--site", site)
        assert wait_for(lambda: inbox.slack_where(
            lambda m: slack_text(m)[0].startswith(f"[FIRING:1] InhibitionMarker at {site}")), timeout=60)
        assert not inbox.slack_where(lambda m: "InhibitedDevice" in slack_text(m)[0])
        m = dict(line.split(" ", 1) for line in get(port, "/metrics")[1].splitlines()
                 if line.startswith("thermocline_alert"))
        assert m["thermocline_alerts_firing"] == "1"
        assert int(m['thermocline_alert_posts_total{result="ok"}']) >= 2
    finally:
        stop(proc, tc)
        for name, sev, extra in (("ThermoclineNotReady", "critical", ()),
                                 ("InhibitedDevice", "warning", ("--device", "s-7")),
                                 ("InhibitionMarker", "warning", ())):
            alert(tc, monitoring, "--resolve", "--name", name, "--severity", sev, "--site", site, *extra)


def test_alertmanager_down_for_30_seconds_loses_no_alert(tc, monitoring):
    site = f"it-{uuid.uuid4().hex[:8]}"
    inbox = monitoring.inbox
    dev("down", "alertmanager")
    try:
        sender = subprocess.Popen(
            [tc.bin, "alert", "send", "--name", "OutageAlert", "--severity", "critical",
             "--device", "s-9", "--site", site, "--summary", "raised while Alertmanager was down",
             "--timeout", "180", *tc.settings((f"alerting.alertmanager_urls={monitoring.am}",))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tc.env())
        # The outage itself: 30 s during which the alert can go nowhere.
        time.sleep(30)
        assert sender.poll() is None, sender.communicate()
    finally:
        monitoring.start_alertmanager()
    out, err = sender.communicate(timeout=120)
    assert sender.returncode == 0, err[-3000:]
    assert out == "OutageAlert firing\n"
    assert "not delivered, retrying" in err
    subject = f"[FIRING] OutageAlert at {site} (1 alerts)"
    assert wait_for(lambda: inbox.mail_where(lambda m: m["subject"] == subject), timeout=60), inbox.mail
    assert wait_for(lambda: inbox.slack_where(
        lambda m: slack_text(m)[0] == f"[FIRING:1] OutageAlert at {site}"), timeout=60)
    alert(tc, monitoring, "--resolve", "--name", "OutageAlert", "--severity", "critical",
          "--device", "s-9", "--site", site)


def test_every_runbook_link_has_its_section():
    """Every runbook_url of the rules, and of the alert `run` pushes, names a heading of
    docs/operations.md (GitHub's anchors: lower case, spaces to dashes, punctuation dropped)."""
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", read(os.path.join(ROOT, "docs", "operations.md")), re.M)}
    rules = read(RULES)
    links = set(re.findall(r'runbook_url: "docs/operations\.md#([^"]+)"', rules))
    assert len(links) == len(set(re.findall(r"^\s+- alert: (\S+)", rules, re.M)))
    links |= set(re.findall(r'"docs/operations\.md#([^"]+)"', read(os.path.join(ROOT, "src", "process", "observe.c"))))
    assert links and not links - anchors, sorted(links - anchors)


def test_every_alertmanager_of_an_ha_pair_gets_the_alert(tc, monitoring):
    """alerting.alertmanager_urls names an HA pair: the one that answers has the alert, the one
    that does not is reported (exit 1) without holding the other up."""
    site = f"it-{uuid.uuid4().hex[:8]}"
    p = tc.cmd("alert", "send", "--name", "HaPair", "--severity", "warning", "--site", site,
               "--timeout", "3", extra=(f"alerting.alertmanager_urls={monitoring.am}, http://127.0.0.1:1",),
               check=False)
    assert p.returncode == 1
    assert "1 of the alerting.alertmanager_urls did not accept the alert within 3 s" in p.stderr
    assert "Alertmanager http://127.0.0.1:1: 1 alerts not delivered, retrying" in p.stderr

    def held():
        url = f"{monitoring.am}/api/v2/alerts?" + urllib.parse.urlencode({"filter": f'site="{site}"'})
        with urllib.request.urlopen(url, timeout=30) as r:
            return [a for a in json.load(r) if a["labels"]["alertname"] == "HaPair"]
    alerts = wait_for(held, timeout=30)
    assert alerts and alerts[0]["labels"]["severity"] == "warning" and alerts[0]["status"]["state"] == "active"
    alert(tc, monitoring, "--resolve", "--name", "HaPair", "--severity", "warning", "--site", site)
    assert wait_for(lambda: not held(), timeout=30)


def quality_alerting(tc, monitoring, tmp_path, site, resend_s):
    """A one-partition topic and schema, and the settings of a run whose quality sink (with
    test_quality_sink's rules) pushes its findings to the test's Alertmanager for site."""
    from test_quality_sink import RULES, quality_settings

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    tc.partitions = 1
    tc.migrate()
    tc.simulate("--count", "0")
    return quality_settings(f"quality.rules_file={rules}",
                            f"alerting.alertmanager_urls={monitoring.am}",
                            f"alerting.site={site}", f"alerting.resend_s={resend_s}")


def test_quality_findings_reach_slack_and_email_and_resolve(tc, monitoring, tmp_path):
    """The quality sink pushes what it finds once committed: a stuck humidity sensor and a silent
    device (detectors: warnings, Slack only) and a rule violation (critical: Slack and email), each
    resolved when the readings clear it. The readings are test_quality_sink's -- s-1 stuck for
    readings 100..159, r-1 too hot for 40..159 -- and q-1's, every 10 s but silent from reading 60
    to 130. Silence is checked as event time moves on, so the quiet stretch comes in a later poll
    than q-1's last reading before it."""
    from test_quality_sink import phase, produce, reading, wait_quality_caught_up

    def with_quiet(lo, hi):
        return phase(lo, hi) + [("q-1", reading("q-1", i, 20.0 + (i % 4) * 0.1))
                                for i in range(lo, hi) if not 60 <= i < 130]
    site = f"it-{uuid.uuid4().hex[:8]}"
    inbox = monitoring.inbox
    settings = quality_alerting(tc, monitoring, tmp_path, site, resend_s=5)
    produce(tc, with_quiet(0, 60))
    proc = tc.spawn("run", extra=settings)
    try:
        assert wait_quality_caught_up(tc)
        produce(tc, with_quiet(60, 130))
        silent = lambda m: (slack_text(m)[0].endswith(f"] ThermoclineQualityAnomaly at {site}")
                            and "device `q-1`" in slack_text(m)[1]
                            and "silence of the device" in slack_text(m)[1])
        assert wait_for(lambda: inbox.slack_where(silent), timeout=180), inbox.slack
        anomaly = lambda m: (slack_text(m)[0].startswith("[FIRING:")
                             and slack_text(m)[0].endswith(f"] ThermoclineQualityAnomaly at {site}")
                             and "device `s-1`" in slack_text(m)[1]
                             and "stuck on humidity" in slack_text(m)[1])
        assert wait_for(lambda: inbox.slack_where(anomaly), timeout=180), inbox.slack
        rule_mail = f"[FIRING] ThermoclineQualityRule at {site} (1 alerts)"
        assert wait_for(lambda: inbox.mail_where(lambda m: m["subject"] == rule_mail),
                        timeout=180), inbox.mail
        body = inbox.mail_where(lambda m: m["subject"] == rule_mail)[0]["body"]
        assert "critical device r-1: rule too-hot: range on temperature" in body, body
        assert "Runbook: docs/operations.md#alert-thermoclinequalityrule" in body, body
        assert wait_for(lambda: inbox.slack_where(
            lambda m: slack_text(m)[0] == f"[FIRING:1] ThermoclineQualityRule at {site}"), timeout=60)
        # A detector's finding is a warning: never by email.
        assert not inbox.mail_where(lambda m: "ThermoclineQualityAnomaly" in m["subject"])

        # Readings 130..199 clear both at 160: resolved in Slack and by email.
        produce(tc, with_quiet(130, 200))
        resolved = f"[RESOLVED] ThermoclineQualityRule at {site} (1 alerts)"
        assert wait_for(lambda: inbox.mail_where(lambda m: m["subject"] == resolved),
                        timeout=180), inbox.mail
        assert wait_for(lambda: inbox.slack_where(
            lambda m: slack_text(m)[0] == f"[RESOLVED] ThermoclineQualityRule at {site}"),
            timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    tc.assert_clean(err)
    # What was alerted is what the anomalies table holds.
    assert tc.sql("SELECT count(*) FROM anomalies WHERE rule = 'too-hot' AND end_time IS NOT NULL"
                  " AND start_time > now() - interval '1 day'")[0][0] >= 1
    assert tc.sql("SELECT count(*) FROM anomalies WHERE device_id = 'q-1' AND kind = 'silence'"
                  " AND end_time IS NOT NULL")[0][0] == 1


def am_alerts(monitoring, site):
    """The alerts Alertmanager holds active for site, by alertname and device."""
    url = f"{monitoring.am}/api/v2/alerts?" + urllib.parse.urlencode({"filter": f'site="{site}"'})
    with urllib.request.urlopen(url, timeout=30) as r:
        return {(a["labels"]["alertname"], a["labels"].get("device_id")): a for a in json.load(r)
                if a["status"]["state"] == "active"}


def am_held(monitoring, site):
    """Every alert Alertmanager holds for site, whatever its state: names, states, times."""
    url = f"{monitoring.am}/api/v2/alerts?" + urllib.parse.urlencode({"filter": f'site="{site}"'})
    with urllib.request.urlopen(url, timeout=30) as r:
        return [(a["labels"]["alertname"], a["labels"].get("device_id"), a["status"],
                 a["startsAt"], a["endsAt"], a["updatedAt"]) for a in json.load(r)]


def am_time(stamp):
    """Alertmanager's RFC 3339 time (nanoseconds, Z) as seconds since the epoch."""
    day, frac = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", stamp).groups()
    return calendar.timegm(time.strptime(day, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{frac or 0}")


def test_open_findings_are_sent_again_after_a_kill_9(tc, monitoring, tmp_path):
    """A restart does not leave the quality findings' alerts to expire: after a kill -9, the new
    process sends the findings still open in PostgreSQL again (r-1's rule, held active at
    Alertmanager well past the endsAt the killed process gave it) and resolves the one closed while
    it was down (s-1's stuck sensor, closed by hand: gone from Alertmanager before that endsAt);
    the rule's alert resolves, with its Slack message, once readings clear it."""
    from test_quality_sink import phase, produce, wait_quality_caught_up

    site = f"it-{uuid.uuid4().hex[:8]}"
    resend_s = 15  # endsAt = the last send + 60 s: a restart (a 10 s session to expire) fits
    settings = quality_alerting(tc, monitoring, tmp_path, site, resend_s)
    rule, stuck = ("ThermoclineQualityRule", "r-1"), ("ThermoclineQualityAnomaly", "s-1")
    produce(tc, phase(0, 130))  # r-1 too hot from reading 40, s-1 stuck from 100: both open
    proc = tc.spawn("run", extra=settings)
    try:
        assert wait_for(lambda: {rule, stuck} <= set(am_alerts(monitoring, site)), timeout=180)
        assert wait_quality_caught_up(tc)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=60)
    tc.assert_clean(err)
    killed = time.time()
    held = am_alerts(monitoring, site)
    ends = {k: am_time(held[k]["endsAt"]) for k in (rule, stuck)}
    assert all(killed < e <= killed + 4 * resend_s + 5 for e in ends.values()), (killed, ends)
    tc.sql("UPDATE anomalies SET end_time = now(), updated_at = now()"
           " WHERE device_id = 's-1' AND kind = 'stuck' AND end_time IS NULL")

    proc = tc.spawn("run", extra=settings)
    err = None
    try:
        # s-1's alert is resolved by the new process, not left to expire at its endsAt.
        assert wait_for(lambda: stuck not in am_alerts(monitoring, site), timeout=ends[stuck] - time.time())
        assert time.time() < ends[stuck]
        # r-1's stays active past the endsAt the killed process gave it.
        def past_ends():
            alerts = am_alerts(monitoring, site)
            assert rule in alerts, f"{rule} expired at Alertmanager after the restart"
            return time.time() > ends[rule] + 5
        try:
            assert wait_for(past_ends, timeout=4 * resend_s + 60)
        except AssertionError as e:
            # What Alertmanager holds (suppressed ones too) and what the process did: the
            # failure is a matter of timing, which only these show.
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            raise AssertionError(f"{e} (killed at {killed:.1f}, its endsAt {ends}, now {time.time():.1f});"
                                 f" held: {am_held(monitoring, site)}; log: {err[-6000:]}") from None
        assert am_time(am_alerts(monitoring, site)[rule]["endsAt"]) > ends[rule]

        # Readings 130..199 clear it at 160: resolved, with Slack's resolved message.
        produce(tc, phase(130, 200))
        assert wait_for(lambda: rule not in am_alerts(monitoring, site), timeout=180)
        assert wait_for(lambda: monitoring.inbox.slack_where(
            lambda m: slack_text(m)[0] == f"[RESOLVED] ThermoclineQualityRule at {site}"), timeout=60)
    finally:
        if err is None:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
    tc.assert_clean(err)
    assert "findings of 1 partitions sent to Alertmanager again" in err, err[-3000:]
