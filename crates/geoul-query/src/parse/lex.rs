//! Tokens of the text form: whitespace, keywords, names, operators, literals.
//!
//! Owns: the parser's input type, its internal failure type and every
//! token-level parser (each skips the whitespace before its token, so a failure
//! points at the token itself).
//! Does not own: the grammar (`parse`) or messages and positions (`error`).
//!
//! There is no separate lexer pass: what a word means depends on where it is (a
//! field name may start with a digit or `-`, so `-5` is a number only where a
//! value is expected), which a parser that reads tokens on demand gets for free.

use geoul_store::Value;
use winnow::ascii::multispace0;
use winnow::error::{ErrMode, ModalResult, ParserError};
use winnow::stream::{Stateful, Stream};
use winnow::token::{take_till, take_while};
use winnow::Parser;

use super::error::{describe, is_value_char, ParseError, ParseErrorKind};
use crate::ast::{is_keyword, CmpOp, FIELD_NAME_BYTES_MAX, LITERAL_BYTES_MAX};
use crate::validate::{is_field_char, valid_table_name};

/// What the grammar counts while it reads, to refuse oversized filters early.
#[derive(Clone, Debug, Default)]
pub(super) struct Counts {
    /// Open parentheses and `not`s around the current position.
    pub(super) nesting: usize,
    /// Filter nodes built so far.
    pub(super) nodes: usize,
    /// Values in `in` lists so far.
    pub(super) in_values: usize,
}

/// The parser's input: the rest of the text plus the counts.
pub(super) type Input<'i> = Stateful<&'i str, Counts>;

/// A parser's result; failures are always committed (`Cut`): the grammar looks
/// ahead before it commits, so no failure is ever a reason to backtrack.
pub(super) type PResult<T> = ModalResult<T, Fail>;

/// A failure, located by how much text was left (the offset is computed once,
/// against the whole text, when the error is reported).
#[derive(Debug)]
pub(super) struct Fail {
    rest: usize,
    what: What,
}

#[derive(Debug)]
enum What {
    /// Something else was needed here; "found" is described from the text.
    Expected(String),
    /// A complete query continued with something that cannot follow.
    Trailing(String),
    Kind(ParseErrorKind),
}

impl ParserError<Input<'_>> for Fail {
    type Inner = Self;

    fn from_input(input: &Input<'_>) -> Self {
        // Only reached if a winnow combinator fails on its own; every token
        // parser here turns those into a specific message first.
        Fail {
            rest: input.eof_offset(),
            what: What::Expected("valid input".into()),
        }
    }

    fn into_inner(self) -> Result<Self, Self> {
        Ok(self)
    }
}

impl Fail {
    /// The public error, located in `text`.
    pub(super) fn into_error(self, text: &str) -> ParseError {
        let offset = text.len().saturating_sub(self.rest);
        let rest = text.get(offset..).unwrap_or("");
        let kind = match self.what {
            What::Kind(kind) => kind,
            What::Expected(expected) if rest.is_empty() => {
                ParseErrorKind::UnexpectedEnd { expected }
            }
            What::Expected(expected) => ParseErrorKind::UnexpectedToken {
                expected,
                found: describe(rest),
            },
            What::Trailing(expected) => ParseErrorKind::TrailingInput {
                expected,
                found: describe(rest),
            },
        };
        ParseError::new(text, offset, kind)
    }
}

/// Fails here: `expected` is what should have come.
pub(super) fn expected<T>(i: &Input<'_>, expected: impl Into<String>) -> PResult<T> {
    Err(ErrMode::Cut(Fail {
        rest: i.eof_offset(),
        what: What::Expected(expected.into()),
    }))
}

/// Fails here: a complete query cannot continue with what follows.
pub(super) fn trailing<T>(i: &Input<'_>, expected: String) -> PResult<T> {
    Err(ErrMode::Cut(Fail {
        rest: i.eof_offset(),
        what: What::Trailing(expected),
    }))
}

/// Fails at the position that had `rest` bytes left.
pub(super) fn fail_at<T>(rest: usize, kind: ParseErrorKind) -> PResult<T> {
    Err(ErrMode::Cut(Fail {
        rest,
        what: What::Kind(kind),
    }))
}

/// Skips whitespace.
pub(super) fn ws(i: &mut Input<'_>) -> PResult<()> {
    multispace0.void().parse_next(i)
}

/// The word at the current position (field characters), not consumed.
pub(super) fn peek_word<'i>(i: &Input<'i>) -> &'i str {
    let s: &'i str = i.input;
    &s[..s.find(|c| !is_field_char(c)).unwrap_or(s.len())]
}

