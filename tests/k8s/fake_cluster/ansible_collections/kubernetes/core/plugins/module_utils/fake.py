"""A fake Kubernetes API for the kvbench kubernetes target's tests: objects live in a JSON file.

Environment: KVBENCH_FAKE_CLUSTER (state file), KVBENCH_FAKE_SECRETS (comma-separated values the fake logs
print, as LMCache and the GIE config loader do), KVBENCH_FAKE_REPORT (a real GuideLLM report, .json.zst or
.json, copied out as each point's guidellm.json with the Job's own seed). Deployments get Running, ready pods
at once; Jobs complete at once. Every call is logged with its kubeconfig (the test checks module_defaults).
"""

from __future__ import annotations

import fcntl
import json
import os
import re

from ansible.module_utils.basic import AnsibleModule

PARAMS = [
    "state",
    "apply",
    "definition",
    "api_version",
    "kind",
    "namespace",
    "name",
    "delete_options",
    "wait",
    "wait_condition",
    "wait_timeout",
    "label_selectors",
    "field_selectors",
    "delete_all",
    "kubeconfig",
    "context",
    "pod",
    "container",
    "command",
    "previous",
    "since_seconds",
    "remote_path",
    "local_path",
]
NODES = ["gpu0", "gpu1"]


def _load(handle):
    handle.seek(0)
    text = handle.read()
    return json.loads(text) if text.strip() else {"objects": {}, "calls": [], "counter": 0}


def _key(kind, namespace, name):
    return f"{kind}/{namespace or ''}/{name}"


def _labels(obj):
    return (obj.get("metadata") or {}).get("labels") or {}


def _match(obj, selectors):
    labels = _labels(obj)
    for sel in selectors or []:
        for part in re.split(r",(?![^()]*\))", sel):
            m = re.match(r"^\s*([^\s=!]+)\s+in\s+\(([^)]*)\)\s*$", part)
            if m:
                if labels.get(m.group(1)) not in [v.strip() for v in m.group(2).split(",")]:
                    return False
                continue
            key, _, value = part.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def _pod(name, namespace, labels, containers, node, ip, owner):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"fake/owner": owner},
        },
        "spec": {"nodeName": node, "containers": containers},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "ready": True,
                    "restartCount": 0,
                    "image": c.get("image", "img"),
                    "imageID": f"{c.get('image', 'img')}@sha256:{'0' * 64}",
                    "state": {"running": {}},
                }
                for c in containers
            ],
        },
    }


def _create(state, obj):
    meta = obj["metadata"]
    kind, ns, name = obj["kind"], meta.get("namespace", ""), meta["name"]
    key = _key(kind, ns, name)
    owner = key
    obj = json.loads(json.dumps(obj))
    status = {}
    if kind == "Deployment":
        replicas = obj["spec"].get("replicas", 1)
        status = {
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True"}],
        }
        tmpl = obj["spec"]["template"]
        for i in range(replicas):
            state["counter"] += 1
            pod = _pod(
                f"{name}-fake-{i}",
                ns,
                tmpl["metadata"]["labels"],
                tmpl["spec"]["containers"],
                NODES[i % len(NODES)],
                f"10.0.0.{state['counter'] % 250 + 2}",
                owner,
            )
            state["objects"][_key("Pod", ns, pod["metadata"]["name"])] = pod
    elif kind == "DaemonSet":
        tmpl = obj["spec"]["template"]
        status = {"desiredNumberScheduled": len(NODES), "numberReady": len(NODES)}
        for node in NODES:
            pod = _pod(
                f"{name}-{node}",
                ns,
                tmpl["metadata"]["labels"],
                tmpl["spec"]["containers"],
                node,
                "10.0.1.2",
                owner,
            )
            state["objects"][_key("Pod", ns, pod["metadata"]["name"])] = pod
    elif kind == "Job":
        tmpl = obj["spec"]["template"]
        status = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
        pod = _pod(
            f"{name}-pod",
            ns,
            {**tmpl["metadata"]["labels"], "job-name": name},
            tmpl["spec"]["containers"],
            "cpu0",
            "10.0.2.2",
            owner,
        )
        state["objects"][_key("Pod", ns, pod["metadata"]["name"])] = pod
    elif kind == "Pod":
        obj = _pod(name, ns, meta.get("labels") or {}, obj["spec"]["containers"], "cpu0", "10.0.3.2", "")
    elif kind == "Gateway":
        status = {"conditions": [{"type": "Programmed", "status": "True"}]}
    if kind != "Pod":
        obj["status"] = status
    state["objects"][key] = obj
    return obj


def _delete(state, key):
    state["objects"].pop(key, None)
    for other in [
        k
        for k, o in state["objects"].items()
        if o["metadata"].get("annotations", {}).get("fake/owner") == key
    ]:
        state["objects"].pop(other, None)


def _k8s(state, p):
    if p.get("state", "present") == "absent":
        kind, ns = p["kind"], p.get("namespace") or ""
        if p.get("name"):
            _delete(state, _key(kind, ns, p["name"]))
        elif p.get("delete_all"):
            for key, obj in list(state["objects"].items()):
                if (
                    obj["kind"] == kind
                    and obj["metadata"].get("namespace", "") == ns
                    and _match(obj, p.get("label_selectors"))
                ):
                    _delete(state, key)
        return {"changed": True}
    obj = p["definition"]
    if isinstance(obj, str):
        obj = json.loads(obj)
    return {"changed": True, "result": _create(state, obj)}


