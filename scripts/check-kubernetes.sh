#!/usr/bin/env bash
# The Kubernetes manifests hold together offline: kustomize renders them
# (kubectl kustomize, which needs no cluster), every volume, Secret,
# ConfigMap and claim the StatefulSet names exists or is documented, the
# Services select the StatefulSet's pods, and the Caddyfile of the
# ConfigMap adapts and validates with bin/caddy (its token files and
# storage pointed at a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
caddy=${CADDY:-bin/caddy}
[ -x "$caddy" ] || go build -o "$caddy" ./cmd/caddy
fail() { echo "FAIL: $*"; exit 1; }
command -v kubectl >/dev/null || fail "scripts/check-kubernetes.sh needs kubectl: apt-get install kubernetes-client"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
kubectl kustomize deploy/kubernetes >"$tmp/all.yaml" || fail "kubectl kustomize deploy/kubernetes"
echo "ok: kubectl kustomize renders $(grep -c '^kind:' "$tmp/all.yaml") objects"

py=
for candidate in python3 /usr/bin/python3; do
	if "$candidate" -c 'import yaml' 2>/dev/null; then py=$candidate; break; fi
done
[ -n "$py" ] || fail "scripts/check-kubernetes.sh needs Python's yaml: apt-get install python3-yaml"
"$py" - "$tmp/all.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by_kind = {}
for d in docs:
    assert d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"), f"an object without apiVersion, kind or name: {d}"
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
sts = by_kind["StatefulSet"]["inlets"]
pod = sts["spec"]["template"]
labels = pod["metadata"]["labels"]
assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the StatefulSet's selector does not match its pods"
spec = pod["spec"]
c = spec["containers"][0]
for probe in ("readinessProbe", "livenessProbe"):
    assert probe in c, f"the container has no {probe}"
mounts = {m["name"] for m in c["volumeMounts"]}
vols = {v["name"]: v for v in spec["volumes"]}
assert mounts <= vols.keys(), f"volume mounts without volumes: {mounts - vols.keys()}"
for v in vols.values():
    if "configMap" in v:
        assert v["configMap"]["name"] in by_kind["ConfigMap"], f"no ConfigMap {v['configMap']['name']}"
    if "persistentVolumeClaim" in v:
        assert v["persistentVolumeClaim"]["claimName"] in by_kind["PersistentVolumeClaim"], "no PersistentVolumeClaim for the data volume"
    if "secret" in v:
        # Created by hand (kustomization.yaml says how): never committed.
        assert v["secret"]["secretName"] == "inlets-tokens", v
ports = {p["name"] for p in c["ports"]}
for name, svc in by_kind["Service"].items():
    sel = svc["spec"]["selector"]
    if "statefulset.kubernetes.io/pod-name" in sel:
        n = int(sel["statefulset.kubernetes.io/pod-name"].rsplit("-", 1)[1])
        assert n < sts["spec"]["replicas"], f"Service {name} selects a pod the StatefulSet does not have"
    else:
        assert sel.items() <= labels.items(), f"Service {name} selects no pod of the StatefulSet"
    for p in svc["spec"]["ports"]:
        assert p["targetPort"] in ports, f"Service {name} targets port {p['targetPort']}, which the container does not name"
pdb = by_kind["PodDisruptionBudget"]["inlets"]
assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the PodDisruptionBudget selects no pod"
assert pdb["spec"]["minAvailable"] < sts["spec"]["replicas"], "the PodDisruptionBudget allows no disruption"
PY
echo "ok: the StatefulSet's volumes, the Services and the PodDisruptionBudget match"

mkdir -p "$tmp/secrets"
echo "operator-token-for-the-check-0123456789" >"$tmp/secrets/operator"
echo "homelab-token-for-the-check-0123456789" >"$tmp/secrets/homelab"
sed "s#/run/secrets/inlets#$tmp/secrets#g; s#/data/caddy#$tmp/data#" deploy/kubernetes/Caddyfile >"$tmp/Caddyfile"
"$caddy" adapt --config "$tmp/Caddyfile" --validate >/dev/null 2>"$tmp/adapt.log" ||
	{ grep -v '"level":"info"' "$tmp/adapt.log" | tail -5; fail "deploy/kubernetes/Caddyfile does not adapt and validate"; }
echo "ok: deploy/kubernetes/Caddyfile adapts and validates"

# The client's manifest: its Deployment mounts what the file names, and
# the config file of its ConfigMap passes `inlets client --check` (its
# token file pointed at a temporary one).
inlets=${INLETS:-bin/inlets}
[ -x "$inlets" ] || go build -o "$inlets" ./cmd/inlets
"$py" - deploy/kubernetes/client.yaml "$tmp" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by_kind = {d["kind"]: d for d in docs}
cm, dep = by_kind["ConfigMap"], by_kind["Deployment"]
pod = dep["spec"]["template"]
assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(), "the client Deployment's selector does not match its pods"
c = pod["spec"]["containers"][0]
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
vols = {v["name"]: v for v in pod["spec"]["volumes"]}
assert mounts.keys() <= vols.keys(), f"volume mounts without volumes: {mounts.keys() - vols.keys()}"
assert vols["config"]["configMap"]["name"] == cm["metadata"]["name"], "the client mounts another ConfigMap"
config = c["args"][c["args"].index("--config") + 1]
assert config == mounts["config"] + "/client.yaml", f"--config {config} is not the ConfigMap's client.yaml"
file = yaml.safe_load(cm["data"]["client.yaml"])
assert file["token-file"].startswith(mounts["token"] + "/"), "token-file is not in the mounted Secret"
tmp = sys.argv[2]
open(tmp + "/token", "w").write("client-token-for-the-check-0123456789\n")
open(tmp + "/client.yaml", "w").write(cm["data"]["client.yaml"].replace(file["token-file"], tmp + "/token"))
PY
"$inlets" client --config "$tmp/client.yaml" --check >"$tmp/check.log" 2>&1 ||
	{ cat "$tmp/check.log"; fail "the client config of deploy/kubernetes/client.yaml does not pass inlets client --check"; }
echo "ok: deploy/kubernetes/client.yaml mounts what its config file names, and the file passes inlets client --check ($(cut -d: -f2- "$tmp/check.log" | tr -d '\n'))"
