//! The mock provider's formats other than OpenAI chat: Azure OpenAI, OpenAI Responses,
//! Anthropic Messages, Gemini and embeddings, each event sequence and field set.

mod common;

use common::mock_server::Mock;
use serde_json::{json, Value};
use spendfuse_tests::tokens::Encoding;
use spendfuse_tests::{read_sse, SseRead};

const AZURE_CHAT: &str = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";

fn count(text: &str) -> u64 {
    Encoding::O200kBase.count(text)
}

fn chat_messages() -> Value {
    json!([{"role": "user", "content": "Say something about budgets."}])
}

fn anthropic_body(extra: Value) -> Value {
    let mut body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Say something about budgets."}]
    });
    merge(&mut body, extra);
    body
}

fn gemini_body(extra: Value) -> Value {
    let mut body = json!({
        "contents": [{"role": "user", "parts": [{"text": "Say something about budgets."}]}]
    });
    merge(&mut body, extra);
    body
}

fn merge(body: &mut Value, extra: Value) {
    let object = body.as_object_mut().expect("object");
    for (key, value) in extra.as_object().expect("extra is an object") {
        object.insert(key.clone(), value.clone());
    }
}

fn names(read: &SseRead) -> Vec<String> {
    read.events
        .iter()
        .map(|event| event.event.clone().unwrap_or_default())
        .collect()
}

fn anthropic(mock: &Mock, body: &Value) -> reqwest::RequestBuilder {
    mock.post("/v1/messages", body)
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
}

// Azure OpenAI

#[tokio::test]
async fn azure_stream_starts_with_prompt_filter_chunk() {
    let mock = Mock::start().await;
    let body = json!({"messages": chat_messages(), "stream": true,
                      "stream_options": {"include_usage": true}});
    let response = mock.post(AZURE_CHAT, &body).send().await.expect("answer");
    let read = read_sse(response, None).await;
    let chunks = read.json();
    let first = &chunks[0];
    assert_eq!(first["choices"], json!([]));
    assert!(first.get("usage").is_none(), "first chunk {first}");
    assert!(first["prompt_filter_results"][0]["content_filter_results"]["hate"].is_object());
    let second = &chunks[1];
    assert_eq!(second["model"], "gpt-4o-mini-2024-07-18");
    assert!(second["choices"][0]["content_filter_results"].is_object());
}

#[tokio::test]
async fn azure_content_chunks_carry_filter_results() {
    let mock = Mock::start().await;
    let body = json!({"messages": chat_messages(), "stream": true});
    let response = mock.post(AZURE_CHAT, &body).send().await.expect("answer");
    let read = read_sse(response, None).await;
    let content_chunks: Vec<Value> = read
        .json()
        .into_iter()
        .filter(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .collect();
    assert_eq!(content_chunks.len(), 20);
    for chunk in &content_chunks {
        let results = &chunk["choices"][0]["content_filter_results"];
        assert_eq!(results["violence"]["severity"], "safe", "chunk {chunk}");
        assert!(chunk.get("service_tier").is_none(), "chunk {chunk}");
    }
}

#[tokio::test]
async fn azure_usage_chunk_ends_stream() {
    let mock = Mock::start().await;
    let body = json!({"messages": chat_messages(), "stream": true,
                      "stream_options": {"include_usage": true}});
    let response = mock.post(AZURE_CHAT, &body).send().await.expect("answer");
    let read = read_sse(response, None).await;
    let usage_chunk = &read.events[read.events.len() - 2];
    let usage = usage_chunk.json().expect("JSON usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 20);
    assert_eq!(read.last().expect("last event").data, "[DONE]");
}

#[tokio::test]
async fn azure_completion_has_filter_results() {
    let mock = Mock::start().await;
    let body = json!({"messages": chat_messages()});
    let answer: Value = mock
        .post(AZURE_CHAT, &body)
        .header("api-key", "azure-test")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert!(
        answer["prompt_filter_results"].is_array(),
        "answer {answer}"
    );
    assert!(answer["choices"][0]["content_filter_results"].is_object());
    assert_eq!(answer["usage"]["completion_tokens"], 20);
    let record = mock.only_record().await;
    assert_eq!(record.provider, "azure_chat");
    assert_eq!(record.credential.as_deref(), Some("api-key"));
}

#[tokio::test]
async fn azure_without_api_version_is_404() {
    let mock = Mock::start().await;
    let path = "/openai/deployments/gpt-4o-mini/chat/completions";
    let body = json!({"messages": chat_messages()});
    let response = mock.post(path, &body).send().await.expect("answer");
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "404");
}

#[tokio::test]
async fn azure_status_error_has_string_code() {
    let mock = Mock::start().await;
    let body = json!({"messages": chat_messages()});
    let response = mock
        .post(AZURE_CHAT, &body)
        .header("x-mock-status", "429")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 429);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "429");
}

