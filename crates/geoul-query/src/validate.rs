//! Complete validation of a query tree, for queries that arrive from the network.
//!
//! Owns: [`QueryError`], [`Query::validate`], [`Expr::validate`] and the name
//! rules for tables and fields.
//! Does not own: the bounds themselves (`ast`), text errors with positions
//! (`parse`, which enforces the same rules while reading) or the structural
//! bounds checked while deserializing (`wire`).
//!
//! Validation never recurses: it walks the tree with an explicit stack that is
//! itself bounded by [`EXPR_NODES_MAX`], so a hostile tree costs at most that many
//! steps before it is refused.

use geoul_store::Value;

use crate::ast::{
    Expr, Query, EXPR_DEPTH_MAX, EXPR_NODES_MAX, FIELD_NAME_BYTES_MAX, IN_VALUES_MAX, LIMIT_MAX,
    LITERAL_BYTES_MAX, ORDER_KEYS_MAX, TABLE_NAME_BYTES_MAX,
};
use crate::order::CursorError;

/// Why a query tree was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// A table name that is empty, too long or has characters outside `[a-z0-9_.-]`.
    #[error("invalid table name {0:?}: use 1-48 of a-z 0-9 _ . -")]
    BadTable(String),
    /// A field name that is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid field name {0:?}: use 1-64 of A-Z a-z 0-9 _ . -")]
    BadField(String),
    /// `limit` outside `1..=LIMIT_MAX`.
    #[error("limit {0} is out of range (1 to {LIMIT_MAX})")]
    LimitOutOfRange(u32),
    /// More than [`ORDER_KEYS_MAX`] order keys.
    #[error("{0} order keys (at most {ORDER_KEYS_MAX})")]
    TooManyOrderKeys(usize),
    /// More than [`IN_VALUES_MAX`] values in all `in` lists together.
    #[error("more than {IN_VALUES_MAX} values in the filter's in lists")]
    TooManyInValues,
    /// An `in` list without values (it could never match; surely a bug).
    #[error("empty in list on field {0:?}")]
    EmptyInList(String),
    /// An `and`/`or` with fewer than two operands (the text form cannot express
    /// it; use [`Expr::and`] / [`Expr::or`] to build collapsed trees).
    #[error("an and/or with {0} operands (at least 2)")]
    TooFewOperands(usize),
    /// Nested deeper than [`EXPR_DEPTH_MAX`].
    #[error("filter is nested more than {EXPR_DEPTH_MAX} levels deep")]
    TooDeep,
    /// More than [`EXPR_NODES_MAX`] nodes.
    #[error("filter has more than {EXPR_NODES_MAX} nodes")]
    TooComplex,
    /// A float literal that is NaN or infinite (no text form, and NaN has no order).
    #[error("field {0:?} is compared with NaN or an infinity")]
    NotFinite(String),
    /// A string or bytes literal over [`LITERAL_BYTES_MAX`].
    #[error("a literal for field {field:?} is {len} bytes (at most {LITERAL_BYTES_MAX})")]
    LiteralTooLong {
        /// The field it is compared with.
        field: String,
        /// Its length.
        len: usize,
    },
    /// The cursor does not fit the query.
    #[error("bad cursor: {0}")]
    Cursor(#[from] CursorError),
}

/// Whether `name` is a valid table name: 1-48 of `a-z 0-9 _ . -` (the store's rule).
pub fn valid_table_name(name: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c);
    !name.is_empty() && name.len() <= TABLE_NAME_BYTES_MAX && name.chars().all(ok)
}

/// Whether `name` is a valid field name: 1-64 of `A-Z a-z 0-9 _ . -` (the
/// store's rule for document fields).
pub fn valid_field_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= FIELD_NAME_BYTES_MAX && name.chars().all(is_field_char)
}

/// A character allowed in field names.
pub(crate) fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-".contains(c)
}

impl Query {
    /// Checks every bound and name rule; what the parser accepts always passes.
    pub fn validate(&self) -> Result<(), QueryError> {
        if !valid_table_name(&self.table) {
            return Err(QueryError::BadTable(self.table.clone()));
        }
        if !(1..=LIMIT_MAX).contains(&self.limit) {
            return Err(QueryError::LimitOutOfRange(self.limit));
        }
        if self.order.len() > ORDER_KEYS_MAX {
            return Err(QueryError::TooManyOrderKeys(self.order.len()));
        }
        for key in &self.order {
            check_field(&key.field)?;
        }
        if let Some(filter) = &self.filter {
            filter.validate()?;
        }
        if let Some(cursor) = &self.after {
            cursor.check(&self.order)?;
        }
        Ok(())
    }
}

