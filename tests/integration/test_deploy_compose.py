"""The multi-replica setup in deploy/compose/, checked as far as this machine allows:
no Docker daemon runs here and no image can be pulled, so nothing is started with
Docker. Instead: compose.yaml and every file it references are read and checked
against each other (services, mounts, ports, names, the octoroute config), the
Prometheus config passes promtool, the Grafana dashboard is well formed, the
load balancer's nginx.conf runs in a real nginx in front of two gateways, and a
real Prometheus loaded with the stack's own scrape config (targets pointed at a
real octoroute gateway on loopback, running the stack's own octoroute.toml in
front of fixture upstreams) answers every query of the Grafana dashboard with
data, each metric name of which octoroute's /metrics exposes."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.test_deploy_proxy import Proxy
from tests.integration.test_prometheus import PROMETHEUS, PROMTOOL, Prometheus, fetch, poll, try_fetch
from tests.scripted import scripted  # noqa: F401  (fixture)
from tests.support import endpoint, fleet_config, free_port

from octoroute.config import parse_config
from octoroute.config.models import Config
from octoroute.demo.simulated import Mode

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "compose"
GRAFANA_VARS = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "15s"}
KEYS = {"OCTOROUTE_KEY_TEAM_A": "test-key-team-a", "OCTOROUTE_KEY_TEAM_B": "test-key-team-b"}
TOKEN = "test-metrics-token"
HI = [{"role": "user", "content": "hi there"}]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def octoroute_toml() -> dict[str, Any]:
    return tomllib.loads((DEPLOY / "octoroute.toml").read_text())


def replicas(services: dict[str, Any]) -> dict[str, Any]:
    """The services that run `octoroute serve` from the project's image build."""
    return {name: s for name, s in services.items() if "build" in s and s.get("command", [None])[0] == "serve"}


def host_port(url: str) -> tuple[str, int]:
    match = re.match(r"^[a-z]+://([^/:]+):(\d+)", url)
    assert match, url
    return match[1], int(match[2])


def without_state(data: dict[str, Any]) -> dict[str, Any]:
    """The config without `[state]` while this build's schema has no such table: the state
    backend (issue 14 items 1-4) defines it; everything else must validate as it is."""
    data = copy.deepcopy(data)
    if "state" not in Config.model_fields:
        data.pop("state")
    return data


def mount(service: dict[str, Any], target: str) -> Path:
    """The host file bind-mounted at `target` (a path relative to deploy/compose/)."""
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return (DEPLOY / source).resolve()
    raise AssertionError(f"nothing is mounted at {target}: {service.get('volumes')}")


def dashboard() -> dict[str, Any]:
    return dict(json.loads((DEPLOY / "grafana" / "dashboards" / "octoroute.json").read_text()))


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query on the dashboard, Grafana's variables filled in."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append((panel["title"], expr))
    return out


# -- the files, read and cross-checked -----------------------------------------------------


def test_compose_services_mounts_ports_and_names_agree():
    spec = compose()
    services = spec["services"]
    serving = replicas(services)
    assert 2 <= len(serving) <= 3, sorted(services)
    assert {"redis", "lb", "prometheus", "grafana"} <= set(services)
    for name, service in serving.items():
        assert (DEPLOY / service["build"]["context"]).resolve() == ROOT, name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
        config_path = service["command"][service["command"].index("--config") + 1]
        assert mount(service, config_path) == DEPLOY / "octoroute.toml"
        assert "ports" not in service, f"{name}: only the load balancer publishes a port"
    # every bind mount exists, every named volume and config is declared, every dependency is a service
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in spec["volumes"], f"{name}: volume {source} is not declared"
        for config in service.get("configs", []):
            assert config["source"] in spec["configs"], name
        assert set(service.get("depends_on", [])) <= set(services), name
    # the image runs `octoroute` with the command's arguments, and has `python` for the
    # demo upstream's entrypoint and the health check
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["octoroute"]' in dockerfile
    assert 'CMD ["python", "-c"' in dockerfile  # its own HEALTHCHECK runs python too
    assert services["demo-upstream"]["image"] == next(iter(serving.values()))["image"]
    assert services["demo-upstream"]["entrypoint"][:3] == ["python", "-m", "octoroute.demo.simulated"]
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert all(p.startswith("127.0.0.1:") for p in published), published
    host_ports = [p.split(":")[1] for p in published]
    assert len(host_ports) == len(set(host_ports)), published


