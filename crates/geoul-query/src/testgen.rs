//! Proptest strategies shared by the crate's tests.
//!
//! Two families: *wide* generators (any name, any literal, keywords as field
//! names) for text round trips, and *narrow* ones (three fields, a handful of
//! values) for semantic properties, where rows must often match and tie.

use geoul_store::{Document, Value};
use proptest::prelude::*;

use crate::ast::{CmpOp, Expr, OrderKey, Query, LIMIT_MAX};
use crate::order::SortKey;

/// Field names, including keywords and names that look like numbers.
pub(crate) fn wide_field() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => "[a-z][a-z0-9_]{0,6}",
        1 => "[A-Za-z0-9_.-]{1,10}",
        1 => prop::sample::select(&crate::ast::KEYWORDS[..]).prop_map(str::to_uppercase),
        1 => Just("-1".to_string()),
    ]
}

/// Any literal the text form can express: finite floats, any string.
pub(crate) fn wide_value() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        any::<String>().prop_map(Value::Str),
        "[\"'\\\\\n\t\r\u{0}-\u{1f}a-z]{0,8}".prop_map(Value::Str),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(|b| Value::Bytes(b.into())),
    ]
}

fn op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ])
}

/// Filters over `field` and `value`, a few levels deep, always valid.
pub(crate) fn expr_with<F, V>(field: F, value: V) -> impl Strategy<Value = Expr>
where
    F: Strategy<Value = String> + Clone + 'static,
    V: Strategy<Value = Value> + Clone + 'static,
{
    let leaf = prop_oneof![
        (field.clone(), op(), value.clone()).prop_map(|(field, op, value)| Expr::Cmp {
            field,
            op,
            value
        }),
        (field, prop::collection::vec(value, 1..4))
            .prop_map(|(field, values)| Expr::In { field, values }),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

/// Valid queries without a cursor (the text form has none).
pub(crate) fn wide_query() -> impl Strategy<Value = Query> {
    let order = prop::collection::vec(
        (wide_field(), any::<bool>())
            .prop_map(|(field, descending)| OrderKey { field, descending }),
        0..4,
    );
    (
        "[a-z0-9_.-]{1,12}",
        prop::option::of(expr_with(wide_field(), wide_value())),
        order,
        1..=LIMIT_MAX,
    )
        .prop_map(|(table, filter, order, limit)| Query {
            table,
            filter,
            order,
            limit,
            after: None,
        })
}

/// The three fields of narrow documents.
pub(crate) const NARROW_FIELDS: [&str; 3] = ["a", "b", "c"];

pub(crate) fn narrow_field() -> impl Strategy<Value = String> + Clone {
    prop::sample::select(&NARROW_FIELDS[..]).prop_map(str::to_string)
}

/// A few values of every kind, with numbers that tie across int and float.
pub(crate) fn narrow_value() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        (-3i64..3).prop_map(Value::Int),
        (-6i64..6).prop_map(|h| Value::Float(h as f64 / 2.0)),
        prop::sample::select(vec!["", "a", "b"]).prop_map(|s| Value::Str(s.into())),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![vec![], vec![1u8]]).prop_map(|b| Value::Bytes(b.into())),
    ]
}

/// Documents with some of the narrow fields.
pub(crate) fn narrow_doc() -> impl Strategy<Value = Document> {
    prop::collection::vec(prop::option::of(narrow_value()), NARROW_FIELDS.len()).prop_map(|vals| {
        let fields = NARROW_FIELDS
            .iter()
            .zip(vals)
            .filter_map(|(name, v)| v.map(|v| (name.to_string(), v)));
        Document::from_fields(fields).expect("narrow documents are valid")
    })
}

/// Order keys over the narrow fields.
pub(crate) fn narrow_order() -> impl Strategy<Value = Vec<OrderKey>> {
    prop::collection::vec(
        (narrow_field(), any::<bool>())
            .prop_map(|(field, descending)| OrderKey { field, descending }),
        0..3,
    )
}

/// Rows with unique keys, as sort keys under `order`.
pub(crate) fn rows(order: &[OrderKey], docs: &[Document]) -> Vec<SortKey> {
    docs.iter()
        .enumerate()
        .map(|(i, doc)| SortKey::new(order, doc, format!("k{i:04}").as_bytes()))
        .collect()
}
