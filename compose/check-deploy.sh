#!/usr/bin/env bash
# Holds the deployment files to the scanners operators gate merges on, and fails on any finding:
#   - checkov over every file under deploy/ and the Dockerfile (a check that is wrong for
#     avscan is skipped inline, with its reason, where it applies);
#   - kubernetes-validate, strict, over deploy/k8s/*.yaml, with KEDA's CRDs vendored in
#     deploy/schemas for the kinds it has no schema for (compose/validate-manifests.py);
#   - cloudsplaining over the IAM policies deploy/iam-policy*.json: service wildcards, and
#     privilege escalation, data exfiltration, resource exposure or infrastructure
#     modification on unconstrained resources.
# The tools are pinned and installed on first use into .venv/scanners (git-ignored, beside what
# stack.sh installs in .venv: checkov pins boto3 and networkx below what moto needs). Offline
# after that: checkov runs with --skip-download.
#
#   compose/check-deploy.sh [ROOT]    ROOT: a copy of the repository to check (default: this one)
set -euo pipefail

CHECKOV_VERSION=3.3.30
KUBERNETES_VALIDATE_VERSION=1.37.0

repo=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "${1:-$repo}" && pwd)
venv="$repo/.venv/scanners"
pins="checkov==$CHECKOV_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"

install_scanners() {
    mkdir -p "$repo/.venv"
    # One installer at a time (tests run in parallel); the marker is written last, so an
    # interrupted install is done again.
    exec 9>"$repo/.venv/scanners.lock"
    flock 9
    if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
        printf 'check-deploy: installing %s into .venv/scanners (pip)\n' "$pins" >&2
        python3 -m venv "$venv"
        # shellcheck disable=SC2086
        "$venv/bin/pip" install -q --disable-pip-version-check $pins
        printf '%s' "$pins" > "$venv/.pins"
    fi
    flock -u 9
}

install_scanners
cd "$root"
status=0

# checkov reads deploy/schemas' CRDs as Kubernetes objects too (no check applies to them).
mapfile -t deploy_files < <(find deploy -type f | sort)
if ! "$venv/bin/checkov" --quiet --compact --skip-download --framework all \
    -f "${deploy_files[@]}" Dockerfile; then
    status=1
fi

mapfile -t manifests < <(find deploy/k8s -name '*.yaml' | sort)
if ! "$venv/bin/python" "$repo/compose/validate-manifests.py" deploy/schemas "${manifests[@]}"; then
    status=1
fi

for policy in deploy/iam-policy*.json; do
    findings=$("$venv/bin/cloudsplaining" scan-policy-file --input-file "$policy")
    if [ "$findings" = "There were no results found." ]; then
        printf 'cloudsplaining: %s: no findings\n' "$policy"
    else
        printf 'cloudsplaining: %s:\n%s\n' "$policy" "$findings"
        status=1
    fi
done

exit $status