def test_the_octoroute_config_fits_the_stack():
    spec = compose()
    services = spec["services"]
    data = octoroute_toml()
    port = data["server"]["port"]
    # every endpoint is a service of the stack, on the port it listens on
    upstream = services["demo-upstream"]
    for group in data["models"].values():
        for ep in group:
            host, ep_port = host_port(ep["base_url"])
            assert host == "demo-upstream"
            assert ep_port == int(upstream["command"][upstream["command"].index("--port") + 1])
    # shared state in the stack's Redis
    assert data["state"]["backend"] == "redis"
    assert host_port(data["state"]["url"]) == ("redis", 6379)
    # each replica gets every secret the config names
    wanted = {k["key_env"] for k in data["auth"]["keys"]} | {data["observability"]["metrics_token_env"]}
    for name, service in replicas(services).items():
        assert wanted <= set(service["environment"]), name
    # the metrics token Prometheus sends is the one the replicas read
    token_var = "OCTOROUTE_METRICS_TOKEN"
    assert spec["configs"]["metrics-token"]["content"] == "${OCTOROUTE_METRICS_TOKEN:-demo-metrics-token}"
    for service in replicas(services).values():
        assert service["environment"][token_var] == "${OCTOROUTE_METRICS_TOKEN:-demo-metrics-token}"
    config = parse_config(without_state(data), {**KEYS, token_var: TOKEN})
    assert config.server.port == port
    assert config.observability.routing_duration_unit == "seconds"  # the name the dashboard queries


def test_the_load_balancer_sends_to_every_replica_and_streams_unbuffered():
    services = compose()["services"]
    conf = mount(services["lb"], "/etc/nginx/nginx.conf").read_text()
    port = octoroute_toml()["server"]["port"]
    upstream = re.search(r"upstream octoroute \{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", upstream[1], re.M))
    assert servers == {f"{name}:{port}" for name in replicas(services)}
    listen = re.search(r"listen\s+(\d+);", conf)
    assert listen is not None
    assert [p.split(":")[-1] for p in services["lb"]["ports"]] == [listen[1]]
    assert "proxy_buffering off;" in conf  # server-sent events pass through as they come
    assert "proxy_pass http://octoroute;" in conf


def test_prometheus_scrapes_each_replica_with_the_metrics_token():
    services = compose()["services"]
    prom = services["prometheus"]
    config_path = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    config = yaml.safe_load(mount(prom, config_path).read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "octoroute")
    port = octoroute_toml()["server"]["port"]
    assert job["static_configs"][0]["targets"] == [f"{name}:{port}" for name in replicas(services)]
    token_target = next(c["target"] for c in prom["configs"] if c["source"] == "metrics-token")
    assert job["authorization"]["credentials_file"] == token_target


def test_prometheus_config_passes_promtool(tmp_path):
    # promtool also checks that the token file exists: point it at one here
    token = tmp_path / "metrics-token"
    token.write_text("t")
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert "/etc/prometheus/metrics-token" in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/metrics-token", str(token)))
    check = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_grafana_provisioning_and_dashboard_are_well_formed():
    services = compose()["services"]
    grafana = services["grafana"]
    provisioning = mount(grafana, "/etc/grafana/provisioning")
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert host_port(datasource["url"]) == ("prometheus", 9090)
    assert any(p.endswith(":9090") for p in services["prometheus"]["ports"])
    provider = yaml.safe_load((provisioning / "dashboards" / "octoroute.yaml").read_text())["providers"][0]
    dashboards = mount(grafana, provider["options"]["path"])
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).relative_to(provider["options"]["path"])).is_file()

    board = dashboard()
    assert board["uid"] == "octoroute"
    assert board["title"]
    assert isinstance(board["schemaVersion"], int)
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert min(pos["w"], pos["h"]) >= 1, panel["title"]
        assert 0 <= pos["x"] <= pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"], panel["title"]
        assert len(set(refs)) == len(refs), panel["title"]
        assert all(t["datasource"]["uid"] == datasource["uid"] and t["expr"] for t in panel["targets"])
    titles = " ".join(p["title"].lower() for p in panels)
    for wanted in ("requests per second", "latency", "errors by status", "tier", "health", "client", "cost"):
        assert wanted in titles, wanted


# -- the dashboard's queries against a real Prometheus scraping a real gateway -------------


@pytest.fixture
def stack(upstreams, scripted, gateway):  # noqa: F811
    """The stack's octoroute.toml in front of fixture upstreams: fast always fails (so its
    requests fall back), balanced answers, deep reports no usage; two keys send traffic."""
    broken, good = upstreams("broken"), upstreams("good")
    broken.behaviour.mode = Mode.ERROR_500
    quiet = scripted(lambda body: [{"content": "fine"}], usage=None)
    data = without_state(octoroute_toml())
    for group, sim_url in (("fast", broken.base_url), ("balanced", good.base_url), ("deep", quiet.base_url)):
        data["models"][group][0]["base_url"] = sim_url
    data["server"]["port"] = 0
    data["health"] = {"active": False}
    gw = gateway(data, env={**KEYS, "OCTOROUTE_METRICS_TOKEN": TOKEN})
    team_a = openai.OpenAI(base_url=gw.base_url, api_key=KEYS["OCTOROUTE_KEY_TEAM_A"], max_retries=0)
    team_b = anthropic.Anthropic(base_url=gw.url, api_key=KEYS["OCTOROUTE_KEY_TEAM_B"], max_retries=0)
    with team_a, team_b:
        with pytest.raises(openai.InternalServerError):  # an endpoint id: no fallback, a 502
            team_a.chat.completions.create(model="fast/demo-fast", messages=HI)  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):
            team_a.chat.completions.create(model="no-such-model", messages=HI)  # type: ignore[arg-type]
        for model in ("fast", "balanced", "deep", "auto"):
            team_a.chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
            team_b.messages.create(model=model, max_tokens=32, messages=HI)  # type: ignore[arg-type]
        for _ in team_a.chat.completions.create(model="balanced", messages=HI, stream=True):  # type: ignore[arg-type]
            pass
    return gw


