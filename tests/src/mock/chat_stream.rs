//! The streamed chat completion: `chat.completion.chunk` events for OpenAI and for Azure
//! OpenAI, rendered one at a time.

use super::azure;
use super::events::{data_event, to_json, Event, EventSource};
use super::plan::{pieces, Piece, Plan, TokenCounts};
use super::wire::{
    ChatCompletionChunk, ChunkChoice, Delta, ErrorBody, ErrorDetail, FunctionCall, ToolCallDelta,
    Usage, CHUNK_OBJECT,
};
use super::{words, Rng};
use std::collections::VecDeque;

/// Maximum length of the obfuscation padding, in characters.
const MAX_OBFUSCATION_CHARS: usize = 16;

/// Which service's variant of the format to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// api.openai.com: `service_tier`, `obfuscation`, `usage: null` on every chunk when usage
    /// was requested.
    OpenAi,
    /// Azure OpenAI: keys in alphabetical order, a first chunk with only the prompt's content
    /// filter results, `content_filter_results` on each choice, no `service_tier`.
    Azure,
}

/// What the visible output of each choice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `content` text.
    Text,
    /// `refusal` text.
    Refusal,
    /// Arguments of one tool call per choice.
    ToolCalls,
}

impl OutputKind {
    /// Returns the finish reason of a choice that ended on its own.
    pub fn natural_finish(self) -> &'static str {
        match self {
            OutputKind::ToolCalls => "tool_calls",
            OutputKind::Text | OutputKind::Refusal => "stop",
        }
    }
}

/// Fields that a streamed response repeats on each event.
#[derive(Debug, Clone)]
pub struct StreamHeader {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub service_tier: String,
    pub system_fingerprint: Option<String>,
}

/// Layout of the events of one streamed response.
#[derive(Debug, Clone)]
pub struct StreamShape {
    /// Tokens per content event per choice.
    pub tokens_per_chunk: u64,
    /// Events carry a `usage` field: null, then the totals on a last event with no choices.
    pub usage_field: bool,
    /// Events carry an `obfuscation` padding field.
    pub obfuscation: bool,
    /// What the output is.
    pub kind: OutputKind,
    /// Name of the function that tool calls name.
    pub tool_name: String,
    /// Output tokens after which the stream ends with an error event.
    pub error_after: Option<u64>,
    /// OpenAI or Azure.
    pub flavour: Flavour,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    PromptFilter,
    Role { choice: u64 },
    Output(Piece),
    Finish { choice: u64 },
    Usage,
    Error,
    Done,
}

/// Lays out the events: Azure's prompt filter event, a role event per choice, output events
/// taking turns between choices, a finish event per choice, the usage event when asked for,
/// then `[DONE]`. A stream with `error_after` ends with the error event after its output.
fn steps(plan: &Plan, shape: &StreamShape) -> VecDeque<Step> {
    let mut steps = VecDeque::new();
    if shape.flavour == Flavour::Azure {
        steps.push_back(Step::PromptFilter);
    }
    steps.extend((0..plan.choices).map(|choice| Step::Role { choice }));
    let output = pieces(plan, shape.tokens_per_chunk, shape.error_after);
    steps.extend(output.into_iter().map(Step::Output));
    if shape.error_after.is_some() {
        steps.push_back(Step::Error);
        return steps;
    }
    steps.extend((0..plan.choices).map(|choice| Step::Finish { choice }));
    if shape.usage_field {
        steps.push_back(Step::Usage);
    }
    steps.push_back(Step::Done);
    steps
}

/// The event source of one streamed chat completion.
pub struct ChatStream {
    header: StreamHeader,
    plan: Plan,
    shape: StreamShape,
    counts: TokenCounts,
    steps: VecDeque<Step>,
    tool_call_ids: Vec<String>,
    rng: Rng,
}

impl ChatStream {
    /// Returns the events of a response that generates `plan` and reports `counts`.
    pub fn new(
        header: StreamHeader,
        plan: Plan,
        shape: StreamShape,
        counts: TokenCounts,
    ) -> ChatStream {
        let mut rng = Rng::new();
        let tool_call_ids = (0..plan.choices)
            .map(|_| format!("call_{}", rng.alphanumeric(24)))
            .collect();
        ChatStream {
            steps: steps(&plan, &shape),
            header,
            plan,
            shape,
            counts,
            tool_call_ids,
            rng,
        }
    }

    fn first_delta(&self, choice: u64) -> Delta {
        match self.shape.kind {
            OutputKind::Text => Delta::role(),
            OutputKind::Refusal => Delta {
                role: Some("assistant"),
                content: Some(None),
                refusal: Some(Some(String::new())),
                ..Delta::default()
            },
            OutputKind::ToolCalls => Delta {
                role: Some("assistant"),
                content: Some(None),
                tool_calls: Some(vec![ToolCallDelta {
                    index: 0,
                    id: self.tool_call_ids.get(choice as usize).cloned(),
                    kind: Some("function"),
                    function: FunctionCall {
                        name: Some(self.shape.tool_name.clone()),
                        arguments: String::new(),
                    },
                }]),
                refusal: Some(None),
            },
        }
    }

