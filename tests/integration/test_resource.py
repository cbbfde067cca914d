"""test_resource.py — `--resource-attr` on both upstream protocols, with the real agent and the real sink.

logagent.v1: every BatchWriteLogsRequest carries the attributes once (field 4, `resource`), which the sink prints on
each entry's line; values written `${env:NAME}` / `${NAME}` come from the agent's environment (the Kubernetes
Downward API's pod, namespace and node), a variable that is not set leaves its pair out with a warning naming it,
and the records still all arrive exactly once. OTLP: the same expanded attributes are Resource attributes. Batches
spooled to disk and replayed after a restart carry them too (the trailer is written at send time). Bad specs are
refused at start with the reason; unary mode says it cannot carry them."""
import os
import subprocess

from harness import BIN, Agent, Sink, TempDir, dead_target, run, scaled, send_records, wait_for

ENV = {"POD_NAME": "checkout-7f9c6d-x2x4q", "POD_NAMESPACE": "payments", "NODE_NAME": "node-a"}
SPEC = ("k8s.pod.name=${env:POD_NAME},k8s.namespace.name=${env:POD_NAMESPACE},k8s.node.name=${NODE_NAME},"
        "deployment.environment=prod,team=${env:POD_NAMESPACE}-core")
WANT = {"k8s.pod.name": "checkout-7f9c6d-x2x4q", "k8s.namespace.name": "payments", "k8s.node.name": "node-a",
        "deployment.environment": "prod", "team": "payments-core"}


def records(n, tag):
    return [{"message": "%s %d" % (tag, i), "service_name": "checkout", "level": "info", "order": i}
            for i in range(n)]


def check_once(sink, n, tag):
    summary = sink.stop()
    assert summary["entries"] == n and summary["unique_log_ids"] == n and summary["duplicates"] == 0, summary
    entries = sink.entries()
    assert sorted(e["message"] for e in entries) == sorted("%s %d" % (tag, i) for i in range(n))
    return entries


def test_native_upstream_carries_the_expanded_attributes():
    tmp = TempDir("res-native")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--resource-attr", SPEC, "--flush-interval-ms", "20", "--batch-max-records", "100",
              env=ENV).start()
    send_records(a.socket, records(1000, "native"))
    sink.wait_count(1000)
    st = a.wait_flushed(1000)
    assert st["batches"]["sent"] >= 10, st["batches"]  # many calls, each carrying the attributes
    assert a.stop() == 0
    for e in check_once(sink, 1000, "native"):
        assert e["resource"] == WANT, e
        assert e["metadata"] == {"order": e["message"].split()[1]}, e  # not mixed into the record's own fields
    assert '"resource attributes" count=5' in a.logtext(), a.logtext()[-2000:]


def test_unset_variable_leaves_its_pair_out():
    tmp = TempDir("res-unset")
    sink = Sink(tmp).start()
    env = {"POD_NAME": "p1"}  # POD_NAMESPACE and NODE_NAME are not set
    a = Agent(tmp, sink.target, "--resource-attr", SPEC, "--flush-interval-ms", "20", env=env).start()
    send_records(a.socket, records(50, "unset"))
    sink.wait_count(50)
    a.wait_flushed(50)
    assert a.stop() == 0
    for e in check_once(sink, 50, "unset"):
        assert e["resource"] == {"k8s.pod.name": "p1", "deployment.environment": "prod"}, e
    log = a.logtext()
    assert "environment variables not set, their attributes left out" in log, log[-2000:]
    assert "variables=POD_NAMESPACE,NODE_NAME\n" in log, log[-2000:]


def test_otlp_upstream_gets_them_as_resource_attributes():
    tmp = TempDir("res-otlp")
    sink = Sink(tmp, "--protocol", "otlp").start()
    a = Agent(tmp, sink.target, "--upstream-protocol", "otlp", "--resource-attr", SPEC, "--flush-interval-ms", "20",
              env=ENV).start()
    send_records(a.socket, records(200, "otlp"))
    sink.wait_count(200)
    a.wait_flushed(200)
    assert a.stop() == 0
    for e in check_once(sink, 200, "otlp"):
        res = e["otlp"]["resource"]
        assert {k: res[k] for k in WANT} == WANT and res["service.name"] == "checkout", res
        assert "resource" not in e, e  # the logagent.v1 field is not how OTLP carries them


def test_spooled_batches_carry_them_after_a_restart():
    tmp = TempDir("res-spool")
    target, port = dead_target(tmp)
    spool = tmp.file("spool")
    args = ("--resource-attr", SPEC, "--buffer", "disk", "--spool-dir", spool, "--flush-interval-ms", "20")
    a = Agent(tmp, target, *args, "--drain-timeout-ms", "300", env=ENV).start()
    send_records(a.socket, records(300, "spooled"))
    wait_for(lambda: a.stats()["records"]["spooled"] >= 300, scaled(30), "300 records spooled")
    assert a.stop() == 0
    sink = Sink(tmp, port=port).start()
    b = Agent(tmp, sink.target, *args, env=dict(ENV, POD_NAME="after-restart"), name="b").start()
    sink.wait_count(300)
    b.wait_flushed(300)
    assert b.stop() == 0
    for e in check_once(sink, 300, "spooled"):
        assert e["resource"] == dict(WANT, **{"k8s.pod.name": "after-restart"}), e  # the running agent's


def test_bad_specs_and_unary():
    d = os.path.join(BIN, "logagentd")
    env = dict(os.environ, LOGAGENT_CONFIG="")
    for bad, why in [("a=${", "without its '}'"), ("a=${env:}", "expected ${env:NAME}"),
                     ("a=${POD NAME}", "expected ${env:NAME}"), ("=v", "KEY=VALUE"), ("novalue", "KEY=VALUE")]:
        p = subprocess.run([d, "--resource-attr", bad, "--check-config"], capture_output=True, text=True,
                           timeout=scaled(30), env=env)
        assert p.returncode == 2 and "resource-attr" in p.stderr and why in p.stderr, (bad, p.returncode, p.stderr)
    tmp = TempDir("res-unary")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--resource-attr", "team=core", "--upstream-rpc", "unary").start()
    send_records(a.socket, records(5, "unary"))
    sink.wait_count(5)
    assert a.stop() == 0
    check_once(sink, 5, "unary")
    assert "resource-attr is not sent with upstream-rpc unary" in a.logtext(), a.logtext()[-2000:]


if __name__ == "__main__":
    run([test_native_upstream_carries_the_expanded_attributes, test_unset_variable_leaves_its_pair_out,
         test_otlp_upstream_gets_them_as_resource_attributes, test_spooled_batches_carry_them_after_a_restart,
         test_bad_specs_and_unary])
