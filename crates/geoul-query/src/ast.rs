//! The query's syntax tree, its bounds and its canonical text form.
//!
//! Owns: [`Query`], [`Expr`], [`CmpOp`], [`OrderKey`], the bounds every query
//! must respect (`*_MAX` constants) and the canonical text form ([`fmt::Display`]),
//! which the parser reads back into the same tree.
//! Does not own: checking the bounds (`validate`), the binary wire form of
//! [`Expr`] (`wire`), reading text (`parse`) or what a filter means (`eval`).

use std::fmt::{self, Write as _};

use geoul_store::Value;
use serde::{Deserialize, Serialize};

use crate::order::Cursor;

/// Most rows one query returns. Every replica keeps a top-k heap of this size per
/// query and the coordinator merges one page per replica, so the bound caps
/// memory per query at a few MiB; larger result sets page with a cursor.
pub const LIMIT_MAX: u32 = 10_000;
/// Rows returned when the text gives no `limit`: a screenful, cheap to merge.
pub const DEFAULT_LIMIT: u32 = 100;
/// Most `order by` keys. Every sort key and cursor carries one value per key;
/// more than a handful is never needed to make an order useful (the entry key
/// already breaks ties).
pub const ORDER_KEYS_MAX: usize = 8;
/// Most values in all `in` lists of one filter together. Evaluating a document
/// costs one comparison per value, so this and [`EXPR_NODES_MAX`] bound the
/// per-document cost of any filter a client can send.
pub const IN_VALUES_MAX: usize = 1024;
/// Most nodes (predicates and `and`/`or`/`not`) in one filter: far beyond any
/// filter a person writes, small enough that evaluation stays cheap per row.
pub const EXPR_NODES_MAX: usize = 256;
/// Deepest nesting of a filter tree. Evaluation, printing and dropping recurse
/// over the tree, so depth is what bounds their stack use.
pub const EXPR_DEPTH_MAX: usize = 32;
/// Longest query text, in bytes: the CLI and HTTP forms are typed by people;
/// anything longer is a mistake or an attack, refused before parsing.
pub const QUERY_TEXT_MAX: usize = 8192;
/// Longest string or bytes literal in a filter, in bytes. A literal cannot be
/// longer than the text it was written in; queries built in code get the same
/// bound so the two forms accept the same trees.
pub const LITERAL_BYTES_MAX: usize = QUERY_TEXT_MAX;
/// Longest table name: the store's own bound, so every declarable table can be
/// queried.
pub const TABLE_NAME_BYTES_MAX: usize = geoul_store::options::TABLE_NAME_BYTES_MAX;
/// Longest field name: the store's own bound for document fields.
pub const FIELD_NAME_BYTES_MAX: usize = geoul_store::value::FIELD_NAME_BYTES_MAX;

/// The words the text form reserves. A field with one of these names is written
/// in backquotes (`` `order` ``); matching is case-insensitive.
pub const KEYWORDS: [&str; 12] = [
    "where", "and", "or", "not", "in", "order", "by", "asc", "desc", "limit", "true", "false",
];

/// A query: which table, which rows, in which order, how many, from where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Table name (1-48 of `a-z 0-9 _ . -`).
    pub table: String,
    /// Rows must match this filter; `None` = every row.
    pub filter: Option<Expr>,
    /// Sort keys, most significant first; the entry key always breaks ties.
    pub order: Vec<OrderKey>,
    /// Most rows to return (1..=[`LIMIT_MAX`]).
    pub limit: u32,
    /// Resume after this row (the last row of the previous page). Not part of
    /// the text form: it travels beside it (a URL parameter, a CLI flag).
    pub after: Option<Cursor>,
}

impl Query {
    /// Every row of `table`, in key order, [`DEFAULT_LIMIT`] at a time.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            filter: None,
            order: Vec::new(),
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// A filter over a document's fields. Semantics are in `eval`: a comparison on a
/// missing field or across kinds (string vs number) is false.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `field op value`.
    Cmp {
        /// Field name.
        field: String,
        /// Comparison operator.
        op: CmpOp,
        /// Literal compared against.
        value: Value,
    },
    /// `field in (v, …)`: equal to any of the values.
    In {
        /// Field name.
        field: String,
        /// Candidate values (at least one).
        values: Vec<Value>,
    },
    /// Every operand matches (at least two operands).
    And(Vec<Expr>),
    /// Some operand matches (at least two operands).
    Or(Vec<Expr>),
    /// The operand does not match.
    Not(Box<Expr>),
}

