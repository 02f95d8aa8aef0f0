//! The mock provider binary on its own: OpenAI's wire format, the `x-mock-*` knobs and the
//! request records.

mod common;

use common::mock_server::Mock;
use serde_json::{json, Value};
use spendfuse_tests::tokens::{self, Encoding};
use spendfuse_tests::{read_stream, ChatEvent};
use std::io::Read;
use std::time::Duration;

fn request(extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say something about budgets.", "name": "alice"}
        ]
    });
    let object = body.as_object_mut().expect("object");
    for (key, value) in extra.as_object().expect("extra is an object") {
        object.insert(key.clone(), value.clone());
    }
    body
}

fn count(text: &str) -> u64 {
    Encoding::O200kBase.count(text)
}

#[tokio::test]
async fn completion_has_openai_shape() {
    let mock = Mock::start().await;
    let response = mock.chat(&request(json!({}))).send().await.expect("answer");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.expect("JSON body");
    assert!(body["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(body["service_tier"], "default");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["refusal"], Value::Null);
    assert_eq!(choice["message"]["annotations"], json!([]));
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        count(choice["message"]["content"].as_str().expect("content")),
        20
    );
}

#[tokio::test]
async fn completion_usage_has_every_field() {
    let mock = Mock::start().await;
    let body = request(json!({}));
    let answer: Value = mock
        .chat(&body)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    let prompt = tokens::request_prompt_tokens(&body);
    let expected = json!({
        "prompt_tokens": prompt,
        "completion_tokens": 20,
        "total_tokens": prompt + 20,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    });
    assert_eq!(answer["usage"], expected);
}

#[tokio::test]
async fn prompt_tokens_follow_formula() {
    let mock = Mock::start().await;
    let body = request(json!({}));
    let answer: Value = mock
        .chat(&body)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    // 3 priming; system: 3 + "system" + "You are terse."; user: 3 + "user" + text + "alice" + 1.
    let by_hand = 3
        + 3
        + count("system")
        + count("You are terse.")
        + 3
        + count("user")
        + count("Say something about budgets.")
        + count("alice")
        + 1;
    assert_eq!(answer["usage"]["prompt_tokens"], by_hand);
}

#[tokio::test]
async fn max_tokens_stops_with_length() {
    let mock = Mock::start().await;
    let answer: Value = mock
        .chat(&request(json!({"max_tokens": 5})))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 5);
    let record = mock.only_record().await;
    assert_eq!(record.max_tokens_field.as_deref(), Some("max_tokens"));
    assert_eq!(record.max_tokens_value, Some(5));
}

#[tokio::test]
async fn ignore_max_tokens_generates_past_max() {
    let mock = Mock::start().await;
    let answer: Value = mock
        .chat(&request(json!({"max_completion_tokens": 5})))
        .header("x-mock-ignore-max-tokens", "true")
        .header("x-mock-output-tokens", "12")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["usage"]["completion_tokens"], 12);
    assert_eq!(
        mock.only_record().await.max_tokens_field.as_deref(),
        Some("max_completion_tokens")
    );
}

#[tokio::test]
async fn stream_events_in_api_order() {
    let mock = Mock::start().await;
    let body = request(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let response = mock.chat(&body).send().await.expect("answer");
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let read = read_stream(response, None).await;
    assert_eq!(read.transport_error, None);

    let chunks: Vec<&Value> = read
        .events
        .iter()
        .filter_map(|event| match event {
            ChatEvent::Chunk { json, .. } => Some(json),
            _ => None,
        })
        .collect();

    let first = chunks.first().expect("a first chunk");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let last = chunks.last().expect("a last chunk");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["usage"], Value::Null, "chunk {chunk}");
        assert!(chunk["obfuscation"].is_string(), "chunk {chunk}");
        assert_eq!(chunk["id"], first["id"]);
    }
    assert_eq!(count(&read.content()), 20);

    let usage = read.usage_event().expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 20);
    assert!(matches!(
        read.events.as_slice(),
        [.., ChatEvent::Usage(_), ChatEvent::Done]
    ));
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_field() {
    let mock = Mock::start().await;
    let response = mock
        .chat(&request(json!({"stream": true})))
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, None).await;
    assert!(read.usage_event().is_none());
    for event in &read.events {
        if let ChatEvent::Chunk { json, .. } = event {
            assert!(json.get("usage").is_none(), "chunk {json}");
        }
    }
    assert!(matches!(read.events.last(), Some(ChatEvent::Done)));
}

