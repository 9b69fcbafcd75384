//! Parse errors: what went wrong, where, and how to show it.
//!
//! Owns: [`ParseError`], [`ParseErrorKind`], positions (byte offset → line and
//! column) and [`ParseError::render`]. Does not own: deciding what is an error
//! (the grammar in `parse`).

use crate::ast::{
    is_keyword, EXPR_DEPTH_MAX, EXPR_NODES_MAX, IN_VALUES_MAX, LIMIT_MAX, ORDER_KEYS_MAX,
    QUERY_TEXT_MAX,
};

/// Why a text is not a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The text ended where something else was required.
    #[error("expected {expected}, found end of input")]
    UnexpectedEnd {
        /// What could have come next.
        expected: String,
    },
    /// A token that cannot appear here.
    #[error("expected {expected}, found {found}")]
    UnexpectedToken {
        /// What could have come next.
        expected: String,
        /// What came instead.
        found: String,
    },
    /// A complete query was followed by something that cannot continue it.
    #[error("expected {expected}, found {found} after a complete query")]
    TrailingInput {
        /// What could have continued the query.
        expected: String,
        /// What came instead.
        found: String,
    },
    /// A string literal without its closing quote.
    #[error("unterminated string: no closing quote")]
    UnterminatedString,
    /// An escape sequence that is not one of `\" \' \\ \n \t \r \u{HEX}`.
    #[error("bad escape `{escape}` in string (use \\\" \\' \\\\ \\n \\t \\r or \\u{{HEX}})")]
    BadEscape {
        /// The escape as written.
        escape: String,
    },
    /// An integer literal outside `i64`.
    #[error("integer {literal} does not fit in 64 bits")]
    IntegerOverflow {
        /// The literal as written.
        literal: String,
    },
    /// A malformed or infinite number.
    #[error("bad number {literal:?}: {reason}")]
    BadNumber {
        /// The literal as written.
        literal: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A malformed bytes literal (`x"hex"`).
    #[error("bad bytes literal: {reason}")]
    BadBytes {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `limit` outside `1..=LIMIT_MAX`.
    #[error("limit {literal} is out of range (1 to {LIMIT_MAX})")]
    LimitOutOfRange {
        /// The number as written.
        literal: String,
    },
    /// The text is longer than [`QUERY_TEXT_MAX`] bytes.
    #[error("query is {len} bytes (at most {QUERY_TEXT_MAX})")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Parentheses, `not`s or operators nested deeper than [`EXPR_DEPTH_MAX`].
    #[error("filter is nested more than {EXPR_DEPTH_MAX} levels deep")]
    TooDeep,
    /// More than [`EXPR_NODES_MAX`] predicates and operators.
    #[error("filter has more than {EXPR_NODES_MAX} terms")]
    TooComplex,
    /// More than [`ORDER_KEYS_MAX`] order keys.
    #[error("more than {ORDER_KEYS_MAX} order keys")]
    TooManyOrderKeys,
    /// More than [`IN_VALUES_MAX`] values in all `in` lists together.
    #[error("more than {IN_VALUES_MAX} values in in lists")]
    TooManyInValues,
    /// `in ()`.
    #[error("empty in list")]
    EmptyInList,
    /// A table or field name that breaks its rule.
    #[error("bad {what} {name:?}: {reason}")]
    BadIdentifier {
        /// "table name" or "field name".
        what: &'static str,
        /// The name as written.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
}

/// A parse error at a position in the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct ParseError {
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// Byte offset into the text.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl ParseError {
    /// An error of `kind` at byte `offset` of `text` (clamped to the text and
    /// to a character boundary, so any offset is safe).
    pub fn new(text: &str, offset: usize, kind: ParseErrorKind) -> Self {
        let offset = floor_char_boundary(text, offset);
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self {
            kind,
            offset,
            line,
            column,
        }
    }

    /// The message, then the offending line of `text` with a `^` under the
    /// position (tabs are kept so the caret lines up in a terminal).
    pub fn render(&self, text: &str) -> String {
        let offset = floor_char_boundary(text, self.offset);
        let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        let line = text[line_start..line_end].trim_end_matches('\r');
        let pad: String = text[line_start..offset]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!("{self}\n{line}\n{pad}^")
    }
}

/// The largest character boundary at or before `offset`.
pub(crate) fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Longest token text quoted in a message.
const FOUND_CHARS_MAX: usize = 24;

/// Describes the token at the start of `rest` for "found …".
pub(crate) fn describe(rest: &str) -> String {
    let Some(first) = rest.chars().next() else {
        return "end of input".into();
    };
    match first {
        '"' | '\'' => return "a string".into(),
        '`' => return "a backquoted name".into(),
        _ => {}
    }
    let word_len = rest.find(|c| !is_value_char(c)).unwrap_or(rest.len());
    let word = &rest[..word_len];
    if !word.is_empty() {
        let shown: String = word.chars().take(FOUND_CHARS_MAX).collect();
        let ellipsis = if shown.len() < word.len() { "…" } else { "" };
        let keyword = if is_keyword(word) { "keyword " } else { "" };
        return format!("{keyword}\"{shown}{ellipsis}\"");
    }
    for op in ["<=", "<>", ">=", "!=", "<", ">", "="] {
        if rest.starts_with(op) {
            return format!("\"{op}\"");
        }
    }
    format!("{:?}", first.to_string())
}

/// A character of a word in value position (numbers, `true`, stray words):
/// field characters plus `+` (exponents).
pub(crate) fn is_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-+".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a\nbé c";
        let err = ParseError::new(text, 5, ParseErrorKind::EmptyInList);
        assert_eq!((err.line, err.column), (2, 3));
        // Inside a multi-byte character: clamped to its start.
        let err = ParseError::new(text, 4, ParseErrorKind::EmptyInList);
        assert_eq!((err.offset, err.line, err.column), (3, 2, 2));
        let err = ParseError::new(text, 99, ParseErrorKind::EmptyInList);
        assert_eq!(err.offset, text.len());
    }

    #[test]
    fn renders_the_line_with_a_caret() {
        let text = "t where\n\tx <";
        let err = ParseError::new(
            text,
            text.len(),
            ParseErrorKind::UnexpectedEnd {
                expected: "a value after \"<\"".into(),
            },
        );
        assert_eq!(
            err.render(text),
            "line 2, column 5: expected a value after \"<\", found end of input\n\tx <\n\t   ^"
        );
    }

    #[test]
    fn describes_tokens() {
        assert_eq!(describe(""), "end of input");
        assert_eq!(describe("\"abc\""), "a string");
        assert_eq!(describe("order by"), "keyword \"order\"");
        assert_eq!(describe("1.5e+3)"), "\"1.5e+3\"");
        assert_eq!(describe("<= 3"), "\"<=\"");
        assert_eq!(describe(")"), "\")\"");
        assert_eq!(
            describe(&"x".repeat(30)),
            format!("\"{}…\"", "x".repeat(24))
        );
    }
}