def _info(state, p):
    kind, ns, name = p.get("kind"), p.get("namespace") or "", p.get("name")
    if kind == "CustomResourceDefinition":
        return {"resources": [{"metadata": {"name": name}}]}
    if kind == "Namespace":
        return {"resources": [{"metadata": {"name": name}}]}
    if kind == "Event":
        return {"resources": [{"kind": "Event", "message": "fake event"}]}
    if kind == "Node":
        return {
            "resources": [
                {
                    "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "FAKE-GPU"}},
                    "status": {
                        "capacity": {"cpu": "64", "memory": "1048576Ki", "nvidia.com/gpu": "2"},
                        "nodeInfo": {"kernelVersion": "6.1"},
                    },
                }
            ]
        }
    found = [
        o
        for o in state["objects"].values()
        if o["kind"] == kind
        and o["metadata"].get("namespace", "") == ns
        and (not name or o["metadata"]["name"] == name)
        and _match(o, p.get("label_selectors"))
    ]
    return {"resources": found}


def _next(state, step=1):
    state["counter"] += step
    return state["counter"]


def _exec(state, p):
    cmd = p["command"]
    out, rc = "", 0
    if "reset_prefix_cache" in cmd:
        out = json.dumps({"verified": True, "queries_delta": 3.0, "hits_delta": 0.0})
    elif "sys.stdout.write" in cmd and "/metrics" in cmd:
        n = _next(state, 10)
        labels = '{engine="0",model_name="fake"}'
        out = "".join(
            f"# TYPE vllm:{m} counter\nvllm:{m}_total{labels} {float(v)}\n"
            for m, v in (
                ("prefix_cache_queries", n),
                ("prefix_cache_hits", n // 2),
                ("num_preemptions", 0),
                ("external_prefix_cache_queries", n),
                ("external_prefix_cache_hits", n // 3),
            )
        )
    elif "external_queries" in cmd:
        n = _next(state, 10)
        out = json.dumps({"external_queries": n, "prefix_hits": n, "index_admissions": n})
    elif "DBSIZE" in cmd:
        out = str(_next(state, 7))
    elif "importlib.metadata" in cmd:
        out = "0.8.1"
    elif "kvbench warmup word" in cmd:
        out = json.dumps({"ok": 16})
    return {
        "changed": True,
        "stdout": out,
        "stderr": "",
        "rc": rc,
        "return_code": rc,
        "stdout_lines": out.splitlines(),
    }


def _log(state, p):
    secrets = [s for s in os.environ.get("KVBENCH_FAKE_SECRETS", "").split(",") if s]
    text = f"fake log of {p.get('name') or p.get('label_selectors')}\n"
    for secret in secrets:
        text += f"LMCache config: remote_url=redis://:{secret}@kvbench-redis:6379\n"
        text += f'{{"address": "redis://:{secret}@kvbench-redis:6379"}}\n'
    return {"log": text, "log_lines": text.splitlines()}


def _report(state, remote_path):
    out_dir = os.path.dirname(remote_path)
    job = next(
        o
        for o in state["objects"].values()
        if o["kind"] == "Job"
        and any(
            e.get("value") == out_dir
            for c in o["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", [])
        )
    )
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    seed = json.loads(args[args.index("--seed") + 1])["value"]
    source = os.environ["KVBENCH_FAKE_REPORT"]
    with open(source, "rb") as handle:
        data = handle.read()
    if source.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31)
    report = json.loads(data)
    report["config"]["spec"]["seed"] = {"kind": "static", "value": seed}
    report["benchmarks"] = report["benchmarks"][:1]
    return json.dumps(report)


def _cp(state, p):
    local = p["local_path"]
    if p["remote_path"].endswith("guidellm.json"):
        with open(local, "w") as handle:
            handle.write(_report(state, p["remote_path"]))
    else:
        os.makedirs(local, exist_ok=True)
        for name in ("archive.0", "archive.index", "archive.meta"):
            with open(os.path.join(local, name), "wb") as handle:
                handle.write(b"\x00\x01PCP")
        secrets = [s for s in os.environ.get("KVBENCH_FAKE_SECRETS", "").split(",") if s]
        with open(os.path.join(local, "pmlogger.log"), "w") as handle:
            handle.write("pmlogger started " + " ".join(secrets) + "\n")
    return {"changed": True}


HANDLERS = {"k8s": _k8s, "k8s_info": _info, "k8s_exec": _exec, "k8s_log": _log, "k8s_cp": _cp}


def run(module_name):
    module = AnsibleModule(argument_spec={k: {"type": "raw"} for k in PARAMS}, supports_check_mode=False)
    with open(os.environ["KVBENCH_FAKE_CLUSTER"], "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        state = _load(handle)
        params = {k: v for k, v in module.params.items() if v is not None}
        state["calls"].append(
            {
                "module": module_name,
                "kubeconfig": params.get("kubeconfig"),
                "context": params.get("context"),
                "kind": params.get("kind"),
            }
        )
        result = HANDLERS[module_name](state, params)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(state))
    module.exit_json(**result)