#[tokio::test]
async fn obfuscation_can_be_turned_off() {
    let mock = Mock::start().await;
    let options = json!({"stream": true, "stream_options": {"include_obfuscation": false}});
    let response = mock.chat(&request(options)).send().await.expect("answer");
    let read = read_stream(response, None).await;
    for event in &read.events {
        if let ChatEvent::Chunk { json, .. } = event {
            assert!(json.get("obfuscation").is_none(), "chunk {json}");
        }
    }
}

#[tokio::test]
async fn tokens_per_chunk_groups_tokens() {
    let mock = Mock::start().await;
    let response = mock
        .chat(&request(json!({"stream": true})))
        .header("x-mock-tokens-per-chunk", "4")
        .header("x-mock-output-tokens", "10")
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, None).await;
    let counts: Vec<u64> = read
        .events
        .iter()
        .filter_map(|event| match event {
            ChatEvent::Chunk { content, .. } if !content.is_empty() => Some(count(content)),
            _ => None,
        })
        .collect();
    assert_eq!(counts, vec![4, 4, 2]);
}

#[tokio::test]
async fn choices_stream_with_their_index() {
    let mock = Mock::start().await;
    let body = request(json!({"stream": true, "n": 3, "stream_options": {"include_usage": true}}));
    let response = mock
        .chat(&body)
        .header("x-mock-output-tokens", "7")
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, None).await;
    let mut per_choice = [0u64; 3];
    let mut finished = [false; 3];
    for event in &read.events {
        let ChatEvent::Chunk { json, .. } = event else {
            continue;
        };
        let choice = &json["choices"][0];
        let index = choice["index"].as_u64().expect("index") as usize;
        per_choice[index] += count(choice["delta"]["content"].as_str().unwrap_or_default());
        finished[index] |= choice["finish_reason"] == "stop";
    }
    assert_eq!(per_choice, [7, 7, 7]);
    assert_eq!(finished, [true, true, true]);
    let usage = read.usage_event().expect("usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 21);
    assert_eq!(mock.only_record().await.generated_tokens, 21);
}

#[tokio::test]
async fn status_knob_answers_openai_error() {
    let mock = Mock::start().await;
    let response = mock
        .chat(&request(json!({"stream": true})))
        .header("x-mock-status", "429")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.expect("JSON body");
    let error = body["error"].as_object().expect("error object");
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"]);
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(mock.only_record().await.generated_tokens, 0);
}

#[tokio::test]
async fn no_usage_knob_leaves_usage_out() {
    let mock = Mock::start().await;
    let body = request(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let response = mock
        .chat(&body)
        .header("x-mock-no-usage", "true")
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, None).await;
    assert!(read.usage_event().is_none());
    assert_eq!(count(&read.content()), 20);
    let answer: Value = mock
        .chat(&request(json!({})))
        .header("x-mock-no-usage", "true")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert!(answer.get("usage").is_none(), "answer {answer}");
}

#[tokio::test]
async fn record_describes_stream_request() {
    let mock = Mock::start().await;
    let body = request(
        json!({"stream": true, "stream_options": {"include_usage": true}, "max_tokens": 9}),
    );
    let response = mock
        .chat(&body)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, None).await;
    assert!(matches!(read.events.last(), Some(ChatEvent::Done)));
    let record = mock.only_record().await;
    assert_eq!(record.path, "/v1/chat/completions");
    assert_eq!(record.model.as_deref(), Some("gpt-4o-mini"));
    assert!(record.stream);
    assert!(record.include_usage);
    assert_eq!(record.accept_encoding.as_deref(), Some("gzip"));
    assert_eq!(record.body, body);
    assert_eq!(record.prompt_tokens, tokens::request_prompt_tokens(&body));
    assert_eq!(record.generated_tokens, 9);
    assert!(record.completed);
    assert!(!record.client_closed_early);
}

