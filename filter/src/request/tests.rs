use super::*;
use crate::api::route;
use serde_json::json;

fn options() -> ParseOptions {
    let mut azure_deployments = BTreeMap::new();
    azure_deployments.insert("prod-mini".to_string(), "gpt-4o-mini".to_string());
    ParseOptions {
        image_tokens: 1105,
        estimate_margin_percent: 25,
        azure_deployments,
    }
}

fn parse_at(path: &str, body: Value) -> Result<LlmRequest, FilterError> {
    let route = route(path).expect("metered path");
    LlmRequest::parse(&route, body.to_string().as_bytes(), &options())
}

fn chat(extra: Value) -> Result<LlmRequest, FilterError> {
    let mut body =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    parse_at("/v1/chat/completions", body)
}

fn forwarded(request: &LlmRequest, output_tokens: u64) -> Value {
    serde_json::from_slice(&request.forwarded_body(output_tokens)).unwrap()
}

#[test]
fn invalid_json_is_rejected() {
    let route = route("/v1/chat/completions").unwrap();
    let error = LlmRequest::parse(&route, b"{not json", &options()).unwrap_err();
    assert!(matches!(error, FilterError::InvalidJson { .. }));
}

#[test]
fn missing_model_is_rejected() {
    let error = parse_at("/v1/chat/completions", json!({"messages": []})).unwrap_err();
    assert_eq!(
        error,
        FilterError::MissingField {
            field: "model",
            expected: "a model name"
        }
    );
}

#[test]
fn non_object_body_is_rejected() {
    let error = parse_at("/v1/chat/completions", json!([1, 2])).unwrap_err();
    assert!(matches!(error, FilterError::InvalidJson { .. }));
}

#[test]
fn negative_max_tokens_is_rejected() {
    let error = chat(json!({"max_tokens": -1})).unwrap_err();
    assert!(matches!(
        error,
        FilterError::InvalidField {
            field: "max_tokens",
            ..
        }
    ));
}

#[test]
fn zero_n_is_rejected() {
    assert!(chat(json!({"n": 0})).is_err());
}

#[test]
fn smaller_of_both_limits_wins() {
    let request = chat(json!({"max_tokens": 50, "max_completion_tokens": 30})).unwrap();
    assert_eq!(request.max_output_tokens, Some(30));
}

#[test]
fn chat_gets_default_limit_field() {
    let body = forwarded(&chat(json!({})).unwrap(), 4096);
    assert_eq!(body["max_completion_tokens"], 4096);
    assert!(body.get("max_tokens").is_none());
}

#[test]
fn chat_keeps_clients_field() {
    let body = forwarded(&chat(json!({"max_tokens": 500})).unwrap(), 40);
    assert_eq!(body["max_tokens"], 40);
    assert!(body.get("max_completion_tokens").is_none());
}

#[test]
fn chat_stream_gets_include_usage() {
    let request = chat(json!({"stream": true})).unwrap();
    assert!(!request.client_wants_usage);
    assert_eq!(
        forwarded(&request, 10)["stream_options"]["include_usage"],
        true
    );
}

#[test]
fn client_usage_request_is_seen() {
    let request = chat(json!({"stream": true, "stream_options": {"include_usage": true}})).unwrap();
    assert!(request.client_wants_usage);
}

#[test]
fn azure_model_comes_from_deployment_map() {
    let body = json!({"messages": [{"role": "user", "content": "Hi"}]});
    let request = parse_at("/openai/deployments/prod-mini/chat/completions", body).unwrap();
    assert_eq!(request.model, "gpt-4o-mini");
}

#[test]
fn unmapped_azure_deployment_is_rejected() {
    let body = json!({"messages": []});
    let error = parse_at("/openai/deployments/other/chat/completions", body).unwrap_err();
    assert_eq!(
        error,
        FilterError::UnknownDeployment {
            deployment: "other".into()
        }
    );
}

