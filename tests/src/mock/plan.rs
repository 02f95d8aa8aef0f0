//! What one request generates, whatever the provider format: the output per choice, the
//! streamed pieces of it and the token counts that the usage fields report.

use super::knobs::Knobs;

/// Output that one request generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Number of choices (candidates).
    pub choices: u64,
    /// Visible output tokens of each choice: text, refusal or tool call arguments.
    pub tokens_per_choice: u64,
    /// Reasoning tokens of each choice. OpenAI and Gemini never stream them; Anthropic streams
    /// them as thinking.
    pub reasoning_per_choice: u64,
    /// Audio output tokens of each choice, never streamed as text.
    pub audio_per_choice: u64,
    /// True when the request's maximum cut the output.
    pub truncated: bool,
}

impl Plan {
    /// Applies the request's maximum per choice, `max`, to the output that the knobs request,
    /// unless `ignore_max_tokens` is set. Reasoning comes first, then audio, then visible
    /// output, because the maximum counts all three.
    pub fn new(choices: u64, max: Option<u64>, knobs: &Knobs) -> Plan {
        let wanted = [
            knobs.reasoning_tokens,
            knobs.audio_completion_tokens,
            knobs.output_tokens,
        ];
        let mut left = match max {
            Some(max) if !knobs.ignore_max_tokens => max,
            _ => u64::MAX,
        };
        let mut granted = [0u64; 3];
        for (slot, want) in granted.iter_mut().zip(wanted) {
            *slot = want.min(left);
            left -= *slot;
        }
        Plan {
            choices,
            reasoning_per_choice: granted[0],
            audio_per_choice: granted[1],
            tokens_per_choice: granted[2],
            truncated: granted != wanted,
        }
    }

    /// Visible output tokens over all choices.
    pub fn visible_tokens(&self) -> u64 {
        self.choices.saturating_mul(self.tokens_per_choice)
    }

    /// Tokens of each choice that are generated but not streamed as visible output.
    pub fn hidden_per_choice(&self) -> u64 {
        self.reasoning_per_choice + self.audio_per_choice
    }

    /// Returns every output token over all choices, hidden ones included.
    pub fn completion_tokens(&self) -> u64 {
        let per_choice = self.tokens_per_choice + self.hidden_per_choice();
        self.choices.saturating_mul(per_choice)
    }

    /// Chat's finish reason: `length` when the maximum cut the output, else `natural`.
    pub fn finish_reason(&self, natural: &'static str) -> &'static str {
        if self.truncated {
            "length"
        } else {
            natural
        }
    }
}

/// A streamed run of visible output tokens of one choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index of the choice.
    pub choice: u64,
    /// Position of the first token in the choice's output.
    pub start: u64,
    /// Number of tokens.
    pub count: u64,
}

/// Splits the visible output into pieces of `tokens_per_chunk` tokens, taking turns between
/// choices. With `error_after`, the pieces stop once that many tokens went out over all
/// choices.
pub fn pieces(plan: &Plan, tokens_per_chunk: u64, error_after: Option<u64>) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut budget = error_after.unwrap_or(u64::MAX);
    let mut start = 0;
    while start < plan.tokens_per_choice {
        let count = tokens_per_chunk.max(1).min(plan.tokens_per_choice - start);
        for choice in 0..plan.choices {
            if budget == 0 {
                return pieces;
            }
            let count = count.min(budget);
            budget -= count;
            pieces.push(Piece {
                choice,
                start,
                count,
            });
        }
        start += count;
    }
    pieces
}

/// Token counts of one response in the provider-neutral split that every usage format
/// derives from. The input parts are parts of `prompt`, the output parts parts of
/// `completion`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Every input token.
    pub prompt: u64,
    /// Input tokens read from the cache.
    pub cached: u64,
    /// Input tokens written to a 5-minute cache.
    pub cache_write_5m: u64,
    /// Input tokens written to a 1-hour cache.
    pub cache_write_1h: u64,
    /// Input audio tokens.
    pub audio_prompt: u64,
    /// Every output token over all choices.
    pub completion: u64,
    /// Reasoning tokens over all choices.
    pub reasoning: u64,
    /// Output audio tokens over all choices.
    pub audio_completion: u64,
}

