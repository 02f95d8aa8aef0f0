//! The fields of an LLM request that decide its cost, for every metered API.

use crate::api::{Api, Route};
use crate::error::FilterError;
use crate::tokens::{self, Encoding};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Largest `n` accepted; OpenAI's own limit is 128.
const MAX_CHOICES: u64 = 128;

/// A field that limits output tokens, as a path of object keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitField {
    /// `max_tokens` (OpenAI chat, Anthropic).
    MaxTokens,
    /// `max_completion_tokens` (OpenAI chat).
    MaxCompletionTokens,
    /// `max_output_tokens` (Responses API).
    MaxOutputTokens,
    /// `generationConfig.maxOutputTokens` (Gemini).
    GeminiMaxOutputTokens,
}

impl LimitField {
    fn path(self) -> &'static [&'static str] {
        match self {
            LimitField::MaxTokens => &["max_tokens"],
            LimitField::MaxCompletionTokens => &["max_completion_tokens"],
            LimitField::MaxOutputTokens => &["max_output_tokens"],
            LimitField::GeminiMaxOutputTokens => &["generationConfig", "maxOutputTokens"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            LimitField::MaxTokens => "max_tokens",
            LimitField::MaxCompletionTokens => "max_completion_tokens",
            LimitField::MaxOutputTokens => "max_output_tokens",
            LimitField::GeminiMaxOutputTokens => "maxOutputTokens",
        }
    }
}

/// Settings that parsing needs from the plugin configuration.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Tokens counted for one image.
    pub image_tokens: u64,
    /// Percent added to prompt estimates made with another provider's tokenizer.
    pub estimate_margin_percent: u64,
    /// Azure deployment name to priced model name.
    pub azure_deployments: BTreeMap<String, String>,
}

/// A parsed request of any metered API.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    body: Map<String, Value>,
    /// The API.
    pub api: Api,
    /// Priced model name.
    pub model: String,
    /// Tokenizer used for counts.
    pub encoding: Encoding,
    /// True when the response streams.
    pub stream: bool,
    /// True when the client itself asked for `stream_options.include_usage` (OpenAI chat).
    pub client_wants_usage: bool,
    limit_fields: Vec<LimitField>,
    /// Smallest output limit the client set, per choice.
    pub max_output_tokens: Option<u64>,
    /// Number of choices (`n`, `candidateCount`).
    pub choices: u64,
    /// Prompt tokens as the filter estimates them.
    pub prompt_tokens: u64,
}

impl LlmRequest {
    /// Parses and checks the body of a request to `route`.
    pub fn parse(
        route: &Route,
        bytes: &[u8],
        options: &ParseOptions,
    ) -> Result<LlmRequest, FilterError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| FilterError::InvalidJson {
            detail: e.to_string(),
        })?;
        let Value::Object(body) = value else {
            return Err(FilterError::InvalidJson {
                detail: "the top level is not an object".into(),
            });
        };
        let model = match (&route.path_model, &route.deployment) {
            (Some(model), _) => model.trim_start_matches("models/").to_string(),
            (None, Some(deployment)) => options
                .azure_deployments
                .get(deployment)
                .cloned()
                .ok_or_else(|| FilterError::UnknownDeployment {
                    deployment: deployment.clone(),
                })?,
            (None, None) => required_model(&body)?,
        };
        let encoding = Encoding::for_model(&model);
        let options = &ParseOptions {
            image_tokens: tokens::image_tokens_for(&model, options.image_tokens),
            ..options.clone()
        };
        let fields = match route.api {
            Api::OpenAiChat | Api::AzureChat => chat_fields(&body, encoding, options)?,
            Api::Responses => responses_fields(&body, encoding, options)?,
            Api::Anthropic => anthropic_fields(&body, encoding, options)?,
            Api::Gemini => gemini_fields(&body, encoding, options, route.path_stream)?,
            Api::Embeddings => embeddings_fields(&body, encoding)?,
        };
        let mut max_output_tokens: Option<u64> = None;
        let mut limit_fields = Vec::new();
        for field in fields.limits {
            let Some(value) = lookup(&body, field.path()) else {
                continue;
            };
            let limit =
                value
                    .as_u64()
                    .filter(|limit| *limit > 0)
                    .ok_or(FilterError::InvalidField {
                        field: field.name(),
                        expected: "a positive integer",
                    })?;
            limit_fields.push(field);
            max_output_tokens = Some(max_output_tokens.map_or(limit, |m| m.min(limit)));
        }
        if route.api == Api::Anthropic && max_output_tokens.is_none() {
            return Err(FilterError::MissingField {
                field: "max_tokens",
                expected: "a positive integer",
            });
        }
        let prompt_tokens = if route.api.estimates_prompt() {
            let margin = fields
                .prompt_tokens
                .saturating_mul(options.estimate_margin_percent);
            fields.prompt_tokens.saturating_add(margin.div_ceil(100))
        } else {
            fields.prompt_tokens
        };
        Ok(LlmRequest {
            body,
            api: route.api,
            model,
            encoding,
            stream: fields.stream,
            client_wants_usage: fields.client_wants_usage,
            limit_fields,
            max_output_tokens,
            choices: fields.choices,
            prompt_tokens,
        })
    }

    /// True when the API generates output tokens (embeddings do not).
    pub fn has_output(&self) -> bool {
        self.api != Api::Embeddings
    }

    /// Returns the body to forward: the output limit set to `output_tokens` in every limit field
    /// the client used (or the API's usual one), and for OpenAI chat streams
    /// `stream_options.include_usage` set so the provider reports usage.
    pub fn forwarded_body(&self, output_tokens: u64) -> Vec<u8> {
        let mut body = self.body.clone();
        let default_field = match self.api {
            Api::OpenAiChat | Api::AzureChat => Some(LimitField::MaxCompletionTokens),
            Api::Responses => Some(LimitField::MaxOutputTokens),
            Api::Anthropic => Some(LimitField::MaxTokens),
            Api::Gemini => Some(LimitField::GeminiMaxOutputTokens),
            Api::Embeddings => None,
        };
        let fields: Vec<LimitField> = if self.limit_fields.is_empty() {
            default_field.into_iter().collect()
        } else {
            self.limit_fields.clone()
        };
        for field in fields {
            set_path(&mut body, field.path(), output_tokens.into());
        }
        if self.stream && matches!(self.api, Api::OpenAiChat | Api::AzureChat) {
            set_path(
                &mut body,
                &["stream_options", "include_usage"],
                Value::Bool(true),
            );
        }
        Value::Object(body).to_string().into_bytes()
    }
}