#[test]
fn responses_limit_field_is_max_output_tokens() {
    let body = json!({"model": "gpt-5", "input": "Hi", "instructions": "Be brief."});
    let request = parse_at("/v1/responses", body).unwrap();
    assert_eq!(forwarded(&request, 77)["max_output_tokens"], 77);
    assert!(forwarded(&request, 77).get("stream_options").is_none());
}

#[test]
fn responses_counts_instructions_and_input() {
    let short = parse_at("/v1/responses", json!({"model": "gpt-5", "input": "Hi"})).unwrap();
    let long = parse_at(
        "/v1/responses",
        json!({"model": "gpt-5", "input": "Hi", "instructions": "Be brief."}),
    )
    .unwrap();
    assert!(long.prompt_tokens > short.prompt_tokens);
}

#[test]
fn responses_input_items_are_counted() {
    let body = json!({"model": "gpt-5", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "one two three"}]},
        {"type": "function_call_output", "call_id": "c1", "output": "{\"ok\":true}"}
    ]});
    assert!(parse_at("/v1/responses", body).unwrap().prompt_tokens > 10);
}

#[test]
fn anthropic_requires_max_tokens() {
    let body =
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]});
    let error = parse_at("/v1/messages", body).unwrap_err();
    assert_eq!(
        error,
        FilterError::MissingField {
            field: "max_tokens",
            expected: "a positive integer"
        }
    );
}

#[test]
fn anthropic_estimate_gets_margin() {
    let text = "word ".repeat(400);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": text}]});
    let request = parse_at("/v1/messages", body).unwrap();
    let plain = REPLY_PRIMING
        + tokens::content_tokens(Encoding::O200kBase, &json!("Be brief."), 0)
        + tokens::message_tokens(Encoding::O200kBase, "user", &text);
    assert_eq!(request.prompt_tokens, plain + (plain * 25).div_ceil(100));
}

const REPLY_PRIMING: u64 = tokens::REPLY_PRIMING_TOKENS;

#[test]
fn gemini_model_and_stream_come_from_path() {
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]});
    let request = parse_at(
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        body,
    )
    .unwrap();
    assert_eq!(request.model, "gemini-2.5-flash");
    assert!(request.stream);
}

#[test]
fn gemini_limit_is_written_into_generation_config() {
    let body = json!({"contents": [{"parts": [{"text": "Hi"}]}], "generationConfig": {"temperature": 0.5}});
    let request = parse_at("/v1beta/models/gemini-2.5-flash:generateContent", body).unwrap();
    let forwarded = forwarded(&request, 64);
    assert_eq!(forwarded["generationConfig"]["maxOutputTokens"], 64);
    assert_eq!(forwarded["generationConfig"]["temperature"], 0.5);
}

#[test]
fn gemini_candidate_count_is_choices() {
    let body = json!({"contents": [{"parts": [{"text": "Hi"}]}],
        "generationConfig": {"candidateCount": 3, "maxOutputTokens": 20}});
    let request = parse_at("/v1beta/models/gemini-2.5-flash:generateContent", body).unwrap();
    assert_eq!((request.choices, request.max_output_tokens), (3, Some(20)));
}

#[test]
fn gemini_inline_image_counts_as_image() {
    let body = json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}]});
    let request = parse_at("/v1beta/models/gemini-2.5-flash:generateContent", body).unwrap();
    assert!(request.prompt_tokens >= 1105);
}

#[test]
fn embeddings_count_every_input() {
    let body =
        json!({"model": "text-embedding-3-small", "input": ["one", "two three", [1, 2, 3, 4]]});
    let request = parse_at("/v1/embeddings", body).unwrap();
    let expected = Encoding::Cl100kBase.count("one") + Encoding::Cl100kBase.count("two three") + 4;
    assert_eq!(request.prompt_tokens, expected);
    assert!(!request.has_output());
}

#[test]
fn embeddings_need_input() {
    let error = parse_at("/v1/embeddings", json!({"model": "text-embedding-3-small"})).unwrap_err();
    assert!(matches!(
        error,
        FilterError::MissingField { field: "input", .. }
    ));
}
