"""test_k8s.py — packaging/k8s/sidecar.yaml, read as Kubernetes would (python3-yaml).

The app and the agent mount the same emptyDir at the folder LOGAGENT_SOCKET points into; the agent listens
where the app writes; the probes run logagentctl against the stats socket the agent serves; the upstream
comes from an env var; both run as non-root with a read-only root filesystem, with resources; the grace
period outlasts the agent's preStop pause plus its drain."""
import os
import re

import yaml

from pkgtest import BIN, PACKAGING, help_options, run

SIDECAR = os.path.join(PACKAGING, "k8s", "sidecar.yaml")


def docs():
    with open(SIDECAR, encoding="utf-8") as f:
        return list(yaml.safe_load_all(f))


def pod_spec():
    deps = [d for d in docs() if d and d.get("kind") in ("Deployment", "Pod")]
    assert len(deps) == 1, "expected one Deployment or Pod"
    d = deps[0]
    return d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]


def containers():
    spec = pod_spec()
    cs = {c["name"]: c for c in spec.get("containers", []) + spec.get("initContainers", [])}
    agent = [c for c in cs.values() if "logagentd" in str(c.get("command", "")) or c["name"] == "logagent"]
    assert len(agent) == 1, "one agent container (named logagent)"
    apps = [c for c in cs.values() if c is not agent[0]]
    assert apps, "an application container"
    return agent[0], apps


def env(c):
    return {e["name"]: e for e in c.get("env", [])}


def env_value(c, name, default=None):
    e = env(c).get(name)
    return e.get("value", default) if e else default


def mount_of(c, path):
    """The volume name mounted at the folder holding path in container c."""
    folder = os.path.dirname(path)
    for m in c.get("volumeMounts", []):
        if m["mountPath"].rstrip("/") == folder:
            return m["name"]
    raise AssertionError("%s: nothing mounted at %s" % (c["name"], folder))


def duration_ms(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(text))
    assert m, "not a duration: %r" % text
    return int(m.group(1)) * {None: 1, "ms": 1, "s": 1000, "m": 60000, "h": 3600000}[m.group(2)]


def test_parses_with_the_expected_kinds():
    kinds = [d["kind"] for d in docs() if d]
    assert "Deployment" in kinds or "Pod" in kinds, kinds
    for d in docs():
        assert d.get("apiVersion") and d.get("metadata", {}).get("name"), d


def test_socket_volume_shared_where_the_app_writes():
    defaults = help_options(os.path.join(BIN, "logagentd"))
    agent, apps = containers()
    agent_sock = env_value(agent, "LOGAGENT_SOCKET", defaults["socket"])
    vol_agent = mount_of(agent, agent_sock)
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    assert "emptyDir" in volumes[vol_agent], "the socket volume should be an emptyDir"
    for app in apps:
        app_sock = env_value(app, "LOGAGENT_SOCKET")
        assert app_sock, "%s: LOGAGENT_SOCKET not set" % app["name"]
        assert app_sock == agent_sock, "%s writes to %s, the agent listens on %s" % (app["name"], app_sock, agent_sock)
        assert mount_of(app, app_sock) == vol_agent, "%s: the socket folder is another volume" % app["name"]


def test_probes_use_logagentctl_on_the_agents_stats_socket():
    defaults = help_options(os.path.join(BIN, "logagentd"))
    agent, _ = containers()
    stats = env_value(agent, "LOGAGENT_STATS_SOCKET", defaults["stats-socket"])
    mount_of(agent, stats)
    for probe in ("readinessProbe", "livenessProbe"):
        cmd = agent[probe]["exec"]["command"]
        assert cmd[0] in ("logagentctl", "/usr/bin/logagentctl"), "%s: %s" % (probe, cmd)
        assert "--stats-socket" in cmd and cmd[cmd.index("--stats-socket") + 1] == stats, \
            "%s must name the agent's stats socket %s: %s" % (probe, stats, cmd)
    # readiness means "the agent accepts records" (a pod is Ready only when every container is: an outage of the
    # log service must not take the application out of service); liveness must not restart an agent that holds
    # records during an outage either
    assert agent["readinessProbe"]["exec"]["command"][1] == "ready", "readiness is logagentctl ready"
    assert agent["livenessProbe"]["exec"]["command"][1] != "health", "liveness must not follow the upstream"