/// Consumes keyword `kw` (case-insensitive, a whole word) if it comes next.
pub(super) fn keyword(i: &mut Input<'_>, kw: &str) -> PResult<bool> {
    ws(i)?;
    let word = peek_word(i);
    if word.eq_ignore_ascii_case(kw) {
        i.next_slice(word.len());
        return Ok(true);
    }
    Ok(false)
}

/// Consumes the single character `c` if it comes next.
pub(super) fn eat(i: &mut Input<'_>, c: char) -> PResult<bool> {
    ws(i)?;
    if i.input.starts_with(c) {
        i.next_slice(c.len_utf8());
        return Ok(true);
    }
    Ok(false)
}

/// The table name of the full form.
pub(super) fn table(i: &mut Input<'_>) -> PResult<String> {
    ws(i)?;
    let start = i.eof_offset();
    let name: &str = take_while(0.., is_field_char).parse_next(i)?;
    if name.is_empty() {
        return expected(i, "a table name");
    }
    if !valid_table_name(name) {
        return fail_at(
            start,
            bad_name("table name", name, "use 1-48 of a-z 0-9 _ . -"),
        );
    }
    Ok(name.to_string())
}

/// A field name, plain or in backquotes; `what` says what was expected here.
pub(super) fn field(i: &mut Input<'_>, what: &str) -> PResult<String> {
    ws(i)?;
    let start = i.eof_offset();
    if i.input.starts_with('`') {
        return backquoted(i, start);
    }
    let name = peek_word(i);
    if name.is_empty() {
        return expected(i, what);
    }
    if is_keyword(name) {
        let hint = format!("{what} (a field named {name} is written `{name}`)");
        return expected(i, hint);
    }
    if name.len() > FIELD_NAME_BYTES_MAX {
        return fail_at(start, bad_name("field name", name, "longer than 64 bytes"));
    }
    i.next_slice(name.len());
    Ok(name.to_string())
}

fn backquoted(i: &mut Input<'_>, start: usize) -> PResult<String> {
    i.next_slice(1);
    let name: &str = take_till(0.., '`').parse_next(i)?;
    if !i.input.starts_with('`') {
        return fail_at(start, bad_name("field name", name, "no closing backquote"));
    }
    i.next_slice(1);
    if name.is_empty() || name.len() > FIELD_NAME_BYTES_MAX || !name.chars().all(is_field_char) {
        return fail_at(
            start,
            bad_name("field name", name, "use 1-64 of A-Z a-z 0-9 _ . -"),
        );
    }
    Ok(name.to_string())
}

fn bad_name(what: &'static str, name: &str, reason: &'static str) -> ParseErrorKind {
    ParseErrorKind::BadIdentifier {
        what,
        name: name.chars().take(FIELD_NAME_BYTES_MAX + 1).collect(),
        reason,
    }
}

/// A comparison operator and its text, if one comes next.
pub(super) fn cmp_op(i: &mut Input<'_>) -> PResult<Option<(CmpOp, &'static str)>> {
    const OPS: [(&str, CmpOp); 7] = [
        // Two-character operators first, so `<=` is not read as `<`.
        ("<=", CmpOp::Le),
        ("<>", CmpOp::Ne),
        (">=", CmpOp::Ge),
        ("!=", CmpOp::Ne),
        ("<", CmpOp::Lt),
        (">", CmpOp::Gt),
        ("=", CmpOp::Eq),
    ];
    ws(i)?;
    for (text, op) in OPS {
        if i.input.starts_with(text) {
            i.next_slice(text.len());
            return Ok(Some((op, text)));
        }
    }
    Ok(None)
}

/// A literal; `after` says where it is (`after "<"`), for the message.
pub(super) fn value(i: &mut Input<'_>, after: &str) -> PResult<Value> {
    ws(i)?;
    let start = i.eof_offset();
    let s: &str = i.input;
    if s.starts_with('"') || s.starts_with('\'') {
        return string(i).map(Value::Str);
    }
    if s.starts_with("x\"") || s.starts_with("X\"") {
        return bytes(i).map(|b| Value::Bytes(b.into()));
    }
    let word = &s[..s.find(|c| !is_value_char(c)).unwrap_or(s.len())];
    let is_number = word.starts_with(|c: char| c.is_ascii_digit() || "-+.".contains(c));
    let value = if word.eq_ignore_ascii_case("true") {
        Value::Bool(true)
    } else if word.eq_ignore_ascii_case("false") {
        Value::Bool(false)
    } else if is_number {
        match number(word) {
            Ok(v) => v,
            Err(kind) => return fail_at(start, kind),
        }
    } else {
        return expected(i, format!("a value {after}"));
    };
    i.next_slice(word.len());
    Ok(value)
}