#[tokio::test]
async fn client_drop_is_recorded() {
    let mock = Mock::start().await;
    let response = mock
        .chat(&request(json!({"stream": true})))
        .header("x-mock-output-tokens", "500")
        .header("x-mock-chunk-delay-ms", "20")
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, Some(5)).await;
    assert_eq!(read.events.len(), 5);
    let records = mock
        .records
        .wait_for_records(Duration::from_secs(5), |records| {
            records
                .first()
                .is_some_and(|record| record.client_closed_early)
        })
        .await
        .expect("records");
    let record = &records[0];
    assert!(record.client_closed_early, "record {record:?}");
    assert!(!record.completed);
    // Four content events reached the client. The mock detects the closed connection a little
    // later, so it may have generated a few more tokens.
    println!(
        "client read 4 content tokens, mock generated {}",
        record.generated_tokens
    );
    assert!(record.generated_tokens < 500);
}

#[tokio::test]
async fn gzip_when_client_accepts_it() {
    let mock = Mock::start().await;
    let response = mock
        .chat(&request(json!({})))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let compressed = response.bytes().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("gzip body");
    let body: Value = serde_json::from_str(&text).expect("JSON inside gzip");
    assert_eq!(body["object"], "chat.completion");
}

#[tokio::test]
async fn invalid_requests_answer_400() {
    let mock = Mock::start().await;
    let url = format!("{}/v1/chat/completions", mock.provider.url());
    let cases = [
        ("not json", "{", None),
        (
            "missing model",
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            Some("model"),
        ),
        (
            "reasoning model with max_tokens",
            r#"{"model":"o3-mini","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
            Some("max_tokens"),
        ),
        (
            "stream_options without stream",
            r#"{"model":"gpt-4o","stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
            Some("stream_options"),
        ),
    ];
    for (case, body, param) in cases {
        let response = mock
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 400, "case {case}");
        let error: Value = response.json().await.expect("JSON error");
        assert_eq!(
            error["error"]["type"], "invalid_request_error",
            "case {case}"
        );
        assert_eq!(error["error"]["param"].as_str(), param, "case {case}");
    }
    let records = mock.records.records().await.expect("records");
    assert_eq!(records.len(), cases.len());
    assert_eq!(records[0].body, json!("{"));
}

#[tokio::test]
async fn unknown_path_is_recorded_404() {
    let mock = Mock::start().await;
    let response = mock
        .http
        .post(format!("{}/v1/completions", mock.provider.url()))
        .json(&json!({"model": "gpt-3.5-turbo-instruct", "prompt": "hi"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 404);
    let record = mock.only_record().await;
    assert_eq!(record.path, "/v1/completions");
    assert_eq!(record.provider, "unknown");
}

#[tokio::test]
async fn delete_clears_records() {
    let mock = Mock::start().await;
    mock.chat(&request(json!({}))).send().await.expect("answer");
    mock.records.clear().await.expect("clear");
    assert!(mock.records.records().await.expect("records").is_empty());
}

#[tokio::test]
async fn usage_reports_cache_reasoning_and_audio() {
    let mock = Mock::start().await;
    let body = request(json!({"max_completion_tokens": 100}));
    let answer: Value = mock
        .chat(&body)
        .header("x-mock-output-tokens", "10")
        .header("x-mock-cached-tokens", "4")
        .header("x-mock-reasoning-tokens", "6")
        .header("x-mock-audio-prompt-tokens", "30")
        .header("x-mock-audio-completion-tokens", "8")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    let text_prompt = tokens::request_prompt_tokens(&body);
    let usage = &answer["usage"];
    assert_eq!(usage["prompt_tokens"], text_prompt + 30);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(usage["prompt_tokens_details"]["audio_tokens"], 30);
    assert_eq!(usage["completion_tokens"], 10 + 6 + 8);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 6);
    assert_eq!(usage["completion_tokens_details"]["audio_tokens"], 8);
    assert_eq!(usage["total_tokens"], text_prompt + 30 + 24);
}

#[tokio::test]
async fn reasoning_tokens_are_never_streamed() {
    let mock = Mock::start().await;
    let body = request(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let response = mock
        .chat(&body)
        .header("x-mock-output-tokens", "5")
        .header("x-mock-reasoning-tokens", "9")
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, None).await;
    assert_eq!(count(&read.content()), 5);
    let usage = read.usage_event().expect("usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 14);
    assert_eq!(mock.only_record().await.generated_tokens, 14);
}

#[tokio::test]
async fn maximum_counts_reasoning_first() {
    let mock = Mock::start().await;
    let answer: Value = mock
        .chat(&request(json!({"max_completion_tokens": 10})))
        .header("x-mock-output-tokens", "20")
        .header("x-mock-reasoning-tokens", "7")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["usage"]["completion_tokens"], 10);
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert_eq!(count(content), 3);
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn tool_calls_stream_arguments_per_choice() {
    let mock = Mock::start().await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {}}}]);
    let body = request(json!({"stream": true, "n": 2, "tools": tools}));
    let response = mock
        .chat(&body)
        .header("x-mock-tool-calls", "true")
        .header("x-mock-output-tokens", "4")
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, None).await;

    let mut arguments = [String::new(), String::new()];
    let mut ids = [None, None];
    let mut finish = [None, None];
    for event in &read.events {
        let ChatEvent::Chunk { json, content, .. } = event else {
            continue;
        };
        assert_eq!(content, "", "tool call output has no content: {json}");
        let choice = &json["choices"][0];
        let index = choice["index"].as_u64().expect("index") as usize;
        let call = &choice["delta"]["tool_calls"][0];
        if let Some(id) = call["id"].as_str() {
            ids[index] = Some(id.to_owned());
            assert_eq!(call["function"]["name"], "lookup");
            assert_eq!(choice["delta"]["content"], Value::Null);
        }
        if let Some(text) = call["function"]["arguments"].as_str() {
            arguments[index].push_str(text);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish[index] = Some(reason.to_owned());
        }
    }

    assert_eq!(count(&arguments[0]), 4);
    assert_eq!(count(&arguments[1]), 4);
    assert!(ids[0].is_some(), "no tool call id for choice 0");
    assert!(ids[1].is_some(), "no tool call id for choice 1");
    assert_ne!(ids[0], ids[1]);
    assert_eq!(
        finish,
        [Some("tool_calls".into()), Some("tool_calls".into())]
    );
}

