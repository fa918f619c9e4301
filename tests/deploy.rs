//! The deployment files, checked against avscan's own configuration (no Docker engine or
//! cluster here): `compose/compose.yaml` and `deploy/k8s/avscan.yaml` must parse, name only
//! variables avscan knows, and give it a configuration its own parser accepts; their pieces
//! must fit together (files mounted, services depended on, probes, drain time, KEDA target).
//!
//! Each of them runs the official `clamav/clamav` image with a clamd.conf of ours mounted over
//! the image's `/etc/clamav/clamd.conf`. That file is read here as clamd reads it
//! ([`ClamdConf`]) and checked against the settings avscan's parser makes of the same
//! deployment ([`clamd_conf_problems`]): alerts on, limits that match what avscan is told.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use avscan::clamd::ClamdAddress;
use avscan::cli::{Cli, Command};
use avscan::config::Settings;
use clap::{CommandFactory, Parser};
use serde_yaml_ng::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

const MIB: u64 = 1024 * 1024;

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

/// Where the `clamav/clamav` image's clamd reads its configuration (the image is built with
/// `APP_CONFIG_DIRECTORY=/etc/clamav` and starts `clamd --foreground` without `--config-file`;
/// its freshclam reads the same path to notify clamd after an update).
const IMAGE_CLAMD_CONF: &str = "/etc/clamav/clamd.conf";

/// The socket the image's entrypoints wait for before they report "clamd started"; without it
/// they wait `CLAMD_STARTUP_TIMEOUT` (30 minutes) and exit.
const IMAGE_LOCAL_SOCKET: &str = "/tmp/clamd.sock";

/// The port the image's readiness script, `clamdcheck.sh`, asks PING on (`nc localhost 3310`).
const IMAGE_PROBE_PORT: u64 = 3310;

/// The uid of the image's `clamav` user (`adduser … -u 100` in its Dockerfile), who owns the
/// signature databases the non-root entrypoint `/init-unprivileged` updates.
const IMAGE_CLAMAV_UID: u64 = 100;

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
fn settings_from(env: &BTreeMap<String, String>) -> Result<Settings, String> {
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

/// A clamd.conf as clamd 1.4 reads it (checked with `clamconf` 1.4.6): one `Option value` per
/// line, `#` opens a comment line, leading blanks are ignored, option names are case-sensitive,
/// and a value is one word (clamd refuses `AlertExceedsMax yes # note`).
#[derive(Debug)]
struct ClamdConf {
    /// Every value of every option, in file order: a few options (`TCPAddr`) may repeat.
    options: BTreeMap<String, Vec<String>>,
}

impl ClamdConf {
    fn parse(text: &str) -> Result<Self, String> {
        let mut options: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let name = words.next().expect("a line with a word");
            // `Example` is the one option without a value.
            let value = words.next().unwrap_or_default();
            if words.next().is_some() {
                return Err(format!(
                    "line {}: {line:?}: more than one value (clamd refuses it)",
                    index + 1
                ));
            }
            options.entry(name.to_owned()).or_default().push(value.to_owned());
        }
        Ok(Self { options })
    }

    /// Every value of `name`, none when it is not set.
    fn values(&self, name: &str) -> &[String] {
        self.options.get(name).map_or(&[], Vec::as_slice)
    }

    /// The value of a single-valued option. clamd silently takes the first of repeated values;
    /// a repeat in our files is a mistake, so it is refused here.
    fn value(&self, name: &str) -> Result<Option<&str>, String> {
        match self.values(name) {
            [] => Ok(None),
            [value] => Ok(Some(value)),
            values => Err(format!("{name} is set {} times (clamd takes the first)", values.len())),
        }
    }

    /// A BOOL option (yes/no, true/false, 1/0, any case), or clamd's `default`.
    fn flag(&self, name: &str, default: bool) -> Result<bool, String> {
        let Some(value) = self.value(name)? else {
            return Ok(default);
        };
        match value.to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" => Ok(true),
            "no" | "false" | "0" => Ok(false),
            _ => Err(format!("{name} {value}: not a boolean clamd reads")),
        }
    }

    /// A SIZE option in bytes, or clamd's `default`.
    fn size(&self, name: &str, default: u64) -> Result<u64, String> {
        self.value(name)?.map_or(Ok(default), |value| {
            parse_clamd_size(value).map_err(|err| format!("{name}: {err}"))
        })
    }

    /// A NUMBER option, or clamd's `default`.
    fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        self.value(name)?.map_or(Ok(default), |value| {
            value
                .parse()
                .map_err(|_| format!("{name} {value}: not a number clamd reads"))
        })
    }
}

/// A clamd.conf SIZE: bytes, or a whole number with `K`, `M` or `G` (either case), 1024-based.
fn parse_clamd_size(value: &str) -> Result<u64, String> {
    let (digits, unit) = match value.char_indices().last() {
        Some((at, 'k' | 'K')) => (&value[..at], 1 << 10),
        Some((at, 'm' | 'M')) => (&value[..at], 1 << 20),
        Some((at, 'g' | 'G')) => (&value[..at], 1 << 30),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("{value:?} is not a size clamd reads"));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit))
        .ok_or_else(|| format!("{value:?} is too large"))
}

