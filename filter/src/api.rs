//! The provider APIs the filter meters, recognised by request path, and their error formats.

use crate::error::FilterError;

/// A metered provider API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI chat completions, `POST /v1/chat/completions`, and compatible servers.
    OpenAiChat,
    /// Azure OpenAI chat completions, `POST /openai/deployments/{name}/chat/completions`.
    AzureChat,
    /// OpenAI Responses API, `POST /v1/responses`.
    Responses,
    /// Anthropic Messages, `POST /v1/messages`.
    Anthropic,
    /// Gemini `generateContent` and `streamGenerateContent`.
    Gemini,
    /// OpenAI and Azure embeddings.
    Embeddings,
}

/// Facts the request path gives about a metered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The API.
    pub api: Api,
    /// Model named in the path (Gemini).
    pub path_model: Option<String>,
    /// Azure deployment named in the path.
    pub deployment: Option<String>,
    /// True when the path itself requests a stream (Gemini `streamGenerateContent`).
    pub path_stream: bool,
}

impl Route {
    fn new(api: Api) -> Route {
        Route {
            api,
            path_model: None,
            deployment: None,
            path_stream: false,
        }
    }
}

/// Returns the metered API of a POST to `path` (without its query), or `None`.
pub fn route(path: &str) -> Option<Route> {
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, operation) = rest.split_once('/')?;
        let api = match operation {
            "chat/completions" => Api::AzureChat,
            "embeddings" => Api::Embeddings,
            _ => return None,
        };
        let deployment = percent_decode(deployment);
        return Some(Route {
            deployment: Some(deployment),
            ..Route::new(api)
        });
    }
    if let Some((before, method)) = path.rsplit_once(':') {
        let model = before.rsplit_once("/models/").map(|(_, model)| model)?;
        let path_stream = match method {
            "generateContent" => false,
            "streamGenerateContent" => true,
            _ => return None,
        };
        let model = percent_decode(model);
        return Some(Route {
            path_model: Some(model),
            path_stream,
            ..Route::new(Api::Gemini)
        });
    }
    if path.ends_with("/chat/completions") {
        Some(Route::new(Api::OpenAiChat))
    } else if path.ends_with("/responses") {
        Some(Route::new(Api::Responses))
    } else if path.ends_with("/messages") {
        Some(Route::new(Api::Anthropic))
    } else if path.ends_with("/embeddings") {
        Some(Route::new(Api::Embeddings))
    } else {
        None
    }
}

/// Decodes `%XX` escapes; anything malformed is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (byte, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Api {
    /// Returns the JSON body of a local reply in this API's error format.
    pub fn error_body(self, error: &FilterError) -> String {
        let status = error.status();
        let message = error.message();
        let body = match self {
            Api::OpenAiChat | Api::AzureChat | Api::Responses | Api::Embeddings => {
                serde_json::json!({
                    "error": {
                        "message": message,
                        "type": error.openai_type(),
                        "param": null,
                        "code": error.code(),
                    }
                })
            }
            Api::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": anthropic_type(status), "message": message }
            }),
            Api::Gemini => serde_json::json!({
                "error": { "code": status, "message": message, "status": google_status(status) }
            }),
        };
        body.to_string()
    }

    /// Returns the SSE event that ends a stream with `error`, in this API's streaming format.
    ///
    /// `sequence_number` is the Responses API's event counter for the event.
    pub fn error_event(self, error: &FilterError, sequence_number: u64) -> String {
        match self {
            Api::OpenAiChat | Api::AzureChat | Api::Embeddings => {
                format!("data: {}\n\n", self.error_body(error))
            }
            Api::Responses => {
                let data = serde_json::json!({
                    "type": "error",
                    "code": error.code(),
                    "message": error.message(),
                    "param": null,
                    "sequence_number": sequence_number,
                });
                format!("event: error\ndata: {data}\n\n")
            }
            Api::Anthropic => format!("event: error\ndata: {}\n\n", self.error_body(error)),
            Api::Gemini => format!("data: {}\r\n\r\n", self.error_body(error)),
        }
    }

    /// Returns the request header the provider of this API authenticates with.
    pub fn credential_header(self) -> &'static str {
        match self {
            Api::OpenAiChat | Api::Responses | Api::Embeddings => "authorization",
            Api::AzureChat => "api-key",
            Api::Anthropic => "x-api-key",
            Api::Gemini => "x-goog-api-key",
        }
    }

    /// True for APIs whose prompts the filter counts with another provider's tokenizer, so the
    /// estimate gets a safety margin.
    pub fn estimates_prompt(self) -> bool {
        matches!(self, Api::Anthropic | Api::Gemini)
    }
}

