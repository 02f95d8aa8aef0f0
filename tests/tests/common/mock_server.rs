//! The mock provider binary on its own, without Envoy, for tests of its wire formats.

use serde_json::Value;
use spendfuse_tests::harness::services::MockProvider;
use spendfuse_tests::mock::MockRecord;
use spendfuse_tests::MockClient;
use tempfile::TempDir;

/// A running mock provider and clients of it. The process stops when this is dropped.
pub struct Mock {
    pub provider: MockProvider,
    pub records: MockClient,
    pub http: reqwest::Client,
    _dir: TempDir,
}

impl Mock {
    /// Starts the mock provider on a free loopback port.
    pub async fn start() -> Mock {
        let dir = tempfile::tempdir().expect("temporary directory");
        let http = spendfuse_tests::client::http_client().expect("HTTP client");
        let bin = env!("CARGO_BIN_EXE_mock-provider");
        let provider = MockProvider::start(bin.as_ref(), &[], dir.path(), &http)
            .await
            .expect("mock provider starts");
        let records = MockClient::new(http.clone(), provider.url());
        Mock {
            provider,
            records,
            http,
            _dir: dir,
        }
    }

    /// Returns a POST of `body` as JSON to `path`.
    pub fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.provider.url()))
            .json(body)
    }

    /// Returns a POST of `body` to the chat completions endpoint.
    pub fn chat(&self, body: &Value) -> reqwest::RequestBuilder {
        self.post("/v1/chat/completions", body)
    }

    /// Returns the one record, failing when there is not exactly one.
    pub async fn only_record(&self) -> MockRecord {
        let records = self.records.records().await.expect("records");
        assert_eq!(records.len(), 1, "records: {records:?}");
        records.into_iter().next().expect("one record")
    }
}