// OpenAI Responses

#[tokio::test]
async fn responses_stream_event_sequence() {
    let mock = Mock::start().await;
    let body = json!({"model": "gpt-4o-mini", "input": "Say something.", "stream": true});
    let response = mock
        .post("/v1/responses", &body)
        .header("x-mock-output-tokens", "2")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let expected = [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ];
    assert_eq!(names(&read), expected);
    for (position, event) in read.events.iter().enumerate() {
        let json = event.json().expect("JSON event");
        assert_eq!(json["sequence_number"], position, "event {json}");
        assert_eq!(json["type"].as_str(), event.event.as_deref());
    }
    assert!(!read.events.iter().any(|event| event.data == "[DONE]"));
}

#[tokio::test]
async fn responses_completed_usage_fields() {
    let mock = Mock::start().await;
    let body = json!({"model": "o4-mini", "input": "Say something.", "stream": true});
    let response = mock
        .post("/v1/responses", &body)
        .header("x-mock-output-tokens", "4")
        .header("x-mock-reasoning-tokens", "6")
        .header("x-mock-cached-tokens", "2")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let completed = read
        .named("response.completed")
        .next()
        .expect("completed event");
    let usage = completed.json().expect("JSON")["response"]["usage"].clone();
    let input = usage["input_tokens"].as_u64().expect("input_tokens");
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 2);
    assert_eq!(usage["output_tokens"], 10);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 6);
    assert_eq!(usage["total_tokens"], input + 10);
    let reasoning_items = read
        .named("response.output_item.added")
        .filter(|event| event.json().expect("JSON")["item"]["type"] == "reasoning")
        .count();
    assert_eq!(reasoning_items, 1);
}

#[tokio::test]
async fn responses_incomplete_at_max_output_tokens() {
    let mock = Mock::start().await;
    let body = json!({"model": "gpt-4o-mini", "input": "Go on.", "stream": true,
                      "max_output_tokens": 16});
    let response = mock
        .post("/v1/responses", &body)
        .header("x-mock-output-tokens", "40")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let last = read.last().expect("a terminal event");
    assert_eq!(last.event.as_deref(), Some("response.incomplete"));
    let response = &last.json().expect("JSON")["response"];
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(response["usage"]["output_tokens"], 16);
}

#[tokio::test]
async fn responses_failed_after_tokens() {
    let mock = Mock::start().await;
    let body = json!({"model": "gpt-4o-mini", "input": "Go on.", "stream": true});
    let response = mock
        .post("/v1/responses", &body)
        .header("x-mock-fail-after-tokens", "5")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let deltas = read.named("response.output_text.delta").count();
    assert_eq!(deltas, 5);
    let last = read.last().expect("a terminal event");
    assert_eq!(last.event.as_deref(), Some("response.failed"));
    let response = &last.json().expect("JSON")["response"];
    assert_eq!(response["status"], "failed");
    assert_eq!(response["error"]["code"], "server_error");
}

#[tokio::test]
async fn responses_terminal_echoes_instructions_and_tools() {
    let mock = Mock::start().await;
    let tools = json!([{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]);
    let body = json!({"model": "gpt-4o-mini", "input": "Go on.", "stream": true,
                      "instructions": "Be brief.", "tools": tools});
    let response = mock
        .post("/v1/responses", &body)
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let terminal = read.last().expect("terminal event").json().expect("JSON");
    assert_eq!(terminal["response"]["instructions"], "Be brief.");
    assert_eq!(terminal["response"]["tools"], tools);
}

#[tokio::test]
async fn responses_echo_bytes_sizes_terminal_event() {
    let mock = Mock::start().await;
    let body = json!({"model": "gpt-4o-mini", "input": "Go on.", "stream": true,
                      "instructions": "Be brief."});
    let target = 256 * 1024;
    let response = mock
        .post("/v1/responses", &body)
        .header("x-mock-echo-bytes", target.to_string())
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let raw = String::from_utf8(read.raw.clone()).expect("UTF-8 body");
    let start = raw
        .rfind("event: response.completed")
        .expect("terminal event");
    assert_eq!(raw.len() - start, target);
    let terminal = read.last().expect("terminal event").json().expect("JSON");
    let instructions = terminal["response"]["instructions"]
        .as_str()
        .expect("string");
    assert!(instructions.starts_with("Be brief."));
}

#[tokio::test]
async fn responses_object_without_stream() {
    let mock = Mock::start().await;
    let body = json!({"model": "gpt-4o-mini", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Go on."}]}
    ]});
    let answer: Value = mock
        .post("/v1/responses", &body)
        .header("x-mock-output-tokens", "7")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["status"], "completed");
    let text = answer["output"][0]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert_eq!(count(text), 7);
    assert_eq!(answer["usage"]["output_tokens"], 7);
}