@pytest.fixture
def stack_prometheus(stack, tmp_path) -> Iterator[Prometheus]:
    """/usr/bin/prometheus with deploy/compose/prometheus/prometheus.yml, changed only where
    this machine differs from the stack: targets, the token file's path, a 1 s interval."""
    port = free_port()
    token = tmp_path / "metrics-token"
    token.write_text(TOKEN)
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s")
    for job in config["scrape_configs"]:
        target = f"127.0.0.1:{stack.port}" if job["job_name"] == "octoroute" else f"127.0.0.1:{port}"
        job["static_configs"] = [{"targets": [target]}]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        poll(lambda: True if (r := try_fetch(port, "/-/ready")) and r.status == 200 else None, "prometheus", 60)
        yield Prometheus(proc, port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def exposed_names(gw: Any) -> set[str]:
    reply = fetch(gw.port, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 200
    return {s.name for f in text_string_to_metric_families(reply.body.decode()) for s in f.samples}


def test_every_dashboard_query_names_exposed_metrics_and_returns_data(stack, stack_prometheus):
    prom = stack_prometheus
    names = exposed_names(stack)
    for title, expr in queries():
        for metric in set(re.findall(r"\b(octoroute_[a-z0-9_]+)", expr)):
            assert metric in names, f"{title}: {metric} is not in octoroute's /metrics"
    target = poll(lambda: prom.target("octoroute"), "the first scrape")
    assert (target["health"], target["lastError"]) == ("up", ""), target
    # rate() needs two scrapes of every series; poll until each query has a result
    for title, expr in queries():
        result = poll(lambda expr=expr: prom.query(expr) or None, f"data for '{title}': {expr}", timeout=30)
        assert result, title
    cost = prom.query('sum by (client) (octoroute_usage_cost_total{currency="USD"})')
    assert {dict(labels)["client"] for labels in cost} == {"team-a", "team-b"}


# -- the load balancer's config in a real nginx, in front of two real gateways ----------


def test_nginx_spreads_requests_over_the_replicas_streams_and_hides_metrics(upstreams, gateway, tmp_path):
    """deploy/compose/nginx/nginx.conf in Debian's nginx, changed only where this machine
    differs from the stack: the replicas are two gateways on loopback, it listens on a
    loopback port, and its pid and temporary files live under the test's directory."""
    sim = upstreams("fast")
    replicas_up = [gateway(fleet_config({"fast": [endpoint(sim, "m", id="fast-1")]})) for _ in range(2)]
    text = (DEPLOY / "nginx" / "nginx.conf").read_text()
    port = free_port()
    servers = re.findall(r"^\s*server\s+(octoroute-\d+:3000)", text, re.M)
    assert len(servers) == 3
    for i, name in enumerate(servers):  # the third replica is the first one again
        text = text.replace(f"server {name}", f"server 127.0.0.1:{replicas_up[i % 2].port}")
    assert text.count("listen 80;") == 1
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    temp = "".join(
        f"    {kind}_temp_path {tmp_path / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp, 1)
    (tmp_path / "nginx.conf").write_text(text)
    root = tmp_path / "proxy"
    root.mkdir()
    user = "user root; " if os.geteuid() == 0 else ""  # workers must reach the temp dirs under tmp_path
    argv = ["/usr/sbin/nginx", "-p", str(root), "-e", str(root / "error.log"), "-c", str(tmp_path / "nginx.conf")]
    argv += ["-g", f"daemon off; {user}pid {root / 'nginx.pid'};"]
    checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    proxy = Proxy(root, port, argv)
    try:
        base = f"http://127.0.0.1:{port}"
        with openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0) as client:
            for _ in range(6):
                assert client.chat.completions.create(model="fast", messages=HI).choices[0].message.content  # type: ignore[arg-type]
            text_streamed = "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(model="fast", messages=HI, stream=True)  # type: ignore[arg-type]
                if c.choices
            )
        assert text_streamed
        served = [fetch(gw.port, "GET", "/metrics.json") for gw in replicas_up]
        counts = [json.loads(r.body)["requests"]["total"] for r in served]
        assert sum(counts) == 7
        assert min(counts) >= 2, counts  # both replicas took a share
        assert fetch(port, "GET", "/metrics").status == 404  # each replica's own metrics stay inside
        assert fetch(port, "GET", "/metrics.json").status == 404
        assert fetch(port, "GET", "/health").status == 200
    finally:
        proxy.stop()