    fn output_delta(&self, piece: Piece) -> Delta {
        let text = words::text(piece.choice, piece.start, piece.count);
        match self.shape.kind {
            OutputKind::Text => Delta::content(text),
            OutputKind::Refusal => Delta {
                refusal: Some(Some(text)),
                ..Delta::default()
            },
            OutputKind::ToolCalls => Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index: 0,
                    id: None,
                    kind: None,
                    function: FunctionCall {
                        name: None,
                        arguments: text,
                    },
                }]),
                ..Delta::default()
            },
        }
    }

    fn render(&mut self, step: Step) -> Event {
        let (choices, usage, output_tokens) = match step {
            Step::PromptFilter => return Event::plain(azure::prompt_filter_event()),
            Step::Error => return Event::plain(data_event(&to_json(&stream_error()))),
            Step::Done => return Event::plain("data: [DONE]\n\n"),
            Step::Role { choice } => {
                let delta = self.first_delta(choice);
                let hidden = self.plan.hidden_per_choice();
                (vec![choice_delta(choice, delta, None)], None, hidden)
            }
            Step::Output(piece) => {
                let delta = self.output_delta(piece);
                let choices = vec![choice_delta(piece.choice, delta, None)];
                (choices, None, piece.count)
            }
            Step::Finish { choice } => {
                let finish = self.plan.finish_reason(self.shape.kind.natural_finish());
                let choices = vec![choice_delta(choice, Delta::default(), Some(finish))];
                (choices, None, 0)
            }
            Step::Usage => (Vec::new(), Some(Usage::from_counts(&self.counts)), 0),
        };
        let chunk = ChatCompletionChunk {
            id: &self.header.id,
            object: CHUNK_OBJECT,
            created: self.header.created,
            model: &self.header.model,
            service_tier: &self.header.service_tier,
            system_fingerprint: self.header.system_fingerprint.as_deref(),
            choices,
            usage: self.shape.usage_field.then_some(usage),
            obfuscation: self.shape.obfuscation.then(|| {
                let length = 1 + self.rng.below(MAX_OBFUSCATION_CHARS as u64) as usize;
                self.rng.alphanumeric(length)
            }),
        };
        let json = match self.shape.flavour {
            Flavour::OpenAi => to_json(&chunk),
            Flavour::Azure => to_json(&azure::chunk_value(&chunk)),
        };
        let event = data_event(&json);
        if matches!(step, Step::Output(_)) {
            Event::output(event, output_tokens)
        } else {
            Event {
                output_tokens,
                ..Event::plain(event)
            }
        }
    }
}

impl EventSource for ChatStream {
    fn next_event(&mut self) -> Option<Event> {
        let step = self.steps.pop_front()?;
        Some(self.render(step))
    }
}

/// Returns the error event that OpenAI sends when a stream fails after it started.
fn stream_error() -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            message: "The server failed while generating this response: retry the request."
                .to_owned(),
            kind: "server_error",
            param: None,
            code: None,
        },
    }
}

fn choice_delta(index: u64, delta: Delta, finish_reason: Option<&'static str>) -> ChunkChoice {
    ChunkChoice {
        index,
        delta,
        logprobs: None,
        finish_reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::knobs::{KnobDefaults, Knobs};
    use axum::http::HeaderMap;

    fn shape(error_after: Option<u64>, flavour: Flavour) -> StreamShape {
        StreamShape {
            tokens_per_chunk: 1,
            usage_field: true,
            obfuscation: false,
            kind: OutputKind::Text,
            tool_name: "f".into(),
            error_after,
            flavour,
        }
    }

    fn plan(tokens: u64) -> Plan {
        let knobs = Knobs {
            output_tokens: tokens,
            ..Knobs::from_headers(KnobDefaults::default(), &HeaderMap::new()).unwrap()
        };
        Plan::new(1, None, &knobs)
    }

    #[test]
    fn usage_step_comes_before_done() {
        let all: Vec<Step> = steps(&plan(1), &shape(None, Flavour::OpenAi)).into();
        assert!(matches!(
            all.as_slice(),
            [.., Step::Finish { .. }, Step::Usage, Step::Done]
        ));
    }

    #[test]
    fn azure_starts_with_prompt_filter() {
        let all: Vec<Step> = steps(&plan(1), &shape(None, Flavour::Azure)).into();
        assert!(matches!(
            all.as_slice(),
            [Step::PromptFilter, Step::Role { .. }, ..]
        ));
    }

    #[test]
    fn error_after_ends_with_error() {
        let all: Vec<Step> = steps(&plan(9), &shape(Some(3), Flavour::OpenAi)).into();
        let outputs = all.iter().filter(|s| matches!(s, Step::Output(_))).count();
        assert_eq!(outputs, 3);
        assert!(matches!(all.last(), Some(Step::Error)));
    }
}