/// Everything in `conf` that would let clamd skip content and still answer OK, refuse what
/// avscan promises to scan, or disagree with what avscan is told about clamd — given the
/// `settings` avscan's parser makes of the same deployment. Empty when they fit. `Err` when the
/// file is not one clamd would read as we mean it. Absent options count at clamd 1.4's
/// compiled-in defaults (FACTS.md; the `Default:` lines of clamd.conf.sample).
fn clamd_conf_problems(conf: &ClamdConf, settings: &Settings) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    if !conf.values("Example").is_empty() {
        problems.push("`Example` is set: clamd refuses to start".to_owned());
    }
    // Off, clamd skips what passes MaxFileSize, MaxScanSize, MaxRecursion, MaxFiles or
    // MaxScanTime and answers `stream: OK`. (`BlockMax` is its deprecated name.)
    if !(conf.flag("AlertExceedsMax", false)? || conf.flag("BlockMax", false)?) {
        problems.push("AlertExceedsMax is not yes: clamd answers OK for what it skipped at its limits".to_owned());
    }
    // AlertEncrypted covers archives and documents; AlertEncryptedArchive archives alone.
    if !(conf.flag("AlertEncrypted", false)? || conf.flag("AlertEncryptedArchive", false)?) {
        problems.push(
            "neither AlertEncrypted nor AlertEncryptedArchive is yes: an encrypted archive, whose \
             content clamd cannot read, is answered OK"
                .to_owned(),
        );
    }
    if !conf.flag("ScanArchive", true)? {
        problems.push("ScanArchive is no: clamd does not look inside archives".to_owned());
    }

    let max_file_size = settings.pipeline.max_file_size;
    let stream_max = conf.size("StreamMaxLength", 100 * MIB)?;
    if stream_max < max_file_size {
        problems.push(format!(
            "StreamMaxLength {} MiB is below MAX_FILE_SIZE ({} MiB): clean objects in between would be \
             cut off and quarantined as too large",
            stream_max / MIB,
            max_file_size / MIB
        ));
    }
    let clamd_file_max = conf.size("MaxFileSize", 100 * MIB)?;
    match settings.clamd_max_file_size {
        Some(told) if told != clamd_file_max => problems.push(format!(
            "MaxFileSize {} MiB is not CLAMD_MAX_FILE_SIZE ({} MiB), which avscan verifies at start-up",
            clamd_file_max / MIB,
            told / MIB
        )),
        Some(_) => {}
        None => problems.push(
            "CLAMD_MAX_FILE_SIZE is not set: avscan would have to discover MaxFileSize at every start; \
             a deployment that ships its clamd.conf states it"
                .to_owned(),
        ),
    }
    if clamd_file_max < max_file_size {
        problems.push(format!(
            "MaxFileSize {} MiB is below MAX_FILE_SIZE ({} MiB): objects in between are not scanned whole",
            clamd_file_max / MIB,
            max_file_size / MIB
        ));
    }
    let scan_max = conf.size("MaxScanSize", 400 * MIB)?;
    if scan_max < clamd_file_max {
        problems.push(format!(
            "MaxScanSize {} MiB is below MaxFileSize ({} MiB)",
            scan_max / MIB,
            clamd_file_max / MIB
        ));
    }
    if scan_max != settings.pipeline.archive_inflate_budget {
        problems.push(format!(
            "MaxScanSize {} MiB is not CLAMD_MAX_SCAN_SIZE ({} MiB), the archive guard's budget",
            scan_max / MIB,
            settings.pipeline.archive_inflate_budget / MIB
        ));
    }
    // 0 is no limit: clamd could outlast any deadline avscan keeps.
    let scan_time = Duration::from_millis(conf.number("MaxScanTime", 120_000)?);
    if scan_time.is_zero() || scan_time > settings.clamd_max_scan_time {
        problems.push(format!(
            "MaxScanTime {} ms is not within CLAMD_MAX_SCAN_TIME ({} s): avscan would give up on scans \
             clamd is still running",
            scan_time.as_millis(),
            settings.clamd_max_scan_time.as_secs()
        ));
    }
    let threads = conf.number("MaxThreads", 10)?;
    if threads < settings.pipeline.scanner_connections as u64 {
        problems.push(format!(
            "MaxThreads {threads} is below CLAMD_CONNECTIONS ({})",
            settings.pipeline.scanner_connections
        ));
    }

    match &settings.clamd_address {
        ClamdAddress::Tcp(host_port) => {
            let (host, port) = host_port.rsplit_once(':').expect("host:port");
            let listening = conf.value("TCPSocket")?;
            if listening != Some(port) {
                problems.push(format!(
                    "CLAMD_ADDRESS names port {port}, clamd's TCPSocket is {}",
                    listening.unwrap_or("unset")
                ));
            }
            // Without TCPAddr, clamd listens on every address.
            let addresses = conf.values("TCPAddr");
            let everywhere = ["0.0.0.0", "::"];
            if !addresses.is_empty()
                && !addresses
                    .iter()
                    .any(|address| address == host || everywhere.contains(&address.as_str()))
            {
                problems.push(format!(
                    "CLAMD_ADDRESS names {host}, clamd listens on {addresses:?} only"
                ));
            }
        }
        ClamdAddress::Unix(path) => {
            let listening = conf.value("LocalSocket")?;
            if listening.map(Path::new) != Some(path.as_path()) {
                problems.push(format!(
                    "CLAMD_ADDRESS names {}, clamd's LocalSocket is {}",
                    path.display(),
                    listening.unwrap_or("unset")
                ));
            }
        }
    }
    Ok(problems)
}

