//! Envoy with the spendfuse filter, configured from the shipped `envoy/envoy.yaml`.

use super::paths;
use super::process::{free_port, Process};
use super::services::{returns_ok, START_TIMEOUT};
use crate::error::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Text of the shipped configuration that the harness replaces, each found exactly once.
const LISTENER_PORT: &str = "port_value: 10000";
const ADMIN_PORT: &str = "port_value: 9901";
const PROVIDER_PORT: &str = "port_value: 8080";
const SIDECAR_PORT: &str = "port_value: 8081";
const WASM_FILENAME: &str = "filename: target/wasm32-wasip1/release/spendfuse_filter.wasm";
/// The listener's address: every interface in the shipped file, loopback in tests.
const LISTENER_ADDRESS: &str = "address: 0.0.0.0";

/// YAML key whose block scalar holds the filter's JSON configuration.
const FILTER_CONFIG_KEY: &str = "value: |";

/// Loopback ports of one Envoy and of the services it forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvoyPorts {
    /// Port that takes client traffic.
    pub listener: u16,
    /// Port of Envoy's admin page.
    pub admin: u16,
    /// Port of the provider, the mock here.
    pub provider: u16,
    /// Port of the spendfuse sidecar.
    pub sidecar: u16,
}

/// Renders the test configuration from the shipped one: the listener bound to 127.0.0.1, the
/// four ports, the absolute wasm path and, when `filter_patch` is a JSON object, its keys set in the filter's configuration.
pub fn render_config(
    template: &str,
    ports: EnvoyPorts,
    wasm: &Path,
    filter_patch: Option<&Value>,
) -> Result<String> {
    let replacements = [
        (LISTENER_PORT, format!("port_value: {}", ports.listener)),
        (ADMIN_PORT, format!("port_value: {}", ports.admin)),
        (PROVIDER_PORT, format!("port_value: {}", ports.provider)),
        (SIDECAR_PORT, format!("port_value: {}", ports.sidecar)),
        (WASM_FILENAME, format!("filename: {}", wasm.display())),
        (LISTENER_ADDRESS, "address: 127.0.0.1".to_string()),
    ];
    let rendered = replace_each_once(template, &replacements)?;
    match filter_patch {
        None => Ok(rendered),
        Some(patch) => patch_filter_config(&rendered, patch),
    }
}

/// Replaces each needle, which must occur exactly once, in one pass over the original text,
/// so that a new port number can never be matched by a later needle.
fn replace_each_once(text: &str, replacements: &[(&str, String)]) -> Result<String> {
    let mut spans = Vec::new();
    for (needle, replacement) in replacements {
        let found: Vec<usize> = text.match_indices(needle).map(|(at, _)| at).collect();
        if found.len() != 1 {
            return Err(Error::Invalid(format!(
                "envoy/envoy.yaml must contain `{needle}` exactly once, found {} times: \
                 keep the shipped ports so the harness can replace them",
                found.len()
            )));
        }
        spans.extend(
            found
                .into_iter()
                .map(|at| (at, needle.len(), replacement.as_str())),
        );
    }
    spans.sort_unstable_by_key(|(at, _, _)| *at);
    let mut rendered = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, length, replacement) in spans {
        rendered.push_str(&text[copied..at]);
        rendered.push_str(replacement);
        copied = at + length;
    }
    rendered.push_str(&text[copied..]);
    Ok(rendered)
}