def test_upstream_from_env():
    agent, _ = containers()
    e = env(agent)
    up = e.get("LOGAGENT_UPSTREAM") or e.get("LOG_SERVICE_GRPC_SERVER")
    assert up, "the agent's upstream should come from LOGAGENT_UPSTREAM (or LOG_SERVICE_GRPC_SERVER)"
    ref = up.get("valueFrom", {}).get("configMapKeyRef")
    if ref:
        cms = {d["metadata"]["name"]: d for d in docs() if d and d["kind"] == "ConfigMap"}
        assert ref["name"] in cms and ref["key"] in cms[ref["name"]]["data"], "ConfigMap %s/%s missing" % (
            ref["name"], ref["key"])


def test_resource_attributes_from_the_downward_api():
    """--resource-attr names the pod, namespace and node through ${env:NAME}; each variable it names is set in the
    agent's container from the Downward API (a name without its variable would be left out at run time), and the
    value passes the agent's own --check-config with those variables set."""
    import subprocess
    agent, _ = containers()
    e = env(agent)
    spec = env_value(agent, "LOGAGENT_RESOURCE_ATTR")
    assert spec, "LOGAGENT_RESOURCE_ATTR not set on the agent"
    names = re.findall(r"\$\{(?:env:)?([A-Za-z0-9_]+)\}", spec)
    want = {"k8s.pod.name": "metadata.name", "k8s.namespace.name": "metadata.namespace",
            "k8s.node.name": "spec.nodeName"}
    pairs = dict(p.split("=", 1) for p in spec.split(","))
    assert set(want) <= set(pairs), pairs
    for key, path in want.items():
        var = re.fullmatch(r"\$\{(?:env:)?([A-Za-z0-9_]+)\}", pairs[key]).group(1)
        assert e[var]["valueFrom"]["fieldRef"]["fieldPath"] == path, (key, e[var])
    for n in names:
        assert "valueFrom" in e.get(n, {}) or "value" in e.get(n, {}), "%s is named but not set" % n
    env_vars = dict(os.environ, LOGAGENT_CONFIG="", LOGAGENT_RESOURCE_ATTR=spec)
    env_vars.update({n: "x" for n in names})
    p = subprocess.run([os.path.join(BIN, "logagentd"), "--check-config"], capture_output=True, text=True,
                       env=env_vars, timeout=60)
    assert p.returncode == 0 and "resource-attr = " + spec in p.stdout, (p.returncode, p.stdout[-2000:], p.stderr)


def test_non_root_read_only_with_resources():
    spec = pod_spec()
    agent, apps = containers()
    assert spec.get("securityContext", {}).get("runAsNonRoot") is True
    for c in [agent] + apps:
        sc = c.get("securityContext", {})
        assert sc.get("readOnlyRootFilesystem") is True, c["name"]
        assert sc.get("allowPrivilegeEscalation") is False, c["name"]
        uid = sc.get("runAsUser", spec["securityContext"].get("runAsUser"))
        assert uid not in (None, 0), "%s: runAsUser must be set and not 0" % c["name"]
        assert c.get("resources", {}).get("limits", {}).get("memory"), "%s: memory limit" % c["name"]
    # the app reaches the agent's 0660 socket through the pod's fsGroup, which must be the agent's group
    assert spec["securityContext"].get("fsGroup") == agent["securityContext"].get("runAsGroup")


def test_grace_period_outlasts_the_drain():
    defaults = help_options(os.path.join(BIN, "logagentd"))
    agent, _ = containers()
    drain = duration_ms(env_value(agent, "LOGAGENT_DRAIN_TIMEOUT_MS", defaults["drain-timeout-ms"]))
    pause = 0
    pre = agent.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if pre and os.path.basename(pre[0]) == "sleep":
        pause = int(pre[1]) * 1000
    grace = pod_spec().get("terminationGracePeriodSeconds", 30) * 1000
    assert grace >= pause + drain + 5000, "grace %d ms < preStop %d ms + drain %d ms + 5 s" % (grace, pause, drain)


if __name__ == "__main__":
    run([test_parses_with_the_expected_kinds, test_socket_volume_shared_where_the_app_writes,
         test_probes_use_logagentctl_on_the_agents_stats_socket, test_upstream_from_env,
         test_resource_attributes_from_the_downward_api, test_non_root_read_only_with_resources,
         test_grace_period_outlasts_the_drain])
