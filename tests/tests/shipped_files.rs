//! The deployment files that no test here can run (Docker has no engine on the test machine)
//! parse, and every file they name exists.

use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

fn dockerfile_stages() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    text.lines()
        .filter(|line| line.starts_with("FROM "))
        .filter_map(|line| line.split(" AS ").nth(1))
        .map(|stage| stage.trim().to_string())
        .collect()
}

fn compose_services() -> serde_yaml_ng::Mapping {
    let compose = yaml("docker-compose.yml");
    compose["services"]
        .as_mapping()
        .expect("services is a mapping")
        .clone()
}

#[test]
fn envoy_config_is_yaml() {
    assert!(yaml("envoy/envoy.yaml")["static_resources"].is_mapping());
}

#[test]
fn compose_build_targets_exist() {
    let stages = dockerfile_stages();
    for (name, service) in compose_services() {
        if let Some(target) = service["build"]["target"].as_str() {
            assert!(
                stages.contains(&target.to_string()),
                "{name:?} builds missing stage {target}"
            );
        }
    }
}

#[test]
fn compose_secret_files_exist() {
    let compose = yaml("docker-compose.yml");
    let secrets = compose["secrets"]
        .as_mapping()
        .expect("secrets is a mapping");
    for (name, secret) in secrets {
        let file = secret["file"].as_str().expect("secret has a file");
        assert!(
            repo().join(file).is_file(),
            "secret {name:?} names missing {file}"
        );
    }
}

#[test]
fn compose_config_paths_are_shipped() {
    let services = compose_services();
    let environment = &services["sidecar"]["environment"];
    for variable in ["SPENDFUSE_PRICING", "SPENDFUSE_BUDGETS"] {
        let path = environment[variable].as_str().expect("variable is set");
        let shipped = path
            .strip_prefix("/srv/spendfuse/")
            .expect("path is under the image's workdir");
        assert!(
            repo().join(shipped).is_file(),
            "{variable} names missing {shipped}"
        );
    }
}

#[test]
fn dockerfile_copies_wasm_where_envoy_loads_it() {
    let envoy = std::fs::read_to_string(repo().join("envoy/envoy.yaml")).expect("envoy.yaml");
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let wasm = "target/wasm32-wasip1/release/spendfuse_filter.wasm";
    assert!(envoy.contains(&format!("filename: {wasm}")));
    assert!(dockerfile.contains(&format!("./{wasm}")));
}

#[test]
fn compose_services_share_envoys_network() {
    for (name, service) in compose_services() {
        if name.as_str() == Some("envoy") {
            continue;
        }
        assert_eq!(
            service["network_mode"].as_str(),
            Some("service:envoy"),
            "service {name:?}"
        );
    }
}