/// Fields read by each API's parser.
struct Fields {
    stream: bool,
    client_wants_usage: bool,
    limits: Vec<LimitField>,
    choices: u64,
    prompt_tokens: u64,
}

impl Fields {
    fn new(stream: bool, limits: Vec<LimitField>, prompt_tokens: u64) -> Fields {
        Fields {
            stream,
            client_wants_usage: false,
            limits,
            choices: 1,
            prompt_tokens,
        }
    }
}

fn required_model(body: &Map<String, Value>) -> Result<String, FilterError> {
    match body.get("model") {
        None | Some(Value::Null) => Err(FilterError::MissingField {
            field: "model",
            expected: "a model name",
        }),
        Some(Value::String(model)) if !model.is_empty() => Ok(model.clone()),
        Some(_) => Err(FilterError::InvalidField {
            field: "model",
            expected: "a model name",
        }),
    }
}

fn required_array<'a>(
    body: &'a Map<String, Value>,
    field: &'static str,
    expected: &'static str,
) -> Result<&'a [Value], FilterError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(FilterError::MissingField { field, expected }),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(FilterError::InvalidField { field, expected }),
    }
}

fn optional_bool(body: &Map<String, Value>, field: &'static str) -> Result<bool, FilterError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(_) => Err(FilterError::InvalidField {
            field,
            expected: "true or false",
        }),
    }
}

fn optional_object<'a>(
    body: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a Map<String, Value>>, FilterError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(_) => Err(FilterError::InvalidField {
            field,
            expected: "an object",
        }),
    }
}

fn choice_count(value: Option<&Value>, field: &'static str) -> Result<u64, FilterError> {
    match value {
        None | Some(Value::Null) => Ok(1),
        Some(value) => value
            .as_u64()
            .filter(|n| (1..=MAX_CHOICES).contains(n))
            .ok_or(FilterError::InvalidField {
                field,
                expected: "an integer from 1 to 128",
            }),
    }
}

fn chat_fields(
    body: &Map<String, Value>,
    encoding: Encoding,
    options: &ParseOptions,
) -> Result<Fields, FilterError> {
    let messages = required_array(body, "messages", "an array of messages")?;
    let stream = optional_bool(body, "stream")?;
    let client_wants_usage = optional_object(body, "stream_options")?
        .is_some_and(|options| options.get("include_usage") == Some(&Value::Bool(true)));
    let prompt_tokens =
        tokens::prompt_tokens(encoding, messages, body.get("tools"), options.image_tokens);
    Ok(Fields {
        client_wants_usage,
        choices: choice_count(body.get("n"), "n")?,
        ..Fields::new(
            stream,
            vec![LimitField::MaxTokens, LimitField::MaxCompletionTokens],
            prompt_tokens,
        )
    })
}

