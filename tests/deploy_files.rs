//! The deployment files (`deploy/`) against the real configuration loader: the hub configuration the
//! compose stack mounts and the Kubernetes ConfigMap carries are one text, it validates with the
//! environment each deployment gives the hub, every `YILIAN_*` variable the deployment files and the
//! operations guide name is one the hub reads, and the image, the load balancer and the manifests
//! agree on the ports. (No container runtime is needed: the files are read as text.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use yilian_config::{Config, DEMO_TOML};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    let p = repo().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The block scalar (`key: |`) that starts at the line `header` (trimmed), without its indentation.
fn block_scalar(yaml: &str, header: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != header);
    let head = lines.next().unwrap_or_else(|| panic!("no {header:?}"));
    let indent = head.len() - head.trim_start().len() + 2;
    let mut out: Vec<&str> = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            out.push("");
        } else if line.len() - line.trim_start().len() >= indent {
            out.push(&line[indent..]);
        } else {
            break;
        }
    }
    while out.last() == Some(&"") {
        out.pop();
    }
    format!("{}\n", out.join("\n"))
}

/// The `environment:` map of the hub service template in compose.yaml (`KEY: value` lines).
fn compose_env() -> BTreeMap<String, String> {
    let compose = read("deploy/compose.yaml");
    let mut lines = compose
        .lines()
        .skip_while(|l| !l.starts_with("x-hub:"))
        .skip_while(|l| l.trim() != "environment:");
    lines.next().expect("x-hub has an environment");
    lines
        .take_while(|l| l.starts_with("    ") || l.trim().starts_with('#'))
        .filter(|l| !l.trim().starts_with('#'))
        .map(|l| {
            let (k, v) = l.trim().split_once(':').unwrap_or_else(|| panic!("{l}"));
            (k.to_string(), v.trim().trim_matches('"').to_string())
        })
        .collect()
}

/// The Deployment's `- { name: K, value: V }` entries, and the names of those taken from a Secret.
fn k8s_env() -> (BTreeMap<String, String>, Vec<String>) {
    let deployment = read("deploy/k8s/deployment.yaml");
    let mut plain = BTreeMap::new();
    let mut from_secret = Vec::new();
    for line in deployment.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("- { name: YILIAN_") {
            let (name, value) = rest
                .split_once(", value: ")
                .unwrap_or_else(|| panic!("{line}"));
            let value = value.trim_end_matches('}').trim().trim_matches('"');
            plain.insert(format!("YILIAN_{name}"), value.to_string());
        } else if let Some(name) = line.strip_prefix("- name: YILIAN_") {
            from_secret.push(format!("YILIAN_{name}"));
        }
    }
    (plain, from_secret)
}

/// Loads `toml` the way `Config::load` does, with `env` as the environment; every `*_FILE` variable
/// points at a file holding a secret of the right shape.
fn load_with(toml: &str, origin: &str, mut env: BTreeMap<String, String>) -> Config {
    let dir = tempfile::tempdir().unwrap();
    for (k, v) in env.iter_mut().filter(|(k, _)| k.ends_with("_FILE")) {
        let file = dir.path().join(k.to_lowercase());
        std::fs::write(&file, "0123456789abcdef0123456789abcdef\n").unwrap();
        *v = file.display().to_string();
    }
    let mut c = Config::from_toml(toml, origin).unwrap_or_else(|e| panic!("{e}"));
    c.finish(|k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("{origin} with its environment: {e}"));
    c
}

#[test]
fn the_configmap_carries_the_compose_configuration() {
    let toml = read("deploy/compose/yilian.toml");
    let configmap = read("deploy/k8s/configmap.yaml");
    assert_eq!(
        block_scalar(&configmap, "yilian.toml: |"),
        toml,
        "deploy/k8s/configmap.yaml must embed deploy/compose/yilian.toml unchanged"
    );
}

#[test]
fn the_compose_hubs_configuration_validates_with_their_environment() {
    let toml = read("deploy/compose/yilian.toml");
    let mut env = compose_env();
    // deploy/compose/init-secrets.sh writes the URL (with the password) into secrets/hub.env.
    assert!(read("deploy/compose/init-secrets.sh").contains("YILIAN_DATABASE_URL=postgres://"));
    env.insert(
        "YILIAN_DATABASE_URL".into(),
        "postgres://yilian:pw@postgres:5432/yilian".into(),
    );
    let c = load_with(&toml, "deploy/compose/yilian.toml", env);
    assert!(c.database.url.starts_with("postgres://"));
    let s3 = c.blobs.s3_location().expect("blobs on S3");
    assert_eq!(
        (s3.bucket.as_str(), s3.prefix.as_str()),
        ("yilian-blobs", "alliance")
    );
    // The bucket the mc job creates is the one the hubs use.
    assert!(read("deploy/compose.yaml").contains("mc mb --ignore-existing local/yilian-blobs"));
    assert_eq!(c.blobs.endpoint.as_deref(), Some("http://minio:9000"));
    assert!(c.blobs.secret_access_key.is_some());
    assert_eq!(c.keys.dir, PathBuf::from("/var/lib/yilian/keys"));
    assert!(c.keys.require_passphrase);

    // Without the environment the file alone is refused: the secrets are not in it.
    let mut bare = Config::from_toml(&toml, "deploy/compose/yilian.toml").unwrap();
    let e = bare.finish(|_| None).unwrap_err().to_string();
    assert!(e.starts_with("alliance.patient_key_secret"), "{e}");
}