impl Expr {
    /// Checks the filter's bounds, names, literals and operand counts.
    pub fn validate(&self) -> Result<(), QueryError> {
        let mut stack: Vec<(&Expr, usize)> = vec![(self, 1)];
        let mut nodes = 0usize;
        let mut in_values = 0usize;
        while let Some((expr, depth)) = stack.pop() {
            if depth > EXPR_DEPTH_MAX {
                return Err(QueryError::TooDeep);
            }
            nodes += 1;
            match expr {
                Expr::Cmp { field, value, .. } => {
                    check_field(field)?;
                    check_literal(field, value)?;
                }
                Expr::In { field, values } => {
                    check_field(field)?;
                    if values.is_empty() {
                        return Err(QueryError::EmptyInList(field.clone()));
                    }
                    in_values += values.len();
                    if in_values > IN_VALUES_MAX {
                        return Err(QueryError::TooManyInValues);
                    }
                    for value in values {
                        check_literal(field, value)?;
                    }
                }
                Expr::And(items) | Expr::Or(items) => {
                    if items.len() < 2 {
                        return Err(QueryError::TooFewOperands(items.len()));
                    }
                    // Everything on the stack becomes a node, so checking here keeps
                    // the stack itself within the node bound.
                    if nodes + stack.len() + items.len() > EXPR_NODES_MAX {
                        return Err(QueryError::TooComplex);
                    }
                    stack.extend(items.iter().rev().map(|item| (item, depth + 1)));
                }
                Expr::Not(inner) => {
                    if nodes + stack.len() + 1 > EXPR_NODES_MAX {
                        return Err(QueryError::TooComplex);
                    }
                    stack.push((inner, depth + 1));
                }
            }
        }
        Ok(())
    }
}

fn check_field(name: &str) -> Result<(), QueryError> {
    if valid_field_name(name) {
        Ok(())
    } else {
        Err(QueryError::BadField(name.to_string()))
    }
}

fn check_literal(field: &str, value: &Value) -> Result<(), QueryError> {
    let len = match value {
        Value::Float(x) if !x.is_finite() => {
            return Err(QueryError::NotFinite(field.to_string()));
        }
        Value::Str(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => 0,
    };
    if len > LITERAL_BYTES_MAX {
        return Err(QueryError::LiteralTooLong {
            field: field.to_string(),
            len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{CmpOp, OrderKey};
    use crate::order::Cursor;

    fn eq(field: &str) -> Expr {
        Expr::cmp(field, CmpOp::Eq, Value::Int(1))
    }

    fn query(filter: Expr) -> Query {
        Query {
            filter: Some(filter),
            ..Query::new("t")
        }
    }

    #[test]
    fn accepts_a_plain_query() {
        let q = Query {
            order: vec![OrderKey::desc("rating")],
            ..query(Expr::And(vec![eq("a"), Expr::Not(Box::new(eq("b")))]))
        };
        assert_eq!(q.validate(), Ok(()));
    }

    #[test]
    fn refuses_bad_names_limits_and_order_keys() {
        assert!(matches!(
            Query::new("Upper").validate(),
            Err(QueryError::BadTable(_))
        ));
        assert!(matches!(
            Query::new("").validate(),
            Err(QueryError::BadTable(_))
        ));
        assert_eq!(
            query(eq("a b")).validate(),
            Err(QueryError::BadField("a b".into()))
        );
        let q = Query {
            limit: 0,
            ..Query::new("t")
        };
        assert_eq!(q.validate(), Err(QueryError::LimitOutOfRange(0)));
        let q = Query {
            limit: LIMIT_MAX + 1,
            ..Query::new("t")
        };
        assert_eq!(
            q.validate(),
            Err(QueryError::LimitOutOfRange(LIMIT_MAX + 1))
        );
        let q = Query {
            order: vec![OrderKey::asc("a"); ORDER_KEYS_MAX + 1],
            ..Query::new("t")
        };
        assert_eq!(
            q.validate(),
            Err(QueryError::TooManyOrderKeys(ORDER_KEYS_MAX + 1))
        );
    }

    #[test]
    fn refuses_bad_trees() {
        assert_eq!(
            query(Expr::And(vec![eq("a")])).validate(),
            Err(QueryError::TooFewOperands(1))
        );
        let empty_in = Expr::In {
            field: "a".into(),
            values: vec![],
        };
        assert_eq!(
            query(empty_in).validate(),
            Err(QueryError::EmptyInList("a".into()))
        );
        let nan = Expr::cmp("a", CmpOp::Lt, Value::Float(f64::NAN));
        assert_eq!(
            query(nan).validate(),
            Err(QueryError::NotFinite("a".into()))
        );
        let long = Expr::cmp(
            "a",
            CmpOp::Eq,
            Value::Str("x".repeat(LITERAL_BYTES_MAX + 1)),
        );
        assert!(matches!(
            query(long).validate(),
            Err(QueryError::LiteralTooLong { .. })
        ));
        let many = Expr::In {
            field: "a".into(),
            values: vec![Value::Int(1); IN_VALUES_MAX + 1],
        };
        assert_eq!(query(many).validate(), Err(QueryError::TooManyInValues));
    }

    #[test]
    fn depth_and_node_bounds_are_exact() {
        let mut deep = eq("a");
        for _ in 1..EXPR_DEPTH_MAX {
            deep = Expr::Not(Box::new(deep));
        }
        assert_eq!(deep.validate(), Ok(()));
        assert_eq!(
            Expr::Not(Box::new(deep)).validate(),
            Err(QueryError::TooDeep)
        );
        let wide = Expr::Or(vec![eq("a"); EXPR_NODES_MAX - 1]);
        assert_eq!(wide.validate(), Ok(()));
        let wider = Expr::Or(vec![eq("a"); EXPR_NODES_MAX]);
        assert_eq!(wider.validate(), Err(QueryError::TooComplex));
    }

    #[test]
    fn refuses_a_cursor_that_does_not_fit_the_order() {
        let q = Query {
            order: vec![OrderKey::asc("a")],
            after: Some(Cursor {
                values: vec![],
                key: b"k".to_vec(),
            }),
            ..Query::new("t")
        };
        assert!(matches!(q.validate(), Err(QueryError::Cursor(_))));
    }
}
