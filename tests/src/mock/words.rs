//! Generated text in which every word is exactly one token in both o200k_base and cl100k_base,
//! so a count of words is a count of tokens whichever model a request names.

/// Words with their leading space. A unit test checks that each is one token in both encodings.
pub const WORDS: [&str; 32] = [
    " the", " budget", " holds", " every", " request", " to", " its", " limit", " and", " each",
    " stream", " stops", " when", " money", " runs", " out", " so", " no", " one", " pays",
    " more", " than", " they", " set", " for", " a", " team", " in", " this", " test", " of",
    " words",
];

/// Returns `count` words for choice `choice` starting at word `start`, concatenated. Choices
/// start at different words, so that their texts differ.
pub fn text(choice: u64, start: u64, count: u64) -> String {
    let mut text = String::new();
    for position in start..start + count {
        text.push_str(word(choice + position));
    }
    text
}

fn word(index: u64) -> &'static str {
    // The remainder is below WORDS.len(), so the index is in range and fits usize.
    WORDS[(index % WORDS.len() as u64) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Encoding;

    #[test]
    fn each_word_is_one_token() {
        for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
            for word in WORDS {
                assert_eq!(encoding.count(word), 1, "{word:?} in {encoding:?}");
            }
        }
    }

    #[test]
    fn long_text_counts_one_token_per_word() {
        for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
            for choice in 0..3 {
                let generated = text(choice, 5, 500);
                assert_eq!(
                    encoding.count(&generated),
                    500,
                    "choice {choice} in {encoding:?}"
                );
            }
        }
    }

    #[test]
    fn choices_get_different_text() {
        assert_ne!(text(0, 0, 4), text(1, 0, 4));
    }

    #[test]
    fn text_continues_across_chunks() {
        assert_eq!(text(2, 0, 3) + &text(2, 3, 4), text(2, 0, 7));
    }
}