fn responses_fields(
    body: &Map<String, Value>,
    encoding: Encoding,
    options: &ParseOptions,
) -> Result<Fields, FilterError> {
    let stream = optional_bool(body, "stream")?;
    let mut prompt_tokens = tokens::REPLY_PRIMING_TOKENS;
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            prompt_tokens += tokens::message_tokens(encoding, "system", text)
        }
        Some(_) => {
            return Err(FilterError::InvalidField {
                field: "instructions",
                expected: "a string",
            })
        }
    }
    match body.get("input") {
        // NOTE: with previous_response_id and no input, the provider adds the stored
        // conversation, which the estimate cannot see; the provider's usage settles it.
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            prompt_tokens += tokens::message_tokens(encoding, "user", text)
        }
        Some(Value::Array(items)) => {
            prompt_tokens += tokens::messages_tokens(encoding, items, options.image_tokens)
        }
        Some(_) => {
            return Err(FilterError::InvalidField {
                field: "input",
                expected: "a string or an array of items",
            })
        }
    }
    prompt_tokens += tokens::json_tokens(encoding, body.get("tools"));
    Ok(Fields::new(
        stream,
        vec![LimitField::MaxOutputTokens],
        prompt_tokens,
    ))
}

fn anthropic_fields(
    body: &Map<String, Value>,
    encoding: Encoding,
    options: &ParseOptions,
) -> Result<Fields, FilterError> {
    let messages = required_array(body, "messages", "an array of messages")?;
    let stream = optional_bool(body, "stream")?;
    let mut prompt_tokens = tokens::REPLY_PRIMING_TOKENS;
    if let Some(system) = body.get("system") {
        prompt_tokens += tokens::content_tokens(encoding, system, options.image_tokens);
    }
    prompt_tokens += tokens::messages_tokens(encoding, messages, options.image_tokens);
    prompt_tokens += tokens::json_tokens(encoding, body.get("tools"));
    Ok(Fields::new(
        stream,
        vec![LimitField::MaxTokens],
        prompt_tokens,
    ))
}

fn gemini_fields(
    body: &Map<String, Value>,
    encoding: Encoding,
    options: &ParseOptions,
    stream: bool,
) -> Result<Fields, FilterError> {
    let contents = required_array(body, "contents", "an array of contents")?;
    let config = optional_object(body, "generationConfig")?;
    let mut prompt_tokens = tokens::REPLY_PRIMING_TOKENS;
    if let Some(system) = body.get("systemInstruction").and_then(|s| s.get("parts")) {
        prompt_tokens += tokens::content_tokens(encoding, system, options.image_tokens);
    }
    for content in contents {
        let role = content
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        let parts = content.get("parts").unwrap_or(&Value::Null);
        prompt_tokens += tokens::TOKENS_PER_MESSAGE
            + encoding.count(role)
            + tokens::content_tokens(encoding, parts, options.image_tokens);
    }
    prompt_tokens += tokens::json_tokens(encoding, body.get("tools"));
    Ok(Fields {
        choices: choice_count(
            config.and_then(|c| c.get("candidateCount")),
            "candidateCount",
        )?,
        ..Fields::new(
            stream,
            vec![LimitField::GeminiMaxOutputTokens],
            prompt_tokens,
        )
    })
}

fn embeddings_fields(body: &Map<String, Value>, encoding: Encoding) -> Result<Fields, FilterError> {
    let expected = "a string, an array of strings or an array of token arrays";
    let prompt_tokens = match body.get("input") {
        None | Some(Value::Null) => {
            return Err(FilterError::MissingField {
                field: "input",
                expected,
            })
        }
        Some(Value::String(text)) => encoding.count(text),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| embedding_input_tokens(encoding, item))
            .sum(),
        Some(_) => {
            return Err(FilterError::InvalidField {
                field: "input",
                expected,
            })
        }
    };
    Ok(Fields::new(false, Vec::new(), prompt_tokens))
}

fn embedding_input_tokens(encoding: Encoding, item: &Value) -> u64 {
    match item {
        Value::String(text) => encoding.count(text),
        // A token array, or a single token id of a flat array.
        Value::Array(ids) => ids.len() as u64,
        _ => 1,
    }
}

fn lookup<'a>(body: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = body.get(*first)?;
    for key in rest {
        value = value.get(*key)?;
    }
    (!value.is_null()).then_some(value)
}

/// Sets `value` at `path`, creating objects on the way and replacing non-objects.
fn set_path(body: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut object = body;
    for key in parents {
        let entry = object
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else {
            return;
        };
        object = next;
    }
    object.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests;