#[tokio::test]
async fn responses_reject_max_output_below_16() {
    let mock = Mock::start().await;
    let body = json!({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 5});
    let response = mock
        .post("/v1/responses", &body)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["param"], "max_output_tokens");
}

#[tokio::test]
async fn responses_function_call_arguments_stream() {
    let mock = Mock::start().await;
    let body = json!({"model": "gpt-4o-mini", "input": "Go on.", "stream": true});
    let response = mock
        .post("/v1/responses", &body)
        .header("x-mock-tool-calls", "true")
        .header("x-mock-output-tokens", "3")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let arguments: String = read
        .named("response.function_call_arguments.delta")
        .map(|event| {
            event.json().expect("JSON")["delta"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(count(&arguments), 3);
    assert_eq!(read.named("response.output_text.delta").count(), 0);
}

// Anthropic Messages

#[tokio::test]
async fn anthropic_stream_event_sequence() {
    let mock = Mock::start().await;
    let response = anthropic(&mock, &anthropic_body(json!({"stream": true})))
        .header("x-mock-output-tokens", "2")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let expected = [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];
    assert_eq!(names(&read), expected);
    for event in &read.events {
        let json = event.json().expect("JSON event");
        assert_eq!(json["type"].as_str(), event.event.as_deref());
    }
}

#[tokio::test]
async fn anthropic_message_start_reports_input() {
    let mock = Mock::start().await;
    let response = anthropic(&mock, &anthropic_body(json!({"stream": true})))
        .header("x-mock-cached-tokens", "3")
        .header("x-mock-cache-write-5m-tokens", "2")
        .header("x-mock-cache-write-1h-tokens", "1")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let start = read.named("message_start").next().expect("message_start");
    let usage = start.json().expect("JSON")["message"]["usage"].clone();
    let record = mock.only_record().await;
    assert_eq!(usage["input_tokens"], record.prompt_tokens - 6);
    assert_eq!(usage["cache_read_input_tokens"], 3);
    assert_eq!(usage["cache_creation_input_tokens"], 3);
    assert_eq!(usage["cache_creation"]["ephemeral_5m_input_tokens"], 2);
    assert_eq!(usage["cache_creation"]["ephemeral_1h_input_tokens"], 1);
    assert_eq!(usage["output_tokens"], 1);
    assert_eq!(usage["service_tier"], "standard");
}

#[tokio::test]
async fn anthropic_message_delta_usage_is_cumulative() {
    let mock = Mock::start().await;
    let response = anthropic(&mock, &anthropic_body(json!({"stream": true})))
        .header("x-mock-output-tokens", "9")
        .header("x-mock-cached-tokens", "3")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let delta = read.named("message_delta").next().expect("message_delta");
    let delta = delta.json().expect("JSON");
    assert_eq!(delta["usage"]["output_tokens"], 9);
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 3);
    assert!(delta["usage"]["input_tokens"].is_u64(), "delta {delta}");
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn anthropic_late_usage_starts_at_zero() {
    let mock = Mock::start().await;
    let response = anthropic(&mock, &anthropic_body(json!({"stream": true})))
        .header("x-mock-late-usage", "true")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let start = read.named("message_start").next().expect("message_start");
    let usage = start.json().expect("JSON")["message"]["usage"].clone();
    assert_eq!(usage["input_tokens"], 0);
    assert_eq!(usage["output_tokens"], 0);
    let delta = read.named("message_delta").next().expect("message_delta");
    let delta_usage = delta.json().expect("JSON")["usage"].clone();
    assert_eq!(
        delta_usage["input_tokens"],
        mock.only_record().await.prompt_tokens
    );
    assert_eq!(delta_usage["output_tokens"], 20);
}

#[tokio::test]
async fn anthropic_thinking_streams_before_text() {
    let mock = Mock::start().await;
    let response = anthropic(&mock, &anthropic_body(json!({"stream": true})))
        .header("x-mock-output-tokens", "4")
        .header("x-mock-thinking-tokens", "6")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let deltas: Vec<Value> = read
        .named("content_block_delta")
        .map(|event| event.json().expect("JSON")["delta"].clone())
        .collect();
    let thinking: String = deltas
        .iter()
        .filter_map(|delta| delta["thinking"].as_str())
        .collect();
    let text: String = deltas
        .iter()
        .filter_map(|delta| delta["text"].as_str())
        .collect();
    assert_eq!(count(&thinking), 6);
    assert_eq!(count(&text), 4);
    let first_text = deltas.iter().position(|d| d["type"] == "text_delta");
    let last_thinking = deltas.iter().rposition(|d| d["type"] == "thinking_delta");
    assert!(last_thinking < first_text, "deltas {deltas:?}");
    let delta = read.named("message_delta").next().expect("message_delta");
    assert_eq!(delta.json().expect("JSON")["usage"]["output_tokens"], 10);
    assert_eq!(mock.only_record().await.generated_tokens, 10);
}

#[tokio::test]
async fn anthropic_error_event_after_tokens() {
    let mock = Mock::start().await;
    let response = anthropic(&mock, &anthropic_body(json!({"stream": true})))
        .header("x-mock-error-after-tokens", "4")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let read = read_sse(response, None).await;
    let last = read.last().expect("an event");
    assert_eq!(last.event.as_deref(), Some("error"));
    let error = last.json().expect("JSON");
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "overloaded_error");
    assert_eq!(read.named("content_block_delta").count(), 4);
}

#[tokio::test]
async fn anthropic_message_object_without_stream() {
    let mock = Mock::start().await;
    let answer: Value = anthropic(&mock, &anthropic_body(json!({"max_tokens": 5})))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(answer["stop_reason"], "max_tokens");
    assert_eq!(
        count(answer["content"][0]["text"].as_str().expect("text")),
        5
    );
    assert_eq!(answer["usage"]["output_tokens"], 5);
    let record = mock.only_record().await;
    assert_eq!(record.provider, "anthropic");
    assert_eq!(record.credential.as_deref(), Some("x-api-key"));
}

#[tokio::test]
async fn anthropic_requires_max_tokens() {
    let mock = Mock::start().await;
    let mut body = anthropic_body(json!({}));
    body.as_object_mut().expect("object").remove("max_tokens");
    let response = anthropic(&mock, &body).send().await.expect("answer");
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn anthropic_requires_version_header() {
    let mock = Mock::start().await;
    let response = mock
        .post("/v1/messages", &anthropic_body(json!({})))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
}

// Gemini

#[tokio::test]
async fn gemini_sse_frames_with_crlf() {
    let mock = Mock::start().await;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let response = mock
        .post(path, &gemini_body(json!({})))
        .header("x-goog-api-key", "gemini-test")
        .header("x-mock-output-tokens", "3")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let raw = String::from_utf8(read.raw.clone()).expect("UTF-8");
    assert!(raw.starts_with("data: {"), "body {raw}");
    assert_eq!(raw.matches("\r\n\r\n").count(), read.events.len());
    assert!(
        !raw.replace("\r\n", "").contains('\n'),
        "bare LF in {raw:?}"
    );
}

#[tokio::test]
async fn gemini_chunks_carry_running_usage() {
    let mock = Mock::start().await;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let response = mock
        .post(path, &gemini_body(json!({})))
        .header("x-mock-output-tokens", "4")
        .header("x-mock-thoughts-tokens", "10")
        .header("x-mock-cached-tokens", "2")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let chunks = read.json();
    let candidates: Vec<u64> = chunks
        .iter()
        .map(|chunk| {
            chunk["usageMetadata"]["candidatesTokenCount"]
                .as_u64()
                .expect("count")
        })
        .collect();
    assert_eq!(candidates, [1, 2, 3, 4, 4]);
    for chunk in &chunks {
        let usage = &chunk["usageMetadata"];
        assert_eq!(usage["thoughtsTokenCount"], 10, "chunk {chunk}");
        assert_eq!(usage["cachedContentTokenCount"], 2, "chunk {chunk}");
        let prompt = usage["promptTokenCount"].as_u64().expect("prompt");
        let total = prompt + usage["candidatesTokenCount"].as_u64().expect("candidates") + 10;
        assert_eq!(usage["totalTokenCount"], total, "chunk {chunk}");
    }
    let last = chunks.last().expect("a chunk");
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(mock.only_record().await.generated_tokens, 14);
}

#[tokio::test]
async fn gemini_max_output_tokens_finishes_max_tokens() {
    let mock = Mock::start().await;
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let body = gemini_body(json!({"generationConfig": {"maxOutputTokens": 6}}));
    let answer: Value = mock
        .post(path, &body)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(answer["usageMetadata"]["candidatesTokenCount"], 6);
    assert_eq!(answer["modelVersion"], "gemini-2.5-flash");
    let record = mock.only_record().await;
    assert_eq!(
        record.max_tokens_field.as_deref(),
        Some("generationConfig.maxOutputTokens")
    );
    assert_eq!(record.model.as_deref(), Some("gemini-2.5-flash"));
}

#[tokio::test]
async fn gemini_candidates_each_generate() {
    let mock = Mock::start().await;
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let body = gemini_body(json!({"generationConfig": {"candidateCount": 3}}));
    let answer: Value = mock
        .post(path, &body)
        .header("x-mock-output-tokens", "5")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["candidates"].as_array().map(Vec::len), Some(3));
    assert_eq!(answer["usageMetadata"]["candidatesTokenCount"], 15);
}

#[tokio::test]
async fn gemini_stream_without_sse_is_json_array() {
    let mock = Mock::start().await;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?key=gemini-test";
    let response = mock
        .post(path, &gemini_body(json!({})))
        .header("x-mock-output-tokens", "3")
        .send()
        .await
        .expect("answer");
    let chunks: Value = response.json().await.expect("a JSON array");
    let chunks = chunks.as_array().expect("array");
    assert_eq!(chunks.len(), 4);
    assert_eq!(chunks[3]["candidates"][0]["finishReason"], "STOP");
    let record = mock.only_record().await;
    assert_eq!(record.credential.as_deref(), Some("key"));
    assert!(record.stream);
}

#[tokio::test]
async fn gemini_status_error_names_status() {
    let mock = Mock::start().await;
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let response = mock
        .post(path, &gemini_body(json!({})))
        .header("x-mock-status", "429")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 429);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], 429);
    assert_eq!(error["error"]["status"], "RESOURCE_EXHAUSTED");
}

