//! OpenAI embeddings, `POST /v1/embeddings`, and Azure's deployment variant.
//!
//! The response is a `list` of `embedding` objects with `usage: {prompt_tokens, total_tokens}`.
//! Vectors are deterministic numbers, as floats or, with `encoding_format: "base64"` (the
//! default of OpenAI's Python client), as base64 of little-endian f32 values.

use super::chat::{error_body, invalid_request, status_error};
use super::events::to_json;
use super::prompt::embedding_input_tokens;
use super::records::update;
use super::{azure, error_response, json_response, set_headers};
use super::{Incoming, MockState, Provider, Rng};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// Vector length of `text-embedding-3-large`.
const LARGE_DIMENSIONS: u64 = 3072;

/// Vector length of the other embedding models.
const DEFAULT_DIMENSIONS: u64 = 1536;

pub(super) async fn create_embeddings(
    State(state): State<Arc<MockState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = state.receive(Provider::Embeddings, &uri, headers, &body);
    let mut response = serve(incoming, None);
    let request_id = format!("req_{}", Rng::new().hex(32));
    set_headers(
        response.headers_mut(),
        &[
            ("x-request-id", request_id),
            ("openai-version", "2020-10-01".to_owned()),
        ],
    );
    response
}

/// Serves an embeddings request. `deployment` is Azure's deployment name, which sets the
/// model when the body names none, and selects Azure's error format.
pub(super) fn serve(incoming: Incoming, deployment: Option<&str>) -> Response {
    let record = &incoming.record;
    let invalid = |message: String, param: Option<&'static str>| {
        let body = error_body(invalid_request(message, param, None));
        error_response(record, StatusCode::BAD_REQUEST, &body)
    };
    let knobs = match &incoming.knobs {
        Ok(knobs) => *knobs,
        Err(message) => return invalid(message.clone(), None),
    };
    let body = match &incoming.parsed {
        Ok(body) => body,
        Err(error) => {
            return invalid(
                format!("The request body is not valid JSON ({error})."),
                None,
            )
        }
    };

    let model = body
        .get("model")
        .and_then(Value::as_str)
        .or(deployment)
        .unwrap_or("");
    if let Some(status) = knobs.status {
        return match deployment {
            Some(_) => error_response(record, status, &azure::status_error(status)),
            None => error_response(record, status, &error_body(status_error(status, model))),
        };
    }
    if model.is_empty() {
        return invalid("You must provide a model parameter.".into(), Some("model"));
    }

    let Some(inputs) = input_count(body.get("input")) else {
        let message = "'input' must be a non-empty string or array of strings or token ids.";
        return invalid(message.into(), Some("input"));
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            let message =
                format!("Invalid 'encoding_format': expected float or base64, got {other}.");
            return invalid(message, Some("encoding_format"));
        }
    };
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => default_dimensions(model),
        Some(value) => match value.as_u64().filter(|number| *number >= 1) {
            Some(number) => number,
            None => {
                let message =
                    format!("Invalid 'dimensions': expected a positive integer, got {value}.");
                return invalid(message, Some("dimensions"));
            }
        },
    };

    let prompt_tokens = body.get("input").map_or(0, embedding_input_tokens);
    update(record, |record| record.prompt_tokens = prompt_tokens);
    let data = (0..inputs)
        .map(|index| {
            let vector = vector(index, dimensions);
            EmbeddingObject {
                object: "embedding",
                index,
                embedding: if base64 {
                    Vector::Base64(base64_f32(&vector))
                } else {
                    Vector::Floats(vector)
                },
            }
        })
        .collect();
    let list = EmbeddingList {
        object: "list",
        data,
        model,
        usage: (!knobs.no_usage).then_some(EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        }),
    };
    let json = to_json(&list);
    json_response(
        record,
        StatusCode::OK,
        json,
        &incoming.headers,
        knobs.force_gzip,
    )
}

/// The response, in the API's field order.
#[derive(Debug, Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingObject>,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<EmbeddingUsage>,
}

#[derive(Debug, Serialize)]
struct EmbeddingObject {
    object: &'static str,
    index: u64,
    embedding: Vector,
}

/// A vector as floats, or as base64 of little-endian f32 values.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// Returns how many vectors `input` requests, or `None` when it is empty or malformed.
fn input_count(input: Option<&Value>) -> Option<u64> {
    match input? {
        Value::String(text) if !text.is_empty() => Some(1),
        Value::Array(items) if !items.is_empty() => {
            if items.iter().all(Value::is_number) {
                Some(1)
            } else if items.iter().all(|item| item.is_string() || item.is_array()) {
                Some(items.len() as u64)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn default_dimensions(model: &str) -> u64 {
    if model.contains("3-large") {
        LARGE_DIMENSIONS
    } else {
        DEFAULT_DIMENSIONS
    }
}

/// Returns a deterministic vector of `dimensions` values in [-0.1, 0.1) for input `index`.
fn vector(index: u64, dimensions: u64) -> Vec<f32> {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 20_000) as f32 / 100_000.0 - 0.1
        })
        .collect()
}

/// Encodes `values` as standard base64 (with padding) of their little-endian bytes.
fn base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let padded = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let bits = u32::from_be_bytes([0, padded[0], padded[1], padded[2]]);
        for position in 0..4 {
            if position <= group.len() {
                let sextet = (bits >> (18 - 6 * position)) & 0x3F;
                text.push(ALPHABET[sextet as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_of_one_float() {
        // 1.0f32 is 00 00 80 3F in little-endian order.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
    }

    #[test]
    fn input_counts() {
        assert_eq!(input_count(Some(&json!("hi"))), Some(1));
        assert_eq!(input_count(Some(&json!(["a", "b"]))), Some(2));
        assert_eq!(input_count(Some(&json!([1, 2, 3]))), Some(1));
        assert_eq!(input_count(Some(&json!([[1], [2]]))), Some(2));
        assert_eq!(input_count(Some(&json!([]))), None);
        assert_eq!(input_count(Some(&json!(""))), None);
        assert_eq!(input_count(None), None);
    }

    #[test]
    fn vectors_are_deterministic() {
        assert_eq!(vector(3, 8), vector(3, 8));
        assert_ne!(vector(3, 8), vector(4, 8));
    }
}
