"""deploy/: the Kubernetes manifests validate against the Kubernetes schemas (offline) and agree with each
other and with the server's flags; the Dockerfile and the systemd unit say what docs/deploy.md promises;
`nixlookup health` answers as a probe must.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.client import cli
from nixlookup.server.app._config import ServerConfig, parse_args
from nixlookup.server.app._exposure import plan_exposure

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
"""An old version with the native gRPC probes and autoscaling/v2 (GA in 1.27 / 1.23), and a recent one."""

yaml = pytest.importorskip("yaml", reason="PyYAML (a kubernetes-validate dependency) is not installed")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed: pip install -e '.[dev]'"
)


def _documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        documents.extend(doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc)
    return documents


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _documents() if doc["kind"] == kind]


def _one(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in _by_kind(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}"
    return matches[0]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in _documents():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(version: str) -> None:
    """kubernetes-validate (bundled schemas, strict: unknown fields are errors) accepts every document."""
    documents = _documents()
    assert {doc["kind"] for doc in documents} >= {
        "StatefulSet", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"
    }  # fmt: skip
    for doc in documents:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {error.message} at {list(error.path)}")


def test_services_select_the_pods_they_are_for() -> None:
    """Lookup Services reach followers only, admin and the writer's Service the writer only, by port name."""
    templates = dict(_pod_templates())
    writer = templates["nixlookup-writer"]["metadata"]["labels"]
    follower = templates["nixlookup-follower"]["metadata"]["labels"]
    expected = {
        "nixlookup": (follower,),
        "nixlookup-headless": (follower,),
        "nixlookup-writer": (writer,),
        "nixlookup-admin": (writer,),
        "nixlookup-metrics": (writer, follower),
    }
    for name, selected in expected.items():
        service = _one("Service", name)
        selector = service["spec"]["selector"]
        for labels in selected:
            assert _selects(selector, labels), f"Service {name} does not select its pods"
        others = [labels for labels in (writer, follower) if labels not in selected]
        assert not any(_selects(selector, labels) for labels in others), f"Service {name} selects too much"
    assert _one("Service", "nixlookup-headless")["spec"]["clusterIP"] == "None"  # client-side round_robin
    assert _one("StatefulSet", "nixlookup-writer")["spec"]["serviceName"] == "nixlookup-writer"
    for name, template in templates.items():
        ports = {port["name"] for c in template["spec"]["containers"] for port in c.get("ports", [])}
        assert {"grpc", "metrics"} <= ports, name


def test_metrics_listen_on_the_named_port_the_pods_declare_and_annotate_and_one_service_reaches() -> None:
    """Each pod's --metrics-listen port is its containerPort `metrics` and its prometheus.io/port (scheme
    http: the metrics listener is plaintext, whatever TLS gRPC has); the headless nixlookup-metrics
    Service reaches that port on every pod, not-ready followers too; no balanced Service carries it."""
    service = _one("Service", "nixlookup-metrics")
    assert service["spec"]["clusterIP"] == "None"  # Endpoints per pod: each one scraped on its own
    assert service["spec"]["publishNotReadyAddresses"] is True  # a lagging follower reports its lag
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["targetPort"]) == ("metrics", "metrics")
    for name, template in _pod_templates():
        container = template["spec"]["containers"][0]
        config = _config(container)
        assert config.metrics_listen is not None, name
        listen_port = int(config.metrics_listen.rpartition(":")[2])
        declared = {each["name"]: each["containerPort"] for each in container["ports"]}
        assert declared["metrics"] == listen_port == port["port"], name
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(listen_port), name
        assert (annotations["prometheus.io/scheme"], annotations["prometheus.io/path"]) == (
            "http",
            "/metrics",
        )
    for other in _by_kind("Service"):
        if other["metadata"]["name"] != "nixlookup-metrics":
            targets = {each["targetPort"] for each in other["spec"]["ports"]}
            assert "metrics" not in targets, f"{other['metadata']['name']} balances scrapes over pods"