#[tokio::test]
async fn gemini_error_after_tokens_ends_stream() {
    let mock = Mock::start().await;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let response = mock
        .post(path, &gemini_body(json!({})))
        .header("x-mock-error-after-tokens", "2")
        .send()
        .await
        .expect("answer");
    let read = read_sse(response, None).await;
    let last = read.last().expect("an event").json().expect("JSON");
    assert_eq!(last["error"]["status"], "INTERNAL");
    assert_eq!(read.events.len(), 3);
}

// Embeddings

#[tokio::test]
async fn embeddings_report_prompt_tokens() {
    let mock = Mock::start().await;
    let body = json!({"model": "text-embedding-3-small", "input": ["hello world", "budget"]});
    let answer: Value = mock
        .post("/v1/embeddings", &body)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["object"], "list");
    let expected = Encoding::Cl100kBase.count("hello world") + Encoding::Cl100kBase.count("budget");
    assert_eq!(answer["usage"]["prompt_tokens"], expected);
    assert_eq!(answer["usage"]["total_tokens"], expected);
    assert_eq!(answer["data"][1]["index"], 1);
    assert_eq!(
        answer["data"][0]["embedding"].as_array().map(Vec::len),
        Some(1536)
    );
}

#[tokio::test]
async fn embeddings_base64_encodes_vectors() {
    let mock = Mock::start().await;
    let body = json!({"model": "text-embedding-3-small", "input": "hello",
                      "encoding_format": "base64", "dimensions": 4});
    let answer: Value = mock
        .post("/v1/embeddings", &body)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    let encoded = answer["data"][0]["embedding"]
        .as_str()
        .expect("base64 string");
    // 4 floats are 16 bytes, which base64 writes in 24 characters.
    assert_eq!(encoded.len(), 24);
}

#[tokio::test]
async fn azure_embeddings_name_the_deployment() {
    let mock = Mock::start().await;
    let path = "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21";
    let answer: Value = mock
        .post(path, &json!({"input": "hello"}))
        .header("api-key", "azure-test")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["model"], "text-embedding-3-small");
    assert_eq!(answer["usage"]["prompt_tokens"], 1);
    assert_eq!(mock.only_record().await.provider, "embeddings");
}

#[tokio::test]
async fn no_usage_leaves_usage_out_of_every_format() {
    let mock = Mock::start().await;
    let cases = [
        (
            "/v1/responses",
            json!({"model": "gpt-4o-mini", "input": "hi"}),
            "/usage",
        ),
        ("/v1/messages", anthropic_body(json!({})), "/usage"),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            gemini_body(json!({})),
            "/usageMetadata",
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "hi"}),
            "/usage",
        ),
    ];
    for (path, body, pointer) in cases {
        let answer: Value = mock
            .post(path, &body)
            .header("anthropic-version", "2023-06-01")
            .header("x-mock-no-usage", "true")
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("JSON");
        let usage = answer.pointer(pointer);
        assert!(usage.is_none_or(Value::is_null), "{path}: {answer}");
    }
}