/// What the `clamav/clamav` image needs of a clamd.conf mounted over its own (its entrypoints
/// and `clamdcheck.sh`, Cisco-Talos/clamav-docker `clamav/1.4/alpine/scripts/`).
fn image_problems(conf: &ClamdConf) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    if conf.value("LocalSocket")? != Some(IMAGE_LOCAL_SOCKET) {
        problems.push(format!(
            "LocalSocket is not {IMAGE_LOCAL_SOCKET}: the image's entrypoint waits for that socket, then gives up"
        ));
    }
    if conf.number("TCPSocket", 0)? != IMAGE_PROBE_PORT {
        problems.push(format!(
            "TCPSocket is not {IMAGE_PROBE_PORT}: the image's clamdcheck.sh (the probe) asks PING there"
        ));
    }
    if let Some(addresses) = conf.options.get("TCPAddr") {
        if !addresses
            .iter()
            .any(|address| address == "127.0.0.1" || address == "0.0.0.0")
        {
            problems.push(format!(
                "TCPAddr {addresses:?} leaves out 127.0.0.1, where clamdcheck.sh asks (`nc localhost`)"
            ));
        }
    }
    Ok(problems)
}

/// Panics with every problem of the clamd.conf a deployment mounts, named after it.
fn assert_clamd_fits(deployment: &str, conf_text: &str, settings: &Settings) {
    let conf = ClamdConf::parse(conf_text).unwrap_or_else(|err| panic!("{deployment}'s clamd.conf: {err}"));
    let mut problems = clamd_conf_problems(&conf, settings).unwrap_or_else(|err| panic!("{deployment}: {err}"));
    problems.extend(image_problems(&conf).unwrap_or_else(|err| panic!("{deployment}: {err}")));
    assert!(
        problems.is_empty(),
        "{deployment}'s clamd does not fit avscan's settings:\n- {}",
        problems.join("\n- ")
    );
}

/// The options that make two clamd deployments behave alike for avscan.
const SHARED_CLAMD_OPTIONS: [&str; 14] = [
    "StreamMaxLength",
    "MaxFileSize",
    "MaxScanSize",
    "MaxScanTime",
    "MaxRecursion",
    "MaxFiles",
    "AlertExceedsMax",
    "AlertEncrypted",
    "MaxThreads",
    "MaxQueue",
    "IdleTimeout",
    "CommandReadTimeout",
    "ReadTimeout",
    "TCPSocket",
];

fn compose_dir() -> std::path::PathBuf {
    Path::new(REPO).join("compose")
}

fn compose() -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(compose_dir().join("compose.yaml")).unwrap()).unwrap()
}

/// The file compose mounts over the image's clamd.conf, relative to `compose/`.
fn compose_clamd_conf_source(compose: &Value) -> String {
    let clamav = &compose["services"]["clamav"];
    let volumes = clamav["volumes"].as_sequence().expect("clamav mounts volumes");
    volumes
        .iter()
        .map(|volume| volume.as_str().unwrap().split(':').collect::<Vec<_>>())
        .find(|parts| parts.get(1) == Some(&IMAGE_CLAMD_CONF))
        .map(|parts| parts[0].to_owned())
        .unwrap_or_else(|| panic!("compose's clamav mounts nothing over {IMAGE_CLAMD_CONF}"))
}

fn k8s_documents() -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(REPO).join("deploy/k8s/avscan.yaml")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| <Value as serde::Deserialize>::deserialize(document).unwrap())
        .collect()
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents
        .iter()
        .find(|document| document["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn named<'a>(documents: &'a [Value], kind: &str, name: &Value) -> &'a Value {
    documents
        .iter()
        .find(|document| document["kind"] == kind && &document["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name:?}"))
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|container| container["name"] == name)
        .unwrap_or_else(|| panic!("no {name} container"))
}

/// The settings avscan makes of the Kubernetes example's ConfigMap, the one its container reads.
fn k8s_settings(documents: &[Value]) -> Settings {
    let pod = &of_kind(documents, "Deployment")["spec"]["template"]["spec"];
    let config = named(
        documents,
        "ConfigMap",
        &container(pod, "avscan")["envFrom"][0]["configMapRef"]["name"],
    );
    settings_from(&string_map(&config["data"])).unwrap_or_else(|err| panic!("the ConfigMap: {err}"))
}