#[tokio::test]
async fn refusal_streams_refusal_text() {
    let mock = Mock::start().await;
    let response = mock
        .chat(&request(json!({"stream": true})))
        .header("x-mock-refusal", "true")
        .header("x-mock-output-tokens", "6")
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, None).await;
    assert_eq!(read.content(), "");
    let refusal: String = read
        .events
        .iter()
        .filter_map(|event| match event {
            ChatEvent::Chunk { json, .. } => json["choices"][0]["delta"]["refusal"]
                .as_str()
                .map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(count(&refusal), 6);
}

#[tokio::test]
async fn refusal_message_has_null_content() {
    let mock = Mock::start().await;
    let answer: Value = mock
        .chat(&request(json!({})))
        .header("x-mock-refusal", "true")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(count(message["refusal"].as_str().expect("refusal")), 20);
}

#[tokio::test]
async fn error_after_tokens_ends_chat_stream() {
    let mock = Mock::start().await;
    let response = mock
        .chat(&request(json!({"stream": true})))
        .header("x-mock-error-after-tokens", "3")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let read = read_stream(response, None).await;
    assert_eq!(count(&read.content()), 3);
    let Some(ChatEvent::Error(error)) = read.events.last() else {
        panic!("the last event is not an error: {:?}", read.events);
    };
    assert_eq!(error["error"]["type"], "server_error");
    assert!(!read.events.contains(&ChatEvent::Done));
}

#[tokio::test]
async fn force_gzip_compresses_stream() {
    let mock = Mock::start().await;
    let response = mock
        .chat(&request(json!({"stream": true})))
        .header("x-mock-force-gzip", "true")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let compressed = response.bytes().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("gzip body");
    assert!(text.ends_with("data: [DONE]\n\n"), "body {text}");
}

#[tokio::test]
async fn force_gzip_compresses_completion() {
    let mock = Mock::start().await;
    let response = mock
        .chat(&request(json!({})))
        .header("x-mock-force-gzip", "true")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(mock.only_record().await.accept_encoding, None);
}

#[tokio::test]
async fn record_names_the_provider() {
    let mock = Mock::start().await;
    mock.chat(&request(json!({})))
        .bearer_auth("sk-test")
        .send()
        .await
        .expect("answer");
    let record = mock.only_record().await;
    assert_eq!(record.provider, "openai_chat");
    assert_eq!(record.credential.as_deref(), Some("authorization"));
}
