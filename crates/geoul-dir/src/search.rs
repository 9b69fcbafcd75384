//! Spectator searches: the query text checked against what an instance is.
//!
//! Owns: [`parse_search`] (text → query on the instance table, with every
//! field and literal checked against the entry's fields and kinds) and
//! [`SearchError`]. Does not own: the grammar (`geoul-query`) or running the
//! query (the framework's distributed query, through the service's
//! `Context`).
//!
//! A filter on a field no instance has, or a comparison of a number field
//! with a string, matches nothing under the query language's rules; a
//! spectator who typed `player < 5` or `spectators < "50"` would just see an
//! empty list. Here both are errors that name the field and where it is.

use geoul_client::query_lang::{self, Cursor, Expr, Query};
use geoul_store::Value;

use crate::config::INSTANCES;
use crate::instance::{field_kind, FieldKind, FIELDS};

/// Rows a search returns when the text gives no `limit`: a screenful.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;

/// Why a search was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// The text does not parse (the message points at the spot).
    #[error("{0}")]
    Syntax(String),
    /// A field that no instance has.
    #[error("unknown field `{field}`{at} (fields: {FIELDS})")]
    UnknownField {
        /// The field.
        field: String,
        /// Where it is in the text (", at column N"), if found.
        at: String,
    },
    /// A literal of the wrong kind for its field.
    #[error("`{field}`{at} holds {holds}; {literal} is {kind}")]
    WrongKind {
        /// The field.
        field: String,
        /// Where it is in the text.
        at: String,
        /// What the field holds.
        holds: &'static str,
        /// The literal as written.
        literal: String,
        /// What the literal is.
        kind: &'static str,
    },
    /// A bad `after` cursor.
    #[error("bad cursor: {0}")]
    Cursor(String),
    /// A limit above the node's bound.
    #[error(
        "limit {limit} is above this directory's search_limit_max ({max}); page with the cursor"
    )]
    Limit {
        /// Asked for.
        limit: u32,
        /// Allowed.
        max: u32,
    },
}

/// Where `field` first appears in `text`, as ", at column N" (line too when
/// the text has several).
fn position(text: &str, field: &str) -> String {
    let Some(offset) = text.find(field) else {
        return String::new();
    };
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    if line > 1 {
        format!(", at line {line}, column {col}")
    } else {
        format!(", at column {col}")
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Str(_) => "a string",
        Value::Int(_) | Value::Float(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Bytes(_) => "bytes",
    }
}

fn check_literal(text: &str, field: &str, value: &Value) -> Result<(), SearchError> {
    let kind = field_kind(field).ok_or_else(|| SearchError::UnknownField {
        field: field.to_string(),
        at: position(text, field),
    })?;
    let holds = match kind {
        FieldKind::Any => return Ok(()),
        FieldKind::Str if matches!(value, Value::Str(_)) => return Ok(()),
        FieldKind::Number if matches!(value, Value::Int(_) | Value::Float(_)) => return Ok(()),
        FieldKind::Str => "strings",
        FieldKind::Number => "numbers",
    };
    Err(SearchError::WrongKind {
        field: field.to_string(),
        at: position(text, field),
        holds,
        literal: match value {
            Value::Str(s) => format!("{s:?}"),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Bytes(_) => "a bytes literal".into(),
        },
        kind: kind_name(value),
    })
}

fn check_expr(text: &str, expr: &Expr) -> Result<(), SearchError> {
    // Depth is bounded by the parser (EXPR_DEPTH_MAX), so recursion is too.
    match expr {
        Expr::Cmp { field, value, .. } => check_literal(text, field, value),
        Expr::In { field, values } => values
            .iter()
            .try_for_each(|v| check_literal(text, field, v)),
        Expr::And(xs) | Expr::Or(xs) => xs.iter().try_for_each(|x| check_expr(text, x)),
        Expr::Not(x) => check_expr(text, x),
    }
}

/// Parses a search (`[FILTER] [order by F [asc|desc], …] [limit N]`) on the
/// instance table, checks its fields and literals, and resumes after the
/// `after` cursor of a previous page.
pub fn parse_search(text: &str, after: Option<&str>, limit_max: u32) -> Result<Query, SearchError> {
    let mut query = query_lang::parse_search(INSTANCES, text)
        .map_err(|e| SearchError::Syntax(e.render(text)))?;
    if !has_limit(text) {
        query.limit = DEFAULT_SEARCH_LIMIT.min(limit_max);
    }
    if query.limit > limit_max {
        return Err(SearchError::Limit {
            limit: query.limit,
            max: limit_max,
        });
    }
    if let Some(filter) = &query.filter {
        check_expr(text, filter)?;
    }
    for key in &query.order {
        if field_kind(&key.field).is_none() {
            return Err(SearchError::UnknownField {
                field: key.field.clone(),
                at: position(text, &key.field),
            });
        }
    }
    if let Some(after) = after {
        query.after = Some(Cursor::decode(after).map_err(|e| SearchError::Cursor(e.to_string()))?);
    }
    Ok(query)
}

/// Whether the text names a limit (the grammar's default is for general
/// queries; a search defaults to a screenful).
pub fn has_limit(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '`'))
        .any(|w| w.eq_ignore_ascii_case("limit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spectator_search_parses_with_its_order_and_limit() {
        let q = parse_search(
            "mode = \"ranked\" and region = \"eu\" and state = \"playing\" and spectators < 50 \
             order by rating desc limit 20",
            None,
            1000,
        )
        .expect("parses");
        assert_eq!(q.table, INSTANCES);
        assert_eq!(q.limit, 20);
        assert_eq!(q.order.len(), 1);
        assert!(q.order[0].descending);
    }

    #[test]
    fn no_limit_means_a_screenful_and_a_large_limit_is_refused() {
        assert_eq!(
            parse_search("", None, 1000).expect("every row").limit,
            DEFAULT_SEARCH_LIMIT
        );
        let e = parse_search("limit 5000", None, 1000).expect_err("too many");
        assert_eq!(
            e,
            SearchError::Limit {
                limit: 5000,
                max: 1000
            }
        );
    }

    #[test]
    fn unknown_fields_and_wrong_kinds_are_named_with_their_column() {
        let e = parse_search("player < 5", None, 100).expect_err("unknown");
        let msg = e.to_string();
        assert!(msg.contains("unknown field `player`, at column 1"), "{msg}");
        let e = parse_search("mode = \"x\" and spectators < \"50\"", None, 100).expect_err("kind");
        let msg = e.to_string();
        assert!(
            msg.contains("`spectators`, at column 16 holds numbers; \"50\" is a string"),
            "{msg}"
        );
        let e = parse_search("mode = 3", None, 100).expect_err("kind");
        assert!(e.to_string().contains("holds strings"), "{e}");
        let e = parse_search("order by nope", None, 100).expect_err("order");
        assert!(e.to_string().contains("unknown field `nope`"), "{e}");
        // Tags may hold any kind.
        parse_search("tag.skill >= 3 and tag.voice = true", None, 100).expect("tags");
    }

    #[test]
    fn syntax_errors_point_at_the_spot() {
        let e = parse_search("mode = ", None, 100).expect_err("syntax");
        let SearchError::Syntax(msg) = &e else {
            panic!("{e:?}");
        };
        assert!(msg.contains("column 8"), "{msg}");
        assert!(msg.ends_with('^'), "{msg}");
        let e = parse_search("", Some("not a cursor!"), 100).expect_err("cursor");
        assert!(matches!(e, SearchError::Cursor(_)), "{e:?}");
    }
}