#[test]
fn compose_is_valid_and_gives_avscan_a_configuration_it_accepts() {
    let dir = compose_dir();
    let compose = compose();
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
            if source.starts_with('.') || source.starts_with('/') {
                assert!(dir.join(source).exists(), "{name:?} mounts missing {source}");
            } else {
                assert!(
                    compose["volumes"].get(source).is_some(),
                    "{name:?} mounts the undeclared volume {source}"
                );
            }
        }
    }
    let avscan = &compose["services"]["avscan"];
    let context = dir.join(avscan["build"]["context"].as_str().unwrap());
    assert!(context.join(avscan["build"]["dockerfile"].as_str().unwrap()).exists());

    let env = string_map(&avscan["environment"]);
    settings_from(&env).unwrap_or_else(|err| panic!("compose's avscan env: {err}"));
    // Traces go to Jaeger's OTLP/HTTP receiver, which is switched on.
    assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://jaeger:4318");
    assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
    let jaeger = string_map(&compose["services"]["jaeger"]["environment"]);
    assert_eq!(jaeger["COLLECTOR_OTLP_ENABLED"], "true");
    // The demo uploads into the bucket avscan watches, after avscan started: in its container
    // there is no stack env file, so its fallback bucket is the one that counts.
    let demo = std::fs::read_to_string(dir.join("demo.py")).unwrap();
    let fallback = format!(
        "settings.get(\"UNPROCESSED_BUCKET_NAME\", \"{}\")",
        env["UNPROCESSED_BUCKET_NAME"]
    );
    assert!(
        demo.contains(&fallback),
        "compose/demo.py does not fall back to {fallback}"
    );
}