#[test]
fn the_kubernetes_configuration_validates_with_the_deployments_environment() {
    let configmap = read("deploy/k8s/configmap.yaml");
    let toml = block_scalar(&configmap, "yilian.toml: |");
    let (mut env, from_secret) = k8s_env();
    assert_eq!(
        from_secret,
        ["YILIAN_DATABASE_URL", "YILIAN_BLOBS_ACCESS_KEY_ID"],
        "values taken from the Secret"
    );
    env.insert(
        "YILIAN_DATABASE_URL".into(),
        "postgres://yilian:pw@db:5432/yilian".into(),
    );
    env.insert("YILIAN_BLOBS_ACCESS_KEY_ID".into(), "yilian-hub".into());
    let c = load_with(&toml, "deploy/k8s/configmap.yaml", env);
    assert!(
        c.blobs
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("https://"))
    );
    assert!(!c.blobs.allow_http);
    // The Secret's keys the Deployment reads are the ones the example Secret defines.
    let secret = read("deploy/k8s/examples/secret.yaml");
    let deployment = read("deploy/k8s/deployment.yaml");
    for key in [
        "database-url",
        "s3-access-key-id",
        "s3-secret-access-key",
        "patient-key-secret",
    ] {
        assert!(secret.contains(&format!("  {key}: ")), "secret lacks {key}");
        assert!(deployment.contains(key), "deployment does not read {key}");
    }
}

/// Every `YILIAN_…` variable name in `text`.
fn yilian_vars(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("YILIAN_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // `YILIAN_*` (the family, in prose) is not a name.
        let name = name.trim_end_matches('_');
        if name != "YILIAN" {
            out.insert(name.to_string());
        }
        rest = &rest[at + "YILIAN_".len()..];
    }
    out
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "secrets") {
                files_under(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_yilian_variable_the_deployment_names_is_read_by_the_hub() {
    // The names the loader asks the environment for, as it asks them.
    let asked = RefCell::new(BTreeSet::new());
    let mut c = Config::from_toml(DEMO_TOML, "demo").unwrap();
    c.finish(|k| {
        asked.borrow_mut().insert(k.to_string());
        None
    })
    .unwrap();
    let mut known = asked.into_inner();
    assert!(known.contains("YILIAN_DATABASE_URL") && known.contains("YILIAN_KEYS_DIR"));
    // The binary's own: the configuration path (clap `env`) and the log filter and format.
    let main = read("crates/cli/src/main.rs");
    for own in ["YILIAN_CONFIG", "YILIAN_LOG", "YILIAN_LOG_FORMAT"] {
        assert!(main.contains(&format!("\"{own}\"")), "main.rs reads {own}");
        known.insert(own.to_string());
    }

    let mut files = Vec::new();
    files_under(&repo().join("deploy"), &mut files);
    files.push(repo().join("docs/operations.md"));
    let mut unknown = Vec::new();
    let mut seen = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for name in yilian_vars(&text) {
            seen += 1;
            if !known.contains(&name) {
                unknown.push(format!("{}: {name}", f.display()));
            }
        }
    }
    assert!(seen > 20, "the deployment files name the hub's variables");
    assert!(
        unknown.is_empty(),
        "variables the hub does not read: {unknown:?}"
    );
}

#[test]
fn the_image_the_balancer_and_the_manifests_agree_on_the_ports() {
    let containerfile = read("deploy/Containerfile");
    let haproxy = read("deploy/compose/haproxy.cfg");
    let compose = read("deploy/compose.yaml");
    let deployment = read("deploy/k8s/deployment.yaml");
    let expose = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    for var in ["YILIAN_HTTP_ADDR", "YILIAN_DICOM_ADDR", "YILIAN_MLLP_ADDR"] {
        let addr = containerfile
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{var}=")))
            .unwrap_or_else(|| panic!("the image sets {var}"));
        let port = addr.rsplit_once(':').unwrap().1;
        assert!(addr.starts_with("0.0.0.0:"), "{var}={addr}");
        assert!(
            expose.split_whitespace().any(|p| p == port),
            "EXPOSE {port}"
        );
        for hub in ["hub-1", "hub-2"] {
            assert!(
                haproxy.contains(&format!("{hub}:{port}")),
                "haproxy.cfg sends to {hub}:{port}"
            );
        }
        assert!(
            haproxy.contains(&format!("bind :{port}")),
            "haproxy binds {port}"
        );
        assert!(
            compose.contains(&format!("\"{port}:{port}\"")),
            "compose publishes {port}"
        );
        assert!(
            deployment.contains(&format!("containerPort: {port} ")),
            "the Deployment names port {port}"
        );
    }
    // Health: the image, the balancer and the probes ask /readyz.
    assert!(containerfile.contains("/readyz") && haproxy.contains("GET /readyz"));
    assert!(deployment.contains("path: /readyz") && deployment.contains("path: /healthz"));
}
