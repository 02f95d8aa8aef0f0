//! Thin wrappers over the proxy-wasm host calls that return empty values on host errors.
//!
//! The SDK's trait helpers unwrap host errors, which would kill the VM for every later request
//! on the worker. These wrappers log the error at debug and return an empty value instead.
//! NOTE: the SDK (0.2.5) still panics on a status the ABI does not define for a call; Envoy
//! 1.40 was not seen to return one.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Returns one header of `map`, or `None` when it is absent or the host failed.
pub fn header(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value(map, name).unwrap_or_else(|status| {
        log::debug!("reading header {name} failed: {status:?}");
        None
    })
}

/// Returns every header of `map`.
pub fn headers(map: MapType) -> Vec<(String, String)> {
    hostcalls::get_map(map).unwrap_or_else(|status| {
        log::debug!("reading headers failed: {status:?}");
        Vec::new()
    })
}

/// Sets (or with `None` removes) a header of `map`.
pub fn set_header(map: MapType, name: &str, value: Option<&str>) {
    if let Err(status) = hostcalls::set_map_value(map, name, value) {
        log::debug!("setting header {name} failed: {status:?}");
    }
}

/// Returns the first `size` bytes of a buffer.
pub fn buffer(buffer: BufferType, size: usize) -> Vec<u8> {
    match hostcalls::get_buffer(buffer, 0, size) {
        Ok(bytes) => bytes.unwrap_or_default(),
        Err(status) => {
            log::debug!("reading buffer failed: {status:?}");
            Vec::new()
        }
    }
}

/// Replaces the first `size` bytes of a buffer with `bytes`.
pub fn replace_buffer(buffer: BufferType, size: usize, bytes: &[u8]) {
    if let Err(status) = hostcalls::set_buffer(buffer, 0, size, bytes) {
        log::debug!("replacing buffer failed: {status:?}");
    }
}

/// Answers the client with a JSON error `body`; the request goes no further.
pub fn send_error(status: u32, body: &str) {
    let headers = vec![("content-type", "application/json")];
    if let Err(error) = hostcalls::send_http_response(status, headers, Some(body.as_bytes())) {
        log::warn!("sending the local reply failed: {error:?}");
    }
}

/// Sends a JSON POST to the sidecar. Its response arrives in `on_http_call_response`.
pub fn post_json(
    cluster: &str,
    authority: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<u32, Status> {
    let headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/json"),
    ];
    hostcalls::dispatch_http_call(cluster, headers, Some(body), Vec::new(), timeout)
}

/// Returns the status of the callout response being handled, or `None` when the call timed
/// out or failed.
pub fn call_status() -> Option<u32> {
    header(MapType::HttpCallResponseHeaders, ":status").and_then(|s| s.parse().ok())
}

/// Returns the current time as milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let now = hostcalls::get_current_time().unwrap_or(UNIX_EPOCH);
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