/// Sets the keys of `patch` in the JSON of the one `value: |` block scalar.
fn patch_filter_config(yaml: &str, patch: &Value) -> Result<String> {
    let Some(patch) = patch.as_object() else {
        let detail = format!("the filter configuration patch must be a JSON object, got {patch}");
        return Err(Error::Invalid(detail));
    };
    let lines: Vec<&str> = yaml.lines().collect();
    let block = filter_config_block(&lines)?;

    let mut config = parse_filter_config(&lines[block.clone()].join("\n"))?;
    if let Some(object) = config.as_object_mut() {
        for (key, value) in patch {
            object.insert(key.clone(), value.clone());
        }
    }
    let pretty = serde_json::to_string_pretty(&config).map_err(|error| {
        Error::Invalid(format!("cannot write the filter configuration: {error}"))
    })?;

    let pad = " ".repeat(indentation(lines[block.start]));
    let mut output: Vec<String> = Vec::with_capacity(lines.len());
    output.extend(lines[..block.start].iter().map(|line| (*line).to_owned()));
    output.extend(pretty.lines().map(|line| format!("{pad}{line}")));
    output.extend(lines[block.end..].iter().map(|line| (*line).to_owned()));
    Ok(output.join("\n") + "\n")
}

/// Returns the range of lines of the one `value: |` block: the lines after the key that are
/// blank or indented deeper than it.
fn filter_config_block(lines: &[&str]) -> Result<std::ops::Range<usize>> {
    let keys: Vec<usize> = (0..lines.len())
        .filter(|index| lines[*index].trim_end().ends_with(FILTER_CONFIG_KEY))
        .collect();
    let [key_line] = keys.as_slice() else {
        return Err(Error::Invalid(format!(
            "envoy/envoy.yaml must have one `{FILTER_CONFIG_KEY}` block with the filter's JSON, \
             found {}",
            keys.len()
        )));
    };
    let key_indent = indentation(lines[*key_line]);
    let start = key_line + 1;
    let end = (start..lines.len())
        .find(|index| !lines[*index].trim().is_empty() && indentation(lines[*index]) <= key_indent)
        .unwrap_or(lines.len());
    if start == end {
        return Err(Error::Invalid(format!(
            "the `{FILTER_CONFIG_KEY}` block in envoy/envoy.yaml is empty"
        )));
    }
    Ok(start..end)
}

fn parse_filter_config(block: &str) -> Result<Value> {
    let config: Value = serde_json::from_str(block).map_err(|error| {
        Error::Invalid(format!(
            "the filter configuration in envoy/envoy.yaml is not JSON: {error}"
        ))
    })?;
    if !config.is_object() {
        let detail = "the filter configuration in envoy/envoy.yaml is not a JSON object";
        return Err(Error::Invalid(detail.into()));
    }
    Ok(config)
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A running Envoy with the filter loaded.
#[derive(Debug)]
pub struct Envoy {
    process: Process,
    ports: EnvoyPorts,
    config: PathBuf,
}

impl Envoy {
    /// Renders the configuration into `dir`, starts Envoy and waits until its admin page reports
    /// ready and a request through the listener gets a response.
    pub async fn start(
        dir: &Path,
        provider_port: u16,
        sidecar_port: u16,
        filter_patch: Option<&Value>,
        http: &reqwest::Client,
    ) -> Result<Envoy> {
        let bin = paths::envoy_bin()?;
        let ports = EnvoyPorts {
            listener: free_port()?,
            admin: free_port()?,
            provider: provider_port,
            sidecar: sidecar_port,
        };
        let config = write_config(dir, ports, filter_patch)?;

        let mut command = Command::new(bin);
        command
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--log-level", "warn"])
            // Envoys that run at the same time listen on different admin ports, so the port
            // makes a unique base id. Hot restart is off, so no file stays in /dev/shm.
            .args([
                "--base-id",
                &ports.admin.to_string(),
                "--disable-hot-restart",
            ]);
        let mut process = Process::spawn("envoy", command, &dir.join("envoy.log"))?;

        let ready_url = format!("http://127.0.0.1:{}/ready", ports.admin);
        let listener_url = format!("http://127.0.0.1:{}/", ports.listener);
        let probe = || async {
            returns_ok(http, &ready_url).await && gets_response(http, &listener_url).await
        };
        process.wait_ready(START_TIMEOUT, probe).await?;
        Ok(Envoy {
            process,
            ports,
            config,
        })
    }

    /// Returns the URL of `path` through the listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.listener)
    }

    /// Returns the URL of `path` on the admin page.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.admin)
    }

    /// Returns the ports in use.
    pub fn ports(&self) -> EnvoyPorts {
        self.ports
    }

    /// Returns the rendered configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Returns the process, for its log.
    pub fn process(&self) -> &Process {
        &self.process
    }
}