impl Expr {
    /// `field op value`.
    pub fn cmp(field: impl Into<String>, op: CmpOp, value: Value) -> Self {
        Self::Cmp {
            field: field.into(),
            op,
            value,
        }
    }

    /// The conjunction of `operands`, collapsed the way the parser builds it: one
    /// operand is returned as is, none gives `None` (no filter).
    pub fn and(mut operands: Vec<Expr>) -> Option<Self> {
        match operands.len() {
            0 => None,
            1 => operands.pop(),
            _ => Some(Self::And(operands)),
        }
    }

    /// The disjunction of `operands`; one operand is returned as is, none gives
    /// `None`.
    pub fn or(mut operands: Vec<Expr>) -> Option<Self> {
        match operands.len() {
            0 => None,
            1 => operands.pop(),
            _ => Some(Self::Or(operands)),
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=` (also written `<>`)
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator's canonical text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }

    /// Whether `field_value op literal` holds, given their order.
    pub fn holds(self, field_vs_literal: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Self::Eq => field_vs_literal == Equal,
            Self::Ne => field_vs_literal != Equal,
            Self::Lt => field_vs_literal == Less,
            Self::Le => field_vs_literal != Greater,
            Self::Gt => field_vs_literal == Greater,
            Self::Ge => field_vs_literal != Less,
        }
    }
}

/// One `order by` key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderKey {
    /// Field name.
    pub field: String,
    /// Largest first (`desc`) instead of smallest first.
    pub descending: bool,
}

impl OrderKey {
    /// Smallest first.
    pub fn asc(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            descending: false,
        }
    }

    /// Largest first.
    pub fn desc(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            descending: true,
        }
    }
}

/// Whether `word` is reserved by the text form (case-insensitive).
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Writes a field name, in backquotes when it is a keyword (or not a plain
/// identifier, so that even an invalid name prints unambiguously).
pub(crate) fn write_field(f: &mut impl fmt::Write, name: &str) -> fmt::Result {
    if crate::validate::valid_field_name(name) && !is_keyword(name) {
        f.write_str(name)
    } else {
        write!(f, "`{name}`")
    }
}

/// Writes a literal so that the parser reads back the same value: strings with
/// escapes, floats always with `.` or an exponent (Rust's `{:?}` is the shortest
/// form that round-trips), bytes as `x"hex"`.
pub(crate) fn write_value(f: &mut impl fmt::Write, value: &Value) -> fmt::Result {
    match value {
        Value::Str(s) => write_string(f, s),
        Value::Int(i) => write!(f, "{i}"),
        Value::Float(x) => write!(f, "{x:?}"),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Bytes(b) => {
            f.write_str("x\"")?;
            for byte in b.iter() {
                write!(f, "{byte:02x}")?;
            }
            f.write_char('"')
        }
    }
}

fn write_string(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            // Other control characters would be invisible or break the line.
            c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Binding strength, loosest first. An expression is printed in a context (the
/// loosest binding allowed there unparenthesised) and gets parentheses when it
/// binds looser than that.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Or,
    And,
    Not,
}

fn write_expr(f: &mut fmt::Formatter<'_>, expr: &Expr, context: Prec) -> fmt::Result {
    let own = match expr {
        Expr::Or(_) => Prec::Or,
        Expr::And(_) => Prec::And,
        _ => Prec::Not,
    };
    let paren = own < context;
    if paren {
        f.write_char('(')?;
    }
    match expr {
        Expr::Cmp { field, op, value } => {
            write_field(f, field)?;
            write!(f, " {} ", op.as_str())?;
            write_value(f, value)?;
        }
        Expr::In { field, values } => {
            write_field(f, field)?;
            f.write_str(" in ")?;
            write_list(f, values)?;
        }
        Expr::Not(inner) => match inner.as_ref() {
            // The parser reads `x not in (…)` as `Not(In)`; print it that way.
            Expr::In { field, values } => {
                write_field(f, field)?;
                f.write_str(" not in ")?;
                write_list(f, values)?;
            }
            inner => {
                f.write_str("not ")?;
                write_expr(f, inner, Prec::Not)?;
            }
        },
        Expr::And(items) | Expr::Or(items) => {
            let sep = if own == Prec::And { " and " } else { " or " };
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                write_expr(f, item, operand_context(own))?;
            }
        }
    }
    if paren {
        f.write_char(')')?;
    }
    Ok(())
}

/// The context an operand of an `and`/`or` is printed in: one level tighter than
/// its parent, so an `and` inside an `or` needs no parentheses but an `or` inside
/// an `or` does (unparenthesised, the parser would flatten `a or (b or c)` into
/// one three-operand `or`, a different tree).
fn operand_context(own: Prec) -> Prec {
    match own {
        Prec::Or => Prec::And,
        _ => Prec::Not,
    }
}

fn write_list(f: &mut impl fmt::Write, values: &[Value]) -> fmt::Result {
    f.write_char('(')?;
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_value(f, v)?;
    }
    f.write_char(')')
}

impl fmt::Display for Expr {
    /// The canonical text form; `parse_search` reads it back into the same tree
    /// (for trees that pass `validate`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, self, Prec::Or)
    }
}

impl fmt::Display for OrderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_field(f, &self.field)?;
        if self.descending {
            f.write_str(" desc")?;
        }
        Ok(())
    }
}

impl fmt::Display for Query {
    /// The canonical text form (`limit` always written, `asc` never); the cursor
    /// is not part of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table)?;
        if let Some(filter) = &self.filter {
            write!(f, " where {filter}")?;
        }
        for (i, key) in self.order.iter().enumerate() {
            f.write_str(if i == 0 { " order by " } else { ", " })?;
            write!(f, "{key}")?;
        }
        write!(f, " limit {}", self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_canonical_text() {
        let q = Query {
            table: "instances".into(),
            filter: Expr::and(vec![
                Expr::cmp("mode", CmpOp::Eq, Value::Str("ranked".into())),
                Expr::Or(vec![
                    Expr::cmp("spectators", CmpOp::Lt, Value::Int(50)),
                    Expr::Not(Box::new(Expr::In {
                        field: "order".into(),
                        values: vec![Value::Float(1.0), Value::Bool(true)],
                    })),
                ]),
            ]),
            order: vec![OrderKey::desc("rating"), OrderKey::asc("id")],
            limit: 20,
            after: None,
        };
        assert_eq!(
            q.to_string(),
            "instances where mode = \"ranked\" and (spectators < 50 or `order` not in (1.0, true)) \
             order by rating desc, id limit 20"
        );
    }

    #[test]
    fn nested_same_kind_and_not_get_parentheses() {
        let a = || Expr::cmp("a", CmpOp::Eq, Value::Int(1));
        let or = Expr::Or(vec![a(), Expr::Or(vec![a(), a()])]);
        assert_eq!(or.to_string(), "a = 1 or (a = 1 or a = 1)");
        let not = Expr::Not(Box::new(Expr::And(vec![a(), a()])));
        assert_eq!(not.to_string(), "not (a = 1 and a = 1)");
        let not_not = Expr::Not(Box::new(Expr::Not(Box::new(a()))));
        assert_eq!(not_not.to_string(), "not not a = 1");
    }

    #[test]
    fn literals_print_so_they_parse_back() {
        let mut s = String::new();
        write_value(&mut s, &Value::Str("a\"b\\c\nd\u{1}é".into())).expect("string");
        assert_eq!(s, r#""a\"b\\c\nd\u{1}é""#);
        let mut s = String::new();
        write_value(&mut s, &Value::Bytes(vec![0, 0xab].into())).expect("bytes");
        assert_eq!(s, "x\"00ab\"");
        let mut s = String::new();
        write_value(&mut s, &Value::Float(1e300)).expect("float");
        assert_eq!(s, "1e300");
    }

    #[test]
    fn ops_hold_as_named() {
        use std::cmp::Ordering::*;
        assert!(CmpOp::Le.holds(Equal) && CmpOp::Le.holds(Less) && !CmpOp::Le.holds(Greater));
        assert!(CmpOp::Ne.holds(Less) && !CmpOp::Ne.holds(Equal));
        assert!(is_keyword("ORDER") && !is_keyword("orders"));
    }
}