fn anthropic_type(status: u32) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        404 | 405 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

fn google_status(status: u32) -> &'static str {
    match status {
        401 => "UNAUTHENTICATED",
        402 => "RESOURCE_EXHAUSTED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        400..=499 => "INVALID_ARGUMENT",
        _ => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn exceeded() -> FilterError {
        FilterError::BudgetExceeded {
            budget: "team".into(),
            window: None,
            limit_nano_usd: 10,
            remaining_nano_usd: 0,
            required_nano_usd: 5,
        }
    }

    #[test]
    fn chat_path() {
        assert_eq!(
            route("/v1/chat/completions").map(|r| r.api),
            Some(Api::OpenAiChat)
        );
    }

    #[test]
    fn azure_path_names_deployment() {
        let route = route("/openai/deployments/my%20gpt/chat/completions").unwrap();
        assert_eq!(route.api, Api::AzureChat);
        assert_eq!(route.deployment.as_deref(), Some("my gpt"));
    }

    #[test]
    fn azure_embeddings_path() {
        let route = route("/openai/deployments/emb/embeddings").unwrap();
        assert_eq!(route.api, Api::Embeddings);
    }

    #[test]
    fn gemini_stream_path_names_model() {
        let route = route("/v1beta/models/gemini-2.5-flash:streamGenerateContent").unwrap();
        assert_eq!(route.api, Api::Gemini);
        assert_eq!(route.path_model.as_deref(), Some("gemini-2.5-flash"));
        assert!(route.path_stream);
    }

    #[test]
    fn gemini_other_method_is_not_metered() {
        assert_eq!(route("/v1beta/models/gemini-2.5-flash:countTokens"), None);
    }

    #[test]
    fn other_paths() {
        assert_eq!(route("/v1/responses").map(|r| r.api), Some(Api::Responses));
        assert_eq!(route("/v1/messages").map(|r| r.api), Some(Api::Anthropic));
        assert_eq!(
            route("/v1/embeddings").map(|r| r.api),
            Some(Api::Embeddings)
        );
        assert_eq!(route("/v1/models"), None);
    }

    #[test]
    fn malformed_escape_is_kept() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn anthropic_error_shape() {
        let body: Value = serde_json::from_str(&Api::Anthropic.error_body(&exceeded())).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "billing_error");
    }

    #[test]
    fn gemini_error_shape() {
        let body: Value = serde_json::from_str(&Api::Gemini.error_body(&exceeded())).unwrap();
        assert_eq!(body["error"]["code"], 402);
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    }

    #[test]
    fn responses_error_event_has_sequence_number() {
        let event = Api::Responses.error_event(&exceeded(), 7);
        let data: Value =
            serde_json::from_str(event.lines().nth(1).unwrap().trim_start_matches("data: "))
                .unwrap();
        assert!(event.starts_with("event: error\n"));
        assert_eq!(data["sequence_number"], 7);
        assert_eq!(data["code"], "budget_exceeded");
    }

    #[test]
    fn gemini_error_event_uses_crlf() {
        assert!(Api::Gemini
            .error_event(&exceeded(), 0)
            .ends_with("\r\n\r\n"));
    }
}