/// Renders the test configuration into `dir/envoy.yaml` and returns its path.
fn write_config(dir: &Path, ports: EnvoyPorts, filter_patch: Option<&Value>) -> Result<PathBuf> {
    let wasm = paths::wasm_module()?;
    let template_path = paths::envoy_config_template()?;
    let template = std::fs::read_to_string(&template_path)
        .map_err(|error| Error::io(format!("reading {}", template_path.display()), error))?;
    let rendered = render_config(&template, ports, &wasm, filter_patch)?;
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, rendered)
        .map_err(|error| Error::io(format!("writing {}", config.display()), error))?;
    Ok(config)
}

async fn gets_response(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PORTS: EnvoyPorts = EnvoyPorts {
        listener: 30000,
        admin: 30001,
        provider: 30002,
        sidecar: 30003,
    };

    fn shipped() -> String {
        std::fs::read_to_string(paths::envoy_config_template().unwrap()).unwrap()
    }

    #[test]
    fn shipped_config_renders_every_port() {
        let rendered =
            render_config(&shipped(), PORTS, Path::new("/abs/filter.wasm"), None).unwrap();
        for port in [30000, 30001, 30002, 30003] {
            assert!(
                rendered.contains(&format!("port_value: {port}\n")),
                "port {port} missing"
            );
        }
        assert!(rendered.contains("filename: /abs/filter.wasm"));
        assert!(!rendered.contains("port_value: 8080"));
    }

    #[test]
    fn port_equal_to_a_later_needle_stays() {
        let ports = EnvoyPorts {
            listener: 8080,
            admin: 8081,
            provider: 9901,
            sidecar: 10000,
        };
        let rendered = render_config(&shipped(), ports, Path::new("/f.wasm"), None).unwrap();
        let listener = rendered.find("port_value: 8080").unwrap();
        let admin = rendered.find("port_value: 8081").unwrap();
        assert!(admin < listener, "admin comes first in the file");
    }

    #[test]
    fn missing_needle_is_an_error() {
        let error = render_config("admin: {}\n", PORTS, Path::new("/f.wasm"), None).unwrap_err();
        assert!(error.to_string().contains("port_value: 10000"), "{error}");
    }

    #[test]
    fn patch_sets_filter_keys_and_keeps_others() {
        let patch = json!({"failureMode": "failOpen", "sidecarTimeout": "1s"});
        let rendered =
            render_config(&shipped(), PORTS, Path::new("/f.wasm"), Some(&patch)).unwrap();
        let start = rendered.find(FILTER_CONFIG_KEY).unwrap() + FILTER_CONFIG_KEY.len();
        let after = &rendered[start..];
        let end = after.find("vm_config:").unwrap();
        let config: Value = serde_json::from_str(&after[..end]).unwrap();
        assert_eq!(config["failureMode"], "failOpen");
        assert_eq!(config["sidecarTimeout"], "1s");
        assert_eq!(config["minOutputTokens"], 16);
    }

    #[test]
    fn patched_yaml_keeps_lines_after_the_block() {
        let patch = json!({"failureMode": "failOpen"});
        let plain = render_config(&shipped(), PORTS, Path::new("/f.wasm"), None).unwrap();
        let patched = render_config(&shipped(), PORTS, Path::new("/f.wasm"), Some(&patch)).unwrap();
        let tail = |text: &str| text[text.find("vm_config:").unwrap()..].to_owned();
        assert_eq!(tail(&plain), tail(&patched));
    }
}
