//! The streamed response: `chat.completion.chunk` events produced one at a time, with a guard
//! that records a client that went away before the last event.

use super::records::{update, SharedRecord};
use super::wire::{ChatCompletionChunk, ChunkChoice, Delta, Usage, CHUNK_OBJECT};
use super::{words, Plan, Rng};
use bytes::Bytes;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

/// Maximum length of the obfuscation padding, in characters.
const MAX_OBFUSCATION_CHARS: usize = 16;

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
#[derive(Debug, Clone, Copy)]
pub struct StreamShape {
    /// Tokens per content event per choice.
    pub tokens_per_chunk: u64,
    /// Pause before each content event.
    pub chunk_delay: Duration,
    /// Events carry a `usage` field: null, then the totals on a last event with no choices.
    pub usage_field: bool,
    /// Events carry an `obfuscation` padding field.
    pub obfuscation: bool,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Role { choice: u64 },
    Content { choice: u64, start: u64, count: u64 },
    Finish { choice: u64 },
    Usage,
    Done,
}

/// Lays out the events: a role event per choice, content events taking turns between
/// choices, a finish event per choice, the usage event when asked for, then `[DONE]`.
fn steps(plan: &Plan, shape: &StreamShape) -> VecDeque<Step> {
    let mut steps = VecDeque::new();
    for choice in 0..plan.choices {
        steps.push_back(Step::Role { choice });
    }
    let mut start = 0;
    while start < plan.tokens_per_choice {
        let count = shape.tokens_per_chunk.min(plan.tokens_per_choice - start);
        for choice in 0..plan.choices {
            steps.push_back(Step::Content {
                choice,
                start,
                count,
            });
        }
        start += count;
    }
    for choice in 0..plan.choices {
        steps.push_back(Step::Finish { choice });
    }
    if shape.usage_field {
        steps.push_back(Step::Usage);
    }
    steps.push_back(Step::Done);
    steps
}

/// Marks the record when the body is dropped before its last event went out, which is how a
/// server detects a client or proxy that closed the connection.
struct CloseGuard {
    record: SharedRecord,
    finished: bool,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if !self.finished {
            update(&self.record, |record| record.client_closed_early = true);
            tracing::debug!("client closed the stream before its last event");
        }
    }
}

struct StreamState {
    header: StreamHeader,
    plan: Plan,
    shape: StreamShape,
    prompt_tokens: u64,
    steps: VecDeque<Step>,
    rng: Rng,
    guard: CloseGuard,
}

impl StreamState {
    fn render(&mut self, step: Step) -> Bytes {
        let (choices, usage) = match step {
            Step::Role { choice } => (vec![choice_delta(choice, Delta::role(), None)], None),
            Step::Content {
                choice,
                start,
                count,
            } => {
                update(&self.guard.record, |record| {
                    record.generated_tokens += count
                });
                let delta = Delta::content(words::text(choice, start, count));
                (vec![choice_delta(choice, delta, None)], None)
            }
            Step::Finish { choice } => {
                let finish = Some(self.plan.finish_reason);
                (vec![choice_delta(choice, Delta::default(), finish)], None)
            }
            Step::Usage => {
                let completion = self.plan.total_tokens();
                (Vec::new(), Some(Usage::new(self.prompt_tokens, completion)))
            }
            Step::Done => {
                self.guard.finished = true;
                update(&self.guard.record, |record| record.completed = true);
                return Bytes::from_static(b"data: [DONE]\n\n");
            }
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
        // Serializing these plain structs cannot fail, so the fallback is never sent.
        let json = serde_json::to_string(&chunk).unwrap_or_default();
        Bytes::from(format!("data: {json}\n\n"))
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

/// Returns the event stream of one response. Each content event adds its tokens to the
/// record's `generated_tokens` as it is produced, so the count is right even when the client
/// goes away mid-stream.
pub fn events(
    header: StreamHeader,
    plan: Plan,
    shape: StreamShape,
    prompt_tokens: u64,
    record: SharedRecord,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    let state = StreamState {
        steps: steps(&plan, &shape),
        header,
        plan,
        shape,
        prompt_tokens,
        rng: Rng::new(),
        guard: CloseGuard {
            record,
            finished: false,
        },
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let step = state.steps.pop_front()?;
        if matches!(step, Step::Content { .. }) && !state.shape.chunk_delay.is_zero() {
            tokio::time::sleep(state.shape.chunk_delay).await;
        }
        let bytes = state.render(step);
        Some((Ok(bytes), state))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(tokens_per_chunk: u64, usage_field: bool) -> StreamShape {
        StreamShape {
            tokens_per_chunk,
            chunk_delay: Duration::ZERO,
            usage_field,
            obfuscation: false,
        }
    }

    #[test]
    fn steps_split_tokens_into_chunks() {
        let plan = Plan {
            choices: 1,
            tokens_per_choice: 5,
            finish_reason: "stop",
        };
        let counts: Vec<u64> = steps(&plan, &shape(2, false))
            .into_iter()
            .filter_map(|step| match step {
                Step::Content { count, .. } => Some(count),
                _ => None,
            })
            .collect();
        assert_eq!(counts, vec![2, 2, 1]);
    }

    #[test]
    fn steps_take_turns_between_choices() {
        let plan = Plan {
            choices: 2,
            tokens_per_choice: 2,
            finish_reason: "stop",
        };
        let choices: Vec<u64> = steps(&plan, &shape(1, true))
            .into_iter()
            .filter_map(|step| match step {
                Step::Content { choice, .. } => Some(choice),
                _ => None,
            })
            .collect();
        assert_eq!(choices, vec![0, 1, 0, 1]);
    }

    #[test]
    fn usage_step_comes_before_done() {
        let plan = Plan {
            choices: 1,
            tokens_per_choice: 1,
            finish_reason: "stop",
        };
        let all: Vec<Step> = steps(&plan, &shape(1, true)).into_iter().collect();
        assert!(matches!(
            all.as_slice(),
            [.., Step::Finish { .. }, Step::Usage, Step::Done]
        ));
    }
}