/// Reads a number literal: `-? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`.
/// Without a fraction or exponent it is an integer and must fit in an `i64`
/// (never silently a float); a float must be finite.
fn number(literal: &str) -> Result<Value, ParseErrorKind> {
    let bad = |reason| ParseErrorKind::BadNumber {
        literal: literal.to_string(),
        reason,
    };
    let body = literal.strip_prefix('-').unwrap_or(literal).as_bytes();
    let digits = |from: usize| {
        body[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let whole = digits(0);
    let mut pos = whole;
    let mut is_float = false;
    if body.get(pos) == Some(&b'.') {
        is_float = true;
        let fraction = digits(pos + 1);
        if whole == 0 && fraction == 0 {
            return Err(bad("no digits"));
        }
        pos += 1 + fraction;
    } else if whole == 0 {
        return Err(bad("not a number"));
    }
    if matches!(body.get(pos), Some(b'e' | b'E')) {
        is_float = true;
        pos += 1;
        if matches!(body.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        let exponent = digits(pos);
        if exponent == 0 {
            return Err(bad("no digits in the exponent"));
        }
        pos += exponent;
    }
    if pos != body.len() {
        return Err(bad("not a number"));
    }
    if !is_float {
        return literal.parse::<i64>().map(Value::Int).map_err(|_| {
            ParseErrorKind::IntegerOverflow {
                literal: literal.to_string(),
            }
        });
    }
    match literal.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Value::Float(x)),
        _ => Err(bad("out of the range of a 64-bit float")),
    }
}

/// A string in double or single quotes, with escapes.
fn string(i: &mut Input<'_>) -> PResult<String> {
    let start = i.eof_offset();
    let quote = i.next_token();
    let mut out = String::new();
    loop {
        let at = i.eof_offset();
        let Some(c) = i.next_token() else {
            return fail_at(start, ParseErrorKind::UnterminatedString);
        };
        match c {
            c if Some(c) == quote => break,
            '\\' => out.push(escape(i, start, at)?),
            c => out.push(c),
        }
    }
    // A literal cannot outgrow the text it is written in, so it is within the
    // bound `validate` applies.
    debug_assert!(out.len() <= LITERAL_BYTES_MAX);
    Ok(out)
}

/// The character an escape stands for; `at` is the backslash.
fn escape(i: &mut Input<'_>, start: usize, at: usize) -> PResult<char> {
    let Some(c) = i.next_token() else {
        return fail_at(start, ParseErrorKind::UnterminatedString);
    };
    Ok(match c {
        '"' => '"',
        '\'' => '\'',
        '\\' => '\\',
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'u' => return unicode_escape(i, at),
        other => {
            return fail_at(
                at,
                ParseErrorKind::BadEscape {
                    escape: format!("\\{other}"),
                },
            )
        }
    })
}

/// `\u{HEX}` after the `\u`: 1-6 hex digits naming a Unicode scalar value.
fn unicode_escape(i: &mut Input<'_>, at: usize) -> PResult<char> {
    let s: &str = i.input;
    // `{` + at most 6 digits + `}`: look no further than 8 characters.
    let close = s
        .char_indices()
        .take(8)
        .find(|&(_, c)| c == '}')
        .map(|(n, _)| n);
    let parsed = match close {
        Some(close) if s.starts_with('{') => {
            let hex = &s[1..close];
            let ok = (1..=6).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit());
            ok.then(|| u32::from_str_radix(hex, 16).ok().and_then(char::from_u32))
                .flatten()
                .map(|c| (c, close + 1))
        }
        _ => None,
    };
    match parsed {
        Some((c, len)) => {
            i.next_slice(len);
            Ok(c)
        }
        None => {
            let shown: String = s.chars().take(close.map_or(0, |n| n + 1).max(1)).collect();
            fail_at(
                at,
                ParseErrorKind::BadEscape {
                    escape: format!("\\u{shown}"),
                },
            )
        }
    }
}

/// `x"hex"`: an even number of hex digits.
fn bytes(i: &mut Input<'_>) -> PResult<Vec<u8>> {
    let start = i.eof_offset();
    i.next_slice(2);
    let hex: &str = take_till(0.., '"').parse_next(i)?;
    if !i.input.starts_with('"') {
        return fail_at(start, ParseErrorKind::UnterminatedString);
    }
    i.next_slice(1);
    let bad = |reason| fail_at(start, ParseErrorKind::BadBytes { reason });
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad("only hex digits may appear between the quotes");
    }
    if hex.len() % 2 != 0 {
        return bad("an odd number of hex digits");
    }
    debug_assert!(hex.len() / 2 <= LITERAL_BYTES_MAX);
    // Every pair is two ASCII hex digits (checked above), so this never fails.
    (0..hex.len())
        .step_by(2)
        .map(|n| u8::from_str_radix(&hex[n..n + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .or_else(|_| bad("only hex digits may appear between the quotes"))
}