def test_the_writer_is_one_pod_with_a_volume_and_followers_scale_with_a_budget() -> None:
    """One writer with a persistent data volume; followers with an HPA on CPU and a PDB over the same pods."""
    writer = _one("StatefulSet", "nixlookup-writer")
    assert writer["spec"]["replicas"] == 1
    claims = {claim["metadata"]["name"] for claim in writer["spec"]["volumeClaimTemplates"]}
    mounts = {
        m["name"]: m["mountPath"] for m in writer["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert mounts[next(iter(claims))] == "/var/lib/nixlookup"
    hpa = _one("HorizontalPodAutoscaler", "nixlookup-follower")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "nixlookup-follower",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    follower = _one("Deployment", "nixlookup-follower")
    requests = follower["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert "cpu" in requests  # the HPA's utilisation is relative to the request
    pdb = _one("PodDisruptionBudget", "nixlookup-follower")
    assert _selects(
        pdb["spec"]["selector"]["matchLabels"], follower["spec"]["template"]["metadata"]["labels"]
    )


def _config(container: dict[str, Any]) -> ServerConfig:
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    config = parse_args(["serve", *container.get("args", [])], env=env)
    assert isinstance(config, ServerConfig)
    return config


def test_probes_are_native_grpc_health_checks() -> None:
    """Readiness asks about nixlookup.v1.Lookup, liveness about nixlookup.liveness, on the plaintext
    health listener (Kubernetes' gRPC probes cannot speak TLS, which every other listener has)."""
    for name, template in _pod_templates():
        container = template["spec"]["containers"][0]
        config = _config(container)
        assert config.health_listen is not None, name
        port = int(config.health_listen.rpartition(":")[2])
        assert container["readinessProbe"]["grpc"] == {"port": port, "service": "nixlookup.v1.Lookup"}, name
        assert container["livenessProbe"]["grpc"] == {"port": port, "service": "nixlookup.liveness"}, name
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True, name


def _secret_mounts(template: dict[str, Any]) -> dict[str, str]:
    """mountPath -> Secret name of every Secret volume the pod's container mounts."""
    secrets = {
        volume["name"]: volume["secret"]["secretName"]
        for volume in template["spec"].get("volumes", [])
        if "secret" in volume
    }
    mounts = template["spec"]["containers"][0].get("volumeMounts", [])
    return {mount["mountPath"]: secrets[mount["name"]] for mount in mounts if mount["name"] in secrets}


def _from_secret(path: Path | None, mounts: dict[str, str]) -> str | None:
    """The Secret `path` is read from, or None when it is not under a Secret mount."""
    if path is None:
        return None
    return next((secret for mount, secret in mounts.items() if str(path).startswith(mount + "/")), None)


def test_every_pod_passes_the_servers_exposure_rules_with_secret_mounted_credentials() -> None:
    """Listeners beyond loopback have an auth file and TLS (no --insecure), so the server starts; the
    auth file, certificates and the follower's token come from Secrets; followers follow the writer's
    Admin/Replication listener over TLS with a token."""
    writer_admin = None
    for name, template in _pod_templates():
        config = _config(template["spec"]["containers"][0])
        assert not config.insecure, name
        plan_exposure(
            listen=config.listen,
            admin_listen=config.admin_listen,
            authenticated=config.auth_file is not None,
            uses_tokens=True,
            tls=config.tls_cert is not None,
            insecure=False,
        )  # raises ExposureError for an exposure the server would refuse
        mounts = _secret_mounts(template)
        for path in (config.auth_file, config.tls_cert, config.tls_key):
            assert _from_secret(path, mounts) is not None, f"{name}: {path} is not from a Secret"
        if config.follow is not None:
            assert _from_secret(config.follow_token_file, mounts) is not None, name
            assert _from_secret(config.follow_ca, mounts) is not None, name
        else:
            writer_admin = config.admin_listen
    followers = _config(_one("Deployment", "nixlookup-follower")["spec"]["template"]["spec"]["containers"][0])
    assert writer_admin is not None
    assert followers.follow is not None
    assert followers.follow.rpartition(":")[2] == writer_admin.rpartition(":")[2]  # Replication's port


def test_every_container_runs_flags_and_variables_the_server_knows() -> None:
    """Each pod's args and NIXLOOKUP_* env parse as `nixlookup-server serve`; followers follow the writer."""
    writer_service = _one("Service", "nixlookup-writer")["metadata"]["name"]
    for name, template in _pod_templates():
        container = template["spec"]["containers"][0]
        config = _config(container)
        if name == "nixlookup-follower":
            assert config.follow is not None
            assert writer_service in config.follow
            assert config.data_dir is None
        else:
            assert config.follow is None
            assert str(config.data_dir) == "/var/lib/nixlookup"


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def test_the_image_is_slim_non_root_with_the_server_extra_and_our_health_probe() -> None:
    """Slim base, a numeric non-root USER, only the server extra, HEALTHCHECK through `nixlookup health`."""
    text = _dockerfile()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases
    assert all(base.startswith("python:3.11-slim") for base in bases)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert uid != "0"
    assert "pip install --no-cache-dir --prefix=/install '.[server]'" in text
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[[^\]]*\])", text, re.MULTILINE | re.DOTALL)
    assert healthcheck is not None
    assert json.loads(healthcheck.group(1))[:2] == ["nixlookup", "health"]
    assert 'ENTRYPOINT ["nixlookup-server", "serve"]' in text


def test_the_images_environment_is_what_the_server_reads() -> None:
    """Every NIXLOOKUP_* variable the image sets is one of the server's and parses."""
    block = re.search(r"^ENV (.*?)(?:\n(?!\s)|\Z)", _dockerfile(), re.MULTILINE | re.DOTALL)
    assert block is not None
    pairs = dict(item.split("=", 1) for item in shlex.split(block.group(1).replace("\\\n", " ")))
    env = {key: value for key, value in pairs.items() if key.startswith("NIXLOOKUP_")}
    config = parse_args(["serve"], env=env)
    assert isinstance(config, ServerConfig)
    assert str(config.data_dir) == "/var/lib/nixlookup"
    assert config.metrics_listen == "0.0.0.0:9464"
    assert config.auth_file is not None
    assert config.tls_cert is not None
    assert config.health_listen is not None
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[[^\]]*\])", _dockerfile(), re.MULTILINE | re.DOTALL)
    assert healthcheck is not None
    assert f"127.0.0.1:{config.health_listen.rpartition(':')[2]}" in json.loads(healthcheck.group(1))


def test_the_systemd_unit_runs_the_server_with_flags_it_knows() -> None:
    """ExecStart's flags parse; SIGTERM stops gracefully, SIGHUP reloads; it runs as its own user."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "nixlookup.service", encoding="utf-8")
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "nixlookup-server"
    assert isinstance(parse_args(argv[1:], env={}), ServerConfig)
    assert service["KillSignal"] == "SIGTERM"
    assert "-HUP" in service["ExecReload"]
    assert service["User"] == "nixlookup"


def test_nixlookup_health_exits_0_on_a_serving_server_and_1_when_unreachable(
    server_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe the image uses: SERVING -> 0 and prints it; nothing listening -> 1 with the reason."""
    server: ServerProcess = server_factory(["--data-dir", str(tmp_path / "data"), "--synthetic-size", "1000"])
    assert cli.main(["--target", server.target, "health"]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"
    assert cli.main(["health", "--target", server.target, "--service", "nixlookup.liveness"]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"
    assert cli.main(["health", "--target", server.target, "--service", "no.such.Service"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    port = server.port
    server.stop()
    assert cli.main(["health", "--target", f"127.0.0.1:{port}", "--timeout", "0.5", "--quiet"]) == 1
    assert capsys.readouterr() == ("", "")