impl TokenCounts {
    /// Returns the counts of a prompt of `text_prompt` tokens and the whole `plan`. Audio
    /// input adds to the prompt; cache reads and writes are parts of the text prompt, each
    /// lowered to what the parts before it left.
    pub fn new(text_prompt: u64, plan: &Plan, knobs: &Knobs) -> TokenCounts {
        let mut left = text_prompt;
        let mut take = |wanted: u64| {
            let granted = wanted.min(left);
            left -= granted;
            granted
        };
        let cached = take(knobs.cached_tokens);
        let cache_write_5m = take(knobs.cache_write_5m_tokens);
        let cache_write_1h = take(knobs.cache_write_1h_tokens);
        TokenCounts {
            prompt: text_prompt + knobs.audio_prompt_tokens,
            cached,
            cache_write_5m,
            cache_write_1h,
            audio_prompt: knobs.audio_prompt_tokens,
            completion: plan.completion_tokens(),
            reasoning: plan.choices * plan.reasoning_per_choice,
            audio_completion: plan.choices * plan.audio_per_choice,
        }
    }

    /// Returns these counts with `visible` visible output tokens generated so far, after every
    /// hidden token.
    pub fn with_visible(self, visible: u64) -> TokenCounts {
        TokenCounts {
            completion: self.reasoning + self.audio_completion + visible,
            ..self
        }
    }

    /// Input tokens that are neither cache reads nor cache writes: Anthropic's `input_tokens`.
    pub fn uncached_prompt(&self) -> u64 {
        self.prompt - self.cached - self.cache_write_5m - self.cache_write_1h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::knobs::KnobDefaults;
    use axum::http::HeaderMap;

    fn knobs() -> Knobs {
        Knobs::from_headers(KnobDefaults::default(), &HeaderMap::new()).unwrap()
    }

    #[test]
    fn maximum_cuts_visible_output() {
        let plan = Plan::new(1, Some(5), &knobs());
        assert_eq!(plan.tokens_per_choice, 5);
        assert!(plan.truncated);
        assert_eq!(plan.finish_reason("stop"), "length");
    }

    #[test]
    fn reasoning_counts_against_maximum_first() {
        let knobs = Knobs {
            reasoning_tokens: 8,
            ..knobs()
        };
        let plan = Plan::new(2, Some(10), &knobs);
        assert_eq!(plan.reasoning_per_choice, 8);
        assert_eq!(plan.tokens_per_choice, 2);
        assert_eq!(plan.completion_tokens(), 20);
    }

    #[test]
    fn ignore_max_tokens_keeps_everything() {
        let knobs = Knobs {
            ignore_max_tokens: true,
            ..knobs()
        };
        let plan = Plan::new(1, Some(5), &knobs);
        assert_eq!(plan.tokens_per_choice, 20);
        assert!(!plan.truncated);
    }

    #[test]
    fn pieces_take_turns_between_choices() {
        let plan = Plan::new(2, Some(3), &knobs());
        let choices: Vec<u64> = pieces(&plan, 2, None).iter().map(|p| p.choice).collect();
        assert_eq!(choices, vec![0, 1, 0, 1]);
    }

    #[test]
    fn pieces_stop_at_error_after() {
        let plan = Plan::new(1, None, &knobs());
        let counts: Vec<u64> = pieces(&plan, 4, Some(10)).iter().map(|p| p.count).collect();
        assert_eq!(counts, vec![4, 4, 2]);
    }

    #[test]
    fn cache_parts_never_exceed_text_prompt() {
        let knobs = Knobs {
            cached_tokens: 6,
            cache_write_5m_tokens: 6,
            audio_prompt_tokens: 4,
            ..knobs()
        };
        let counts = TokenCounts::new(10, &Plan::new(1, None, &knobs), &knobs);
        assert_eq!(counts.prompt, 14);
        assert_eq!(counts.cached, 6);
        assert_eq!(counts.cache_write_5m, 4);
        assert_eq!(counts.uncached_prompt(), 4);
    }
}
