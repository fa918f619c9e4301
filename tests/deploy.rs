//! The deployment files, checked against avscan's own configuration (no Docker engine or
//! cluster here): `compose/compose.yaml` and `deploy/k8s/avscan.yaml` must parse, name only
//! variables avscan knows, and give it a configuration its own parser accepts; their pieces
//! must fit together (files mounted, services depended on, probes, drain time, KEDA target).

use std::collections::BTreeMap;
use std::path::Path;

use avscan::config::{Cli, Command};
use clap::{CommandFactory, Parser};
use serde_yaml_ng::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The AWS and OpenTelemetry SDKs' own variables, which avscan honours through the SDKs, and
/// the log filter.
const SDK_VARIABLES: [&str; 12] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "RUST_LOG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

/// Every variable `avscan run` reads, with its flag.
fn run_variables() -> BTreeMap<String, String> {
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("run subcommand");
    run.get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            Some((env, format!("--{}", arg.get_long()?)))
        })
        .collect()
}

/// Parses `env` as avscan would and returns its settings, or the first problem.
fn settings_from(env: &BTreeMap<String, String>) -> Result<avscan::config::Settings, String> {
    let known = run_variables();
    let mut argv = vec!["avscan".to_owned(), "run".to_owned()];
    for (name, value) in env {
        match known.get(name) {
            Some(flag) => argv.extend([flag.clone(), value.clone()]),
            None if SDK_VARIABLES.contains(&name.as_str()) => {}
            None => return Err(format!("{name} is not a variable avscan reads")),
        }
    }
    let cli = Cli::try_parse_from(argv).map_err(|err| err.to_string())?;
    let Command::Run(args) = cli.command else {
        unreachable!("parsed as run")
    };
    args.settings().map_err(|err| err.to_string())
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_mapping()
        .expect("a mapping")
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), v)
        })
        .collect()
}

/// `MaxFileSize` of a clamd.conf, in MB.
fn clamd_max_file_size_mb(conf: &str) -> u64 {
    let line = conf
        .lines()
        .find(|line| line.starts_with("MaxFileSize "))
        .expect("MaxFileSize set");
    line["MaxFileSize ".len()..]
        .trim()
        .trim_end_matches('M')
        .parse()
        .unwrap()
}

#[test]
fn compose_is_valid_and_gives_avscan_a_configuration_it_accepts() {
    let dir = Path::new(REPO).join("compose");
    let compose: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("compose.yaml")).unwrap()).unwrap();
    let services = compose["services"].as_mapping().expect("services");
    for name in ["clamav", "moto", "resources", "jaeger", "avscan", "demo"] {
        assert!(services.contains_key(name), "no {name} service");
    }
    for (name, service) in services {
        assert!(
            service.get("image").is_some() || service.get("build").is_some(),
            "{name:?} has neither image nor build"
        );
        let depends: Vec<String> = match service.get("depends_on") {
            Some(Value::Sequence(list)) => list.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
            Some(Value::Mapping(map)) => map.keys().map(|k| k.as_str().unwrap().to_owned()).collect(),
            _ => Vec::new(),
        };
        for dependency in depends {
            assert!(
                services.contains_key(dependency.as_str()),
                "{name:?} depends on unknown {dependency}"
            );
        }
        for volume in service
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            assert!(dir.join(source).exists(), "{name:?} mounts missing {source}");
        }
    }
    let avscan = &compose["services"]["avscan"];
    let context = dir.join(avscan["build"]["context"].as_str().unwrap());
    assert!(context.join(avscan["build"]["dockerfile"].as_str().unwrap()).exists());

    let env = string_map(&avscan["environment"]);
    let settings = settings_from(&env).unwrap_or_else(|err| panic!("compose's avscan env: {err}"));
    // Traces go to Jaeger's OTLP/HTTP receiver, which is switched on.
    assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://jaeger:4318");
    assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
    let jaeger = string_map(&compose["services"]["jaeger"]["environment"]);
    assert_eq!(jaeger["COLLECTOR_OTLP_ENABLED"], "true");
    // The demo uploads into the bucket avscan watches, after avscan started.
    let demo = std::fs::read_to_string(dir.join("demo.py")).unwrap();
    assert!(demo.contains(&format!("default=\"{}\"", env["UNPROCESSED_BUCKET_NAME"])));
    let clamd_conf = std::fs::read_to_string(dir.join("clamav/clamd-docker.conf")).unwrap();
    assert!(
        settings.pipeline.archive_member_limit / (1024 * 1024) <= clamd_max_file_size_mb(&clamd_conf),
        "CLAMD_MAX_FILE_SIZE above the Docker clamd's MaxFileSize: avscan would refuse to start"
    );
}

#[test]
fn the_kubernetes_example_fits_together_and_its_configuration_is_accepted() {
    let text = std::fs::read_to_string(Path::new(REPO).join("deploy/k8s/avscan.yaml")).unwrap();
    let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| <Value as serde::Deserialize>::deserialize(document).unwrap())
        .collect();
    let of_kind = |kind: &str| -> &Value {
        documents
            .iter()
            .find(|document| document["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let config = string_map(&of_kind("ConfigMap")["data"]);
    let settings = settings_from(&config).unwrap_or_else(|err| panic!("the ConfigMap: {err}"));

    let deployment = of_kind("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain = settings.shutdown_grace.as_secs() + settings.wait_time.as_secs();
    assert!(
        grace > drain,
        "terminationGracePeriodSeconds {grace} leaves no room for a {drain} s drain"
    );
    assert_eq!(pod["serviceAccountName"], of_kind("ServiceAccount")["metadata"]["name"]);
    let avscan = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|container| container["name"] == "avscan")
        .unwrap();
    assert_eq!(avscan["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(avscan["readinessProbe"]["httpGet"]["path"], "/readyz");
    let port = &avscan["ports"][0];
    assert_eq!(avscan["livenessProbe"]["httpGet"]["port"], port["name"]);
    assert_eq!(
        port["containerPort"].as_u64(),
        Some(u64::from(settings.ops_address.port()))
    );
    assert_eq!(
        avscan["envFrom"][0]["configMapRef"]["name"],
        of_kind("ConfigMap")["metadata"]["name"]
    );

    let scaled = of_kind("ScaledObject");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "aws-sqs-queue");
    let queue_url = trigger["metadata"]["queueURL"].as_str().unwrap();
    assert!(
        queue_url.ends_with(&format!("/{}", settings.inbound_queue)),
        "KEDA watches {queue_url}, avscan reads {}",
        settings.inbound_queue
    );
    assert_eq!(
        trigger["authenticationRef"]["name"],
        of_kind("TriggerAuthentication")["metadata"]["name"]
    );
}
