//! The deployment files as operators' scanners judge them (`compose/check-deploy.sh`): checkov
//! over `deploy/` and the `Dockerfile`, kubernetes-validate (strict, with KEDA's CRDs vendored
//! in `deploy/schemas`) over the Kubernetes example, cloudsplaining over the IAM policies. Any
//! finding fails; a check skipped inline must say why. The tools are installed on first use
//! into `.venv/scanners` (pip, pinned versions; about a minute once).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Runs the scanners over `root` (a checkout): whether all passed, and what they printed.
fn scan(root: &Path) -> (bool, String) {
    let output = Command::new("bash")
        .arg(Path::new(REPO).join("compose/check-deploy.sh"))
        .arg(root)
        .output()
        .expect("bash runs compose/check-deploy.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn checkov_kubernetes_validate_and_cloudsplaining_find_nothing() {
    let (passed, output) = scan(Path::new(REPO));
    assert!(passed, "the scanners found something:\n{output}");
    // Each tool ran and looked at what it should (checkov says nothing of a file it cannot parse).
    for ran in [
        "kubernetes scan results",
        "dockerfile scan results",
        "Failed checks: 0",
        "documents, 0 problems",
        "cloudsplaining: deploy/iam-policy.json: no findings",
    ] {
        assert!(output.contains(ran), "{ran:?} not in:\n{output}");
    }
}

/// A copy of what the scanners read (deploy/ and the Dockerfile) in a directory of its own.
struct Copy(PathBuf);

impl Copy {
    fn new() -> Self {
        let root = std::env::temp_dir().join(format!("avscan-deploy-{}", uuid::Uuid::new_v4()));
        copy_dir(&Path::new(REPO).join("deploy"), &root.join("deploy"));
        std::fs::copy(Path::new(REPO).join("Dockerfile"), root.join("Dockerfile")).unwrap();
        Self(root)
    }

    /// Replaces every `from` in the copy's `file` with `to`; `from` must be there.
    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.0.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} is not in {file}");
        std::fs::write(path, text.replace(from, to)).unwrap();
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_new_finding_of_each_scanner_fails() {
    let copy = Copy::new();
    let k8s = "deploy/k8s/avscan.yaml";
    // checkov: containers with a writable root filesystem, an image without a HEALTHCHECK.
    copy.edit(k8s, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false");
    copy.edit("Dockerfile", "HEALTHCHECK", "# HEALTHCHECK");
    // kubernetes-validate: a misspelt field, a kind no schema knows; with KEDA's schemas, a
    // count that is not a number and a field KEDA does not have.
    copy.edit(
        k8s,
        "terminationGracePeriodSeconds: 60",
        "terminationGracePeriodSecond: 60",
    );
    copy.edit(k8s, "kind: PersistentVolumeClaim", "kind: PersistentVolumeClame");
    copy.edit(k8s, "minReplicaCount: 1", "minReplicaCount: one");
    copy.edit(
        k8s,
        "scaleOnInFlight: \"true\"\n",
        "scaleOnInFlight: \"true\"\n      metadataa: {}\n",
    );
    // cloudsplaining: every S3 action.
    copy.edit(
        "deploy/iam-policy.json",
        "\"Statement\": [",
        "\"Statement\": [{\"Effect\": \"Allow\", \"Action\": \"s3:*\", \"Resource\": \"arn:aws:s3:::UNPROCESSED_BUCKET/*\"},",
    );
    let (passed, output) = scan(&copy.0);
    assert!(!passed, "the scanners passed:\n{output}");
    for finding in [
        "CKV_K8S_22",
        "CKV_DOCKER_2",
        "Deployment/avscan: spec.template.spec: Additional properties are not allowed ('terminationGracePeriodSecond'",
        "Couldn't find schema for kind PersistentVolumeClame",
        "ScaledObject/avscan: spec.minReplicaCount: 'one' is not of type 'integer'",
        "ScaledObject/avscan: spec.triggers.0: Additional properties are not allowed ('metadataa'",
        "Policy allows ALL Actions from a service",
    ] {
        assert!(output.contains(finding), "{finding:?} not found in:\n{output}");
    }
}

/// Every `checkov.io/skipN: CHECK=reason` annotation of the Kubernetes example.
fn k8s_skips() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(Path::new(REPO).join("deploy/k8s/avscan.yaml")).unwrap();
    let mut skips = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let document = <Value as serde::Deserialize>::deserialize(document).unwrap();
        let name = format!(
            "{}/{}",
            document["kind"].as_str().unwrap(),
            document["metadata"]["name"].as_str().unwrap()
        );
        let Some(annotations) = document["metadata"]["annotations"].as_mapping() else {
            continue;
        };
        for (key, value) in annotations {
            if key.as_str().unwrap().starts_with("checkov.io/skip") {
                let (check, reason) = value.as_str().unwrap().split_once('=').expect("CHECK=reason");
                skips.push((name.clone(), check.to_owned(), reason.to_owned()));
            }
        }
    }
    skips
}

#[test]
fn every_skipped_check_says_why_and_hides_nothing_of_avscan() {
    let skips = k8s_skips();
    for (resource, check, reason) in &skips {
        assert!(
            check.starts_with("CKV") && reason.split_whitespace().count() >= 8,
            "{resource} skips {check} without saying why: {reason:?}"
        );
    }
    let dockerfile = std::fs::read_to_string(Path::new(REPO).join("Dockerfile")).unwrap();
    for line in dockerfile.lines().filter(|line| line.contains("checkov:skip=")) {
        let reason = line.split_once(':').map(|(_, rest)| rest).unwrap_or_default();
        assert!(
            reason.split_whitespace().count() >= 8,
            "a Dockerfile skip without a reason: {line}"
        );
    }
    // The skips are per workload: what they would hide of avscan's own container is held here.
    // CKV_K8S_40 (a uid of 10000 or more) is skipped for the clamav image's uid 100 only.
    let skipped = |check: &str| {
        skips
            .iter()
            .any(|(resource, skipped, _)| resource == "Deployment/avscan" && skipped == check)
    };
    assert!(
        skipped("CKV_K8S_40"),
        "the skips checked here changed: look at what they hide"
    );
    let text = std::fs::read_to_string(Path::new(REPO).join("deploy/k8s/avscan.yaml")).unwrap();
    let deployment = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| <Value as serde::Deserialize>::deserialize(document).unwrap())
        .find(|document| document["kind"] == "Deployment" && document["metadata"]["name"] == "avscan")
        .unwrap();
    let avscan = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|container| container["name"] == "avscan")
        .unwrap();
    let uid = avscan["securityContext"]["runAsUser"].as_u64().unwrap();
    assert!(
        uid >= 10_000,
        "avscan runs as uid {uid}: below 10000 it may be a user of the node's"
    );
}
