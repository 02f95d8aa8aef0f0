//! Errors the filter returns itself as local replies, rendered per provider by `api`.

use spendfuse_protocol::NANO_USD_PER_USD;

/// A request the filter stops before it reaches the provider, or a stream it cuts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// No identity header and no default budget.
    MissingIdentity { headers: Vec<String> },
    /// The request body is larger than `maxRequestBodyBytes`.
    BodyTooLarge { limit: usize },
    /// The body is not a JSON object.
    InvalidJson { detail: String },
    /// A required field is absent.
    MissingField {
        field: &'static str,
        expected: &'static str,
    },
    /// A field has the wrong type or value.
    InvalidField {
        field: &'static str,
        expected: &'static str,
    },
    /// The endpoint is not one the filter meters, and unmetered requests are not allowed.
    UnmeteredPath { path: String },
    /// A method other than POST, GET, HEAD, OPTIONS or DELETE on a metered path.
    MethodNotAllowed { method: String, path: String },
    /// An Azure deployment that `azureDeployments` does not map to a model.
    UnknownDeployment { deployment: String },
    /// The sidecar could not price the request.
    Rejected { code: String, message: String },
    /// The budget cannot pay for the request.
    BudgetExceeded {
        budget: String,
        /// Window that ran out, such as `month`, when the sidecar names one.
        window: Option<String>,
        limit_nano_usd: u64,
        remaining_nano_usd: u64,
        required_nano_usd: u64,
    },
    /// No budget of that name exists.
    UnknownBudget { budget: String },
    /// The same body came from the same scope more than `max_repeats` times within
    /// `window_ms`.
    LoopDetected {
        budget: String,
        max_repeats: u64,
        window_ms: u64,
    },
    /// The sidecar did not respond in time or returned an error.
    SidecarUnavailable { detail: String },
    /// The stream used up what was reserved for it.
    AllowanceSpent { budget: String, output_tokens: u64 },
}

impl FilterError {
    /// HTTP status of the local reply.
    pub fn status(&self) -> u32 {
        self.parts().0
    }