#[test]
fn the_compose_clamd_is_configured_as_avscan_needs() {
    let compose = compose();
    let settings = settings_from(&string_map(&compose["services"]["avscan"]["environment"])).unwrap();
    let source = compose_clamd_conf_source(&compose);
    let text = std::fs::read_to_string(compose_dir().join(&source)).unwrap();
    assert_clamd_fits("compose", &text, &settings);
    // avscan reaches clamd by its service name.
    assert_eq!(settings.clamd_address, ClamdAddress::Tcp("clamav:3310".into()));
    let clamav = &compose["services"]["clamav"];
    // The image's entrypoint rewrites clamd.conf in place for CLAMD_CONF_* variables: it would
    // fail on the read-only mount, and its values would not be the ones checked here.
    let clamav_env = string_map(&clamav["environment"]);
    assert!(
        !clamav_env.keys().any(|name| name.starts_with("CLAMD_CONF_")),
        "CLAMD_CONF_* set beside a mounted clamd.conf"
    );
    assert!(clamav["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|word| word == "clamdcheck.sh"));
}

#[test]
fn the_kubernetes_example_fits_together_and_its_configuration_is_accepted() {
    let documents = k8s_documents();
    let settings = k8s_settings(&documents);

    let deployment = of_kind(&documents, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain = settings.shutdown_grace.as_secs() + settings.wait_time.as_secs();
    assert!(
        grace > drain,
        "terminationGracePeriodSeconds {grace} leaves no room for a {drain} s drain"
    );
    assert_eq!(
        pod["serviceAccountName"],
        of_kind(&documents, "ServiceAccount")["metadata"]["name"]
    );
    let avscan = container(pod, "avscan");
    assert_eq!(avscan["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(avscan["readinessProbe"]["httpGet"]["path"], "/readyz");
    let port = &avscan["ports"][0];
    assert_eq!(avscan["livenessProbe"]["httpGet"]["port"], port["name"]);
    assert_eq!(
        port["containerPort"].as_u64(),
        Some(u64::from(settings.ops_address.port()))
    );

    let scaled = of_kind(&documents, "ScaledObject");
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
        of_kind(&documents, "TriggerAuthentication")["metadata"]["name"]
    );
}

#[test]
fn the_kubernetes_containers_can_start_as_non_root() {
    let documents = k8s_documents();
    let pod = &of_kind(&documents, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    // With runAsNonRoot the kubelet refuses an image whose USER is root (the clamav image's) or a
    // name (avscan's `USER avscan`): each container names its numeric uid.
    let dockerfile = std::fs::read_to_string(Path::new(REPO).join("Dockerfile")).unwrap();
    let avscan_uid: u64 = dockerfile
        .split("--uid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("the Dockerfile creates avscan's user with --uid");
    assert_eq!(
        container(pod, "avscan")["securityContext"]["runAsUser"].as_u64(),
        Some(avscan_uid)
    );
    let clamd = container(pod, "clamd");
    assert_eq!(clamd["securityContext"]["runAsUser"].as_u64(), Some(IMAGE_CLAMAV_UID));
    // The image's default entrypoint chowns the database directory and rewrites its
    // configuration as root; its non-root one starts freshclam and clamd the same way otherwise.
    assert_eq!(clamd["command"][0], "/init-unprivileged");
}

/// The clamd.conf the Kubernetes example mounts over the image's, from its ConfigMap.
fn k8s_clamd_conf(documents: &[Value]) -> String {
    let pod = &of_kind(documents, "Deployment")["spec"]["template"]["spec"];
    let clamd = container(pod, "clamd");
    let mount = clamd["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|mount| mount["mountPath"] == IMAGE_CLAMD_CONF)
        .unwrap_or_else(|| {
            panic!(
                "clamd runs the image's stock clamd.conf: the clamd container mounts nothing over {IMAGE_CLAMD_CONF}"
            )
        });
    assert_eq!(mount["readOnly"], true, "clamd.conf mounted writable");
    // One file: a ConfigMap mounted as /etc/clamav would hide the image's freshclam.conf.
    let key = mount["subPath"].as_str().expect("mounted with subPath");
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .expect("the mounted volume");
    let config = named(documents, "ConfigMap", &volume["configMap"]["name"]);
    config["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no {key}"))
        .to_owned()
}

#[test]
fn the_kubernetes_clamd_is_configured_as_avscan_needs() {
    let documents = k8s_documents();
    let settings = k8s_settings(&documents);
    let pod = &of_kind(&documents, "Deployment")["spec"]["template"]["spec"];
    let clamd = container(pod, "clamd");
    assert!(
        clamd["image"].as_str().unwrap().starts_with("clamav/clamav:"),
        "the checks below are for the official image"
    );
    let text = k8s_clamd_conf(&documents);
    assert_clamd_fits("Kubernetes", &text, &settings);

    // clamd listens on the pod's loopback only, where avscan, beside it, connects.
    assert_eq!(
        ClamdConf::parse(&text).unwrap().values("TCPAddr"),
        ["127.0.0.1"],
        "clamd reachable from outside the pod"
    );
    assert_eq!(settings.clamd_address, ClamdAddress::Tcp("127.0.0.1:3310".into()));
    // The image's entrypoint rewrites clamd.conf in place for CLAMD_CONF_* variables.
    assert!(
        !clamd["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|var| var["name"].as_str().unwrap().starts_with("CLAMD_CONF_")),
        "CLAMD_CONF_* set beside a mounted clamd.conf"
    );
    assert_eq!(clamd["readinessProbe"]["exec"]["command"][0], "clamdcheck.sh");
}

#[test]
fn every_clamd_we_ship_has_the_same_limits() {
    let compose = compose();
    let compose_conf = std::fs::read_to_string(compose_dir().join(compose_clamd_conf_source(&compose))).unwrap();
    let native_conf = std::fs::read_to_string(compose_dir().join("clamav/clamd.conf")).unwrap();
    let k8s_conf = k8s_clamd_conf(&k8s_documents());
    let confs = [
        ("compose", compose_conf),
        ("the native stack", native_conf),
        ("Kubernetes", k8s_conf),
    ]
    .map(|(name, text)| (name, ClamdConf::parse(&text).unwrap()));
    for option in SHARED_CLAMD_OPTIONS {
        let (first, reference) = &confs[0];
        for (name, conf) in &confs[1..] {
            assert_eq!(
                conf.value(option).unwrap(),
                reference.value(option).unwrap(),
                "{option} differs between {first} and {name}"
            );
        }
    }
}

/// The settings avscan makes of the five required variables, `CLAMD_MAX_FILE_SIZE=400` and
/// `extra` (an empty value unsets a variable).
fn settings_with(extra: &[(&str, &str)]) -> Settings {
    let mut env: BTreeMap<String, String> = [
        ("UNPROCESSED_BUCKET_NAME", "in"),
        ("QUARANTINE_BUCKET_NAME", "quarantine"),
        ("VIRUS_SCANNING_QUEUE_NAME", "scan"),
        ("VALIDATION_QUEUE_NAME", "valid"),
        ("VIRUS_NOTIFICATION_TOPIC_ARN", "arn:aws:sns:us-east-1:0:topic"),
        ("CLAMD_MAX_FILE_SIZE", "400"),
    ]
    .iter()
    .chain(extra)
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    env.retain(|_, value| !value.is_empty());
    settings_from(&env).unwrap()
}

#[test]
fn clamd_conf_sizes_and_flags_are_read_as_clamd_reads_them() {
    assert_eq!(parse_clamd_size("400M"), Ok(400 * MIB));
    assert_eq!(parse_clamd_size("400m"), Ok(400 * MIB));
    assert_eq!(parse_clamd_size("1G"), Ok(1024 * MIB));
    assert_eq!(parse_clamd_size("512k"), Ok(512 * 1024));
    assert_eq!(parse_clamd_size("419430400"), Ok(400 * MIB));
    for refused in ["", "M", "1.5M", "100MB", "-1", "+1", "99999999999999999999"] {
        assert!(parse_clamd_size(refused).is_err(), "{refused:?} accepted");
    }
    let conf =
        ClamdConf::parse("# a comment\n  AlertExceedsMax TRUE\nAlertEncrypted no\nTCPAddr a\nTCPAddr b\n").unwrap();
    assert_eq!(conf.flag("AlertExceedsMax", false), Ok(true));
    assert_eq!(conf.flag("AlertEncrypted", true), Ok(false));
    assert_eq!(conf.flag("ScanArchive", true), Ok(true), "absent: clamd's default");
    assert_eq!(conf.values("TCPAddr"), ["a", "b"]);
    assert!(ClamdConf::parse("AlertExceedsMax yes # on").is_err());
    let repeated = ClamdConf::parse("MaxFileSize 400M\nMaxFileSize 25M\n").unwrap();
    assert!(
        repeated.size("MaxFileSize", 0).is_err(),
        "clamd would take 400M, silently"
    );
    let unreadable = ClamdConf::parse("AlertExceedsMax on\nMaxScanTime 2m\n").unwrap();
    assert!(unreadable.flag("AlertExceedsMax", false).is_err(), "clamd refuses `on`");
    assert!(unreadable.number("MaxScanTime", 0).is_err());
}

#[test]
fn the_images_stock_clamd_conf_is_refused_for_each_reason() {
    // What the clamav/clamav:1.4 image runs without a clamd.conf of ours (its Dockerfile's edits
    // of clamd.conf.sample): every limit at clamd's defaults, alerts off.
    let stock = ClamdConf::parse(
        "LocalSocket /tmp/clamd.sock\nTCPSocket 3310\nUser clamav\nLogFile /var/log/clamav/clamd.log\nLogTime yes\n",
    )
    .unwrap();
    let problems = clamd_conf_problems(&stock, &settings_with(&[])).unwrap();
    for named in [
        "AlertExceedsMax is not yes",
        "AlertEncrypted",
        "StreamMaxLength 100 MiB",
        "MaxFileSize 100 MiB is not CLAMD_MAX_FILE_SIZE (400 MiB)",
        "MaxFileSize 100 MiB is below MAX_FILE_SIZE",
    ] {
        assert!(
            problems.iter().any(|problem| problem.contains(named)),
            "{named:?} not in {problems:#?}"
        );
    }
    assert_eq!(image_problems(&stock), Ok(vec![]));

    // A configuration that fits the defaults with CLAMD_MAX_FILE_SIZE=400, then each way to be
    // wrong, alone: (text replaced, by what, variables set, what the one problem names).
    let fits = "TCPSocket 3310\nLocalSocket /tmp/clamd.sock\nStreamMaxLength 400M\nMaxFileSize 400M\n\
                MaxScanSize 400M\nMaxScanTime 120000\nAlertExceedsMax yes\nAlertEncrypted yes\n";
    let problems_of =
        |text: &str, settings: &Settings| clamd_conf_problems(&ClamdConf::parse(text).unwrap(), settings).unwrap();
    assert_eq!(problems_of(fits, &settings_with(&[])), Vec::<String>::new());
    assert_eq!(image_problems(&ClamdConf::parse(fits).unwrap()), Ok(vec![]));
    type Variables = &'static [(&'static str, &'static str)];
    let cases: [(&str, &str, Variables, &str); 13] = [
        ("AlertExceedsMax yes", "AlertExceedsMax no", &[], "AlertExceedsMax"),
        ("AlertExceedsMax yes", "", &[], "AlertExceedsMax"),
        ("AlertEncrypted yes", "AlertEncryptedDoc yes", &[], "AlertEncrypted"),
        (
            "AlertEncrypted yes",
            "AlertEncrypted yes\nScanArchive no",
            &[],
            "ScanArchive",
        ),
        ("StreamMaxLength 400M", "StreamMaxLength 399M", &[], "StreamMaxLength"),
        (
            "",
            "",
            &[("CLAMD_MAX_FILE_SIZE", "300")],
            "is not CLAMD_MAX_FILE_SIZE (300 MiB)",
        ),
        ("", "", &[("CLAMD_MAX_FILE_SIZE", "")], "CLAMD_MAX_FILE_SIZE is not set"),
        (
            "MaxFileSize 400M",
            "MaxFileSize 300M",
            &[("CLAMD_MAX_FILE_SIZE", "300")],
            "below MAX_FILE_SIZE",
        ),
        (
            "MaxScanSize 400M",
            "MaxScanSize 1600M",
            &[],
            "is not CLAMD_MAX_SCAN_SIZE",
        ),
        (
            "MaxScanSize 400M",
            "MaxScanSize 300M",
            &[("CLAMD_MAX_SCAN_SIZE", "300")],
            "below MaxFileSize",
        ),
        ("MaxScanTime 120000", "MaxScanTime 0", &[], "MaxScanTime 0 ms"),
        (
            "MaxScanTime 120000",
            "MaxScanTime 120001",
            &[],
            "CLAMD_MAX_SCAN_TIME (120 s)",
        ),
        ("", "", &[("CLAMD_CONNECTIONS", "11")], "MaxThreads 10"),
    ];
    for (from, to, variables, named) in cases {
        let text = if from.is_empty() {
            fits.to_owned()
        } else {
            fits.replace(from, to)
        };
        let problems = problems_of(&text, &settings_with(variables));
        assert!(
            problems.len() == 1 && problems[0].contains(named),
            "{from:?} -> {to:?} with {variables:?}: {problems:#?}"
        );
    }
    // The address avscan is told must be where clamd listens.
    let elsewhere = settings_with(&[("CLAMD_ADDRESS", "tcp://127.0.0.1:3311")]);
    assert!(problems_of(fits, &elsewhere)[0].contains("TCPSocket"));
    let unix = settings_with(&[("CLAMD_ADDRESS", "unix:///tmp/clamd.sock")]);
    assert_eq!(problems_of(fits, &unix), Vec::<String>::new());
    let loopback = fits.replace("TCPSocket 3310", "TCPSocket 3310\nTCPAddr 127.0.0.1");
    let remote = settings_with(&[("CLAMD_ADDRESS", "tcp://clamav:3310")]);
    assert!(problems_of(&loopback, &remote)[0].contains("listens on"));
    // What the image needs: its entrypoint's socket and its probe's port.
    let other_socket = ClamdConf::parse(&fits.replace("/tmp/clamd.sock", "/run/clamd.sock")).unwrap();
    assert_eq!(image_problems(&other_socket).unwrap().len(), 1);
    let other_port = ClamdConf::parse(&fits.replace("TCPSocket 3310", "TCPSocket 3311")).unwrap();
    assert_eq!(image_problems(&other_port).unwrap().len(), 1);
    let unreachable = ClamdConf::parse(&format!("{fits}TCPAddr 10.0.0.1\n")).unwrap();
    assert_eq!(image_problems(&unreachable).unwrap().len(), 1);
}

/// Where a compose service mounts `path` from: (source, read-only).
fn compose_mount(service: &Value, path: &str) -> Option<(String, bool)> {
    service["volumes"].as_sequence()?.iter().find_map(|volume| {
        let parts: Vec<&str> = volume.as_str()?.split(':').collect();
        (parts.get(1) == Some(&path)).then(|| (parts[0].to_owned(), parts.get(2) == Some(&"ro")))
    })
}

/// A freshclam.conf as the updater's of a deployment must be: where it writes, checks at most
/// hourly (ClamAV's request), from ClamAV's CDN or a private mirror.
fn updater_database_dir(freshclam_conf: &str) -> String {
    let conf = ClamdConf::parse(freshclam_conf).unwrap();
    let checks: u64 = conf.value("Checks").unwrap().unwrap_or("12").parse().unwrap();
    assert!((1..=24).contains(&checks), "freshclam checks {checks} times a day");
    assert!(
        conf.value("DatabaseMirror").unwrap().is_some() || conf.value("PrivateMirror").unwrap().is_some(),
        "freshclam has no mirror"
    );
    conf.value("DatabaseDirectory")
        .unwrap()
        .expect("DatabaseDirectory")
        .to_owned()
}

/// clamd reloads definitions that changed on disk, within an hour.
fn assert_clamd_reloads(deployment: &str, clamd_conf: &str) -> String {
    let conf = ClamdConf::parse(clamd_conf).unwrap();
    let self_check: u64 = conf
        .value("SelfCheck")
        .unwrap()
        .unwrap_or_else(|| panic!("{deployment}: clamd.conf sets no SelfCheck"))
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&self_check), "{deployment}: SelfCheck {self_check}");
    conf.value("DatabaseDirectory")
        .unwrap()
        .expect("DatabaseDirectory")
        .to_owned()
}

#[test]
fn compose_has_one_definitions_updater_whose_files_clamd_loads() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    let runs_freshclam = |service: &Value| {
        ["entrypoint", "command"].iter().any(|key| {
            service[*key]
                .as_sequence()
                .is_some_and(|words| words.first().is_some_and(|word| word == "freshclam"))
        })
    };
    let updaters: Vec<&Value> = services.values().filter(|service| runs_freshclam(service)).collect();
    assert_eq!(updaters.len(), 1, "one freshclam service, no more");
    let updater = updaters[0];
    let (conf_source, _) = compose_mount(updater, "/etc/clamav/freshclam.conf").expect("freshclam.conf mounted");
    let writes = updater_database_dir(&std::fs::read_to_string(compose_dir().join(conf_source)).unwrap());
    let (volume, read_only) = compose_mount(updater, &writes).expect("freshclam writes to a mounted volume");
    assert!(!read_only);

    let clamav = &compose["services"]["clamav"];
    let clamd_conf = std::fs::read_to_string(compose_dir().join(compose_clamd_conf_source(&compose))).unwrap();
    let reads = assert_clamd_reloads("compose", &clamd_conf);
    assert_eq!(
        compose_mount(clamav, &reads),
        Some((volume, true)),
        "clamd does not read what freshclam writes"
    );
    // The image would run a second freshclam in the clamd container.
    assert_eq!(string_map(&clamav["environment"])["CLAMAV_NO_FRESHCLAMD"], "true");
    let settings = settings_from(&string_map(&compose["services"]["avscan"]["environment"])).unwrap();
    assert!(
        settings.pipeline.definitions_max_age.is_some(),
        "compose turns the freshness check off"
    );
}

#[test]
fn kubernetes_has_one_definitions_updater_whose_volume_every_clamd_loads() {
    let documents = k8s_documents();
    let workloads: Vec<&Value> = documents
        .iter()
        .filter(|document| {
            ["Deployment", "DaemonSet", "StatefulSet", "CronJob"].contains(&document["kind"].as_str().unwrap())
        })
        .collect();
    let pod_of = |workload: &Value| -> Value {
        match workload["kind"].as_str().unwrap() {
            "CronJob" => workload["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone(),
            _ => workload["spec"]["template"]["spec"].clone(),
        }
    };
    let freshclam_containers = |pod: &Value| -> Vec<Value> {
        pod["containers"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|container| container["command"][0] == "freshclam")
            .cloned()
            .collect()
    };
    let updaters: Vec<&&Value> = workloads
        .iter()
        .filter(|workload| !freshclam_containers(&pod_of(workload)).is_empty())
        .collect();
    assert_eq!(updaters.len(), 1, "one updater workload");
    let updater = updaters[0];
    assert_ne!(updater["kind"], "DaemonSet", "an updater per node");
    if updater["kind"] == "Deployment" {
        assert_eq!(updater["spec"]["replicas"].as_u64(), Some(1), "more than one updater");
    }
    let pod = pod_of(updater);
    let freshclam = &freshclam_containers(&pod)[0];
    let mounts = freshclam["volumeMounts"].as_sequence().unwrap();
    let conf_mount = mounts
        .iter()
        .find(|mount| mount["mountPath"] == "/etc/clamav/freshclam.conf")
        .expect("freshclam.conf mounted");
    let volume_named = |pod: &Value, name: &Value| -> Value {
        pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|volume| &volume["name"] == name)
            .cloned()
            .expect("the mounted volume")
    };
    let conf_map = named(
        &documents,
        "ConfigMap",
        &volume_named(&pod, &conf_mount["name"])["configMap"]["name"],
    );
    let writes = updater_database_dir(
        conf_map["data"][conf_mount["subPath"].as_str().unwrap()]
            .as_str()
            .unwrap(),
    );
    let written = mounts
        .iter()
        .find(|mount| mount["mountPath"] == writes.as_str())
        .expect("writes to a volume");
    let claim = volume_named(&pod, &written["name"])["persistentVolumeClaim"]["claimName"].clone();
    let pvc = named(&documents, "PersistentVolumeClaim", &claim);
    assert!(
        pvc["spec"]["accessModes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|mode| mode == "ReadWriteMany"),
        "every avscan pod's clamd mounts it: ReadWriteMany"
    );

    // Every avscan pod's clamd reads that claim where its clamd.conf loads from, and runs no
    // freshclam of its own.
    let avscan_pod = &of_kind(&documents, "Deployment")["spec"]["template"]["spec"];
    let clamd = container(avscan_pod, "clamd");
    let reads = assert_clamd_reloads("Kubernetes", &k8s_clamd_conf(&documents));
    let read = clamd["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|mount| mount["mountPath"] == reads.as_str())
        .expect("clamd's DatabaseDirectory is mounted");
    assert_eq!(read["readOnly"], true);
    assert_eq!(
        volume_named(avscan_pod, &read["name"])["persistentVolumeClaim"]["claimName"],
        claim
    );
    assert!(
        clamd["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|var| var["name"] == "CLAMAV_NO_FRESHCLAMD" && var["value"] == "true"),
        "each clamd sidecar would run its own freshclam"
    );
    assert!(k8s_settings(&documents).pipeline.definitions_max_age.is_some());
}

/// The bucket policy shipped for tag-based access (deploy/s3-bucket-policy-scan-status.json):
/// reads are denied unless the object is tagged clean as GuardDuty tags it (what avscan writes
/// with `tags = "guardduty"`), except for avscan's role; only that role may change tags; no
/// upload may arrive carrying a scan status of its own.
#[test]
fn the_scan_status_bucket_policy_denies_reads_until_tagged_clean() {
    let text = std::fs::read_to_string(Path::new(REPO).join("deploy/s3-bucket-policy-scan-status.json")).unwrap();
    let policy: serde_json::Value = serde_json::from_str(&text).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let statement = |sid: &str| {
        statements
            .iter()
            .find(|statement| statement["Sid"] == sid)
            .unwrap_or_else(|| panic!("no statement {sid}"))
    };
    let scanner = "arn:aws:iam::ACCOUNT:role/avscan";
    let exempts_scanner = |statement: &serde_json::Value| {
        statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
            .as_array()
            .is_some_and(|arns| arns.iter().any(|arn| arn == scanner))
    };
    let reads = statement("NoReadExceptForClean");
    assert_eq!(reads["Effect"], "Deny");
    assert_eq!(reads["Principal"], "*");
    for action in ["s3:GetObject", "s3:GetObjectVersion"] {
        assert!(
            reads["Action"].as_array().unwrap().iter().any(|a| a == action),
            "{action}"
        );
    }
    // The value avscan writes for a clean object in GuardDuty mode is the one the policy opens on.
    assert_eq!(
        reads["Condition"]["StringNotEquals"]
            [format!("s3:ExistingObjectTag/{}", avscan_actors::tags::GUARDDUTY_STATUS)],
        avscan_actors::tags::guardduty_status(&avscan_actors::model::Verdict::Clean)
    );
    assert!(exempts_scanner(reads), "avscan could not read what it must scan");
    let tagging = statement("OnlyTheScannerWritesTheScanStatus");
    assert_eq!(tagging["Effect"], "Deny");
    assert!(tagging["Action"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "s3:PutObjectTagging"));
    assert!(exempts_scanner(tagging));
    let uploads = statement("NoUploadThatClaimsAScanStatus");
    assert_eq!(uploads["Effect"], "Deny");
    let keys = uploads["Condition"]["ForAnyValue:StringEquals"]["s3:RequestObjectTagKeys"]
        .as_array()
        .unwrap();
    for key in [avscan_actors::tags::GUARDDUTY_STATUS, avscan_actors::tags::STATUS] {
        assert!(keys.iter().any(|k| k == key), "an upload may claim {key}");
    }
    // The role it exempts is the one deploy/k8s/avscan.yaml binds to avscan's service account.
    let k8s = std::fs::read_to_string(Path::new(REPO).join("deploy/k8s/avscan.yaml")).unwrap();
    assert!(k8s.contains(scanner), "the Kubernetes example binds another role");
}
