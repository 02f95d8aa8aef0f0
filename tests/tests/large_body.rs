//! End to end through Envoy: the shipped buffer limits let a large request through.

mod common;

use common::{chat_body, funded_key, send, start, TEN_USD_NANO};
use serde_json::json;

/// A 10 MiB data URL, about the size of a large photo sent inline.
fn ten_mib_image() -> String {
    let payload = "A".repeat(10 * 1024 * 1024);
    format!("data:image/png;base64,{payload}")
}

#[tokio::test]
async fn ten_mib_image_request_passes() {
    let stack = start().await;
    let (key, _) = funded_key(&stack, "large", TEN_USD_NANO).await;
    let body = chat_body(json!({
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe this picture."},
            {"type": "image_url", "image_url": {"url": ten_mib_image()}}
        ]}]
    }));

    let answer = send(stack.chat(Some(&key), &body)).await;
    assert_eq!(answer.status, 200, "answer {:?}", answer.json);
}

#[tokio::test]
async fn ten_mib_image_reaches_provider_whole() {
    let stack = start().await;
    let (key, _) = funded_key(&stack, "large-whole", TEN_USD_NANO).await;
    let image = ten_mib_image();
    let body = chat_body(json!({
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image}}
        ]}]
    }));

    send(stack.chat(Some(&key), &body)).await;
    let records = stack.mock.records().await.expect("records");
    let forwarded = records
        .first()
        .and_then(|r| r.body.pointer("/messages/0/content/0/image_url/url"));
    assert_eq!(
        forwarded.and_then(|url| url.as_str()).map(str::len),
        Some(image.len())
    );
}