    /// OpenAI's error `type`, such as `insufficient_quota`.
    pub fn openai_type(&self) -> &'static str {
        self.parts().1
    }

    /// Stable machine-readable code, such as `budget_exceeded`.
    pub fn code(&self) -> String {
        self.parts().2
    }

    /// Sentence for the client that names the value and the fix.
    pub fn message(&self) -> String {
        self.parts().3
    }

    fn parts(&self) -> (u32, &'static str, String, String) {
        match self {
            FilterError::MissingIdentity { headers } => (
                401,
                "invalid_request_error",
                "missing_identity".into(),
                format!(
                    "No identity found in headers [{}]: send your API key.",
                    headers.join(", ")
                ),
            ),
            FilterError::BodyTooLarge { limit } => (
                413,
                "invalid_request_error",
                "request_too_large".into(),
                format!("The request body is larger than {limit} bytes: send a smaller request."),
            ),
            FilterError::InvalidJson { detail } => (
                400,
                "invalid_request_error",
                "invalid_json".into(),
                format!("The request body is not valid JSON ({detail}): send a JSON object."),
            ),
            FilterError::MissingField { field, expected } => (
                400,
                "invalid_request_error",
                format!("missing_{field}"),
                format!("The field '{field}' is missing: it must be {expected}."),
            ),
            FilterError::InvalidField { field, expected } => (
                400,
                "invalid_request_error",
                format!("invalid_{field}"),
                format!("The field '{field}' is invalid: it must be {expected}."),
            ),
            FilterError::UnmeteredPath { path } => (
                404,
                "invalid_request_error",
                "unmetered_endpoint".into(),
                format!("spendfuse does not meter POST {path}, so it does not forward it."),
            ),
            FilterError::MethodNotAllowed { method, path } => (
                405,
                "invalid_request_error",
                "method_not_allowed".into(),
                format!("spendfuse meters {path} only for POST, not {method}: send a POST."),
            ),
            FilterError::UnknownDeployment { deployment } => (
                400,
                "invalid_request_error",
                "unknown_model".into(),
                format!(
                    "The deployment '{deployment}' has no model in azureDeployments: \
                     add it to the spendfuse filter configuration."
                ),
            ),
            FilterError::Rejected { code, message } => {
                (400, "invalid_request_error", code.clone(), message.clone())
            }
            FilterError::BudgetExceeded {
                budget,
                window,
                limit_nano_usd,
                remaining_nano_usd,
                required_nano_usd,
            } => (
                402,
                "insufficient_quota",
                "budget_exceeded".into(),
                format!(
                    "Budget {budget}{} cannot pay for this request: limit ${}, remaining ${}, \
                     this request needs at least ${}. Lower max_tokens or raise the budget.",
                    window
                        .as_ref()
                        .map(|window| format!(" ({window} window)"))
                        .unwrap_or_default(),
                    format_usd(*limit_nano_usd),
                    format_usd(*remaining_nano_usd),
                    format_usd(*required_nano_usd)
                ),
            ),
            FilterError::UnknownBudget { budget } => (
                402,
                "insufficient_quota",
                "budget_not_found".into(),
                format!("No budget named {budget} exists: ask an administrator to create one."),
            ),
            FilterError::LoopDetected {
                budget,
                max_repeats,
                window_ms,
            } => (
                429,
                "requests",
                "repeated_request".into(),
                format!(
                    "The same request body came from {budget} more than {max_repeats} times \
                     within {window_ms} ms, which looks like a loop: change the request or \
                     wait before sending it again."
                ),
            ),
            FilterError::SidecarUnavailable { detail } => (
                503,
                "api_error",
                "budget_service_unavailable".into(),
                format!("The budget service is unavailable ({detail}): retry later."),
            ),
            FilterError::AllowanceSpent {
                budget,
                output_tokens,
            } => (
                402,
                "insufficient_quota",
                "budget_exceeded".into(),
                format!(
                    "Budget {budget} reserved {output_tokens} output tokens for this response \
                     and they are spent: the stream was cut."
                ),
            ),
        }
    }
}

/// Formats nano-dollars as a decimal USD amount with all nine places, such as `0.000123450`.
pub fn format_usd(nano_usd: u64) -> String {
    format!(
        "{}.{:09}",
        nano_usd / NANO_USD_PER_USD,
        nano_usd % NANO_USD_PER_USD
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_keeps_every_nano() {
        assert_eq!(format_usd(1_234_567_890), "1.234567890");
        assert_eq!(format_usd(5), "0.000000005");
    }

    #[test]
    fn budget_exceeded_is_402() {
        let error = FilterError::BudgetExceeded {
            budget: "team".into(),
            window: None,
            limit_nano_usd: 1,
            remaining_nano_usd: 0,
            required_nano_usd: 2,
        };
        assert_eq!(error.status(), 402);
    }

    #[test]
    fn exceeded_names_the_window() {
        let error = FilterError::BudgetExceeded {
            budget: "org".into(),
            window: Some("month".into()),
            limit_nano_usd: 1,
            remaining_nano_usd: 0,
            required_nano_usd: 2,
        };
        assert!(error.message().starts_with("Budget org (month window)"));
    }

    #[test]
    fn loop_is_too_many_requests() {
        let error = FilterError::LoopDetected {
            budget: "k".into(),
            max_repeats: 3,
            window_ms: 10_000,
        };
        assert_eq!(error.status(), 429);
        assert!(error.message().contains("more than 3 times"));
    }

    #[test]
    fn missing_identity_names_headers() {
        let error = FilterError::MissingIdentity {
            headers: vec!["authorization".into()],
        };
        assert_eq!(error.code(), "missing_identity");
        assert!(error.message().contains("authorization"));
    }
}
