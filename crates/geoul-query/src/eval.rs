//! What a filter means: [`Expr::matches`].
//!
//! Owns: the semantics of every filter node over a [`Document`].
//! Does not own: the order over values (`geoul_store::compare_values`) or
//! choosing which rows to evaluate (`plan` hints; the executor).
//!
//! Semantics:
//! * a comparison compares the document's field with the literal under
//!   [`compare_values`]; integers and floats are one kind (`2 = 2.0`);
//! * a comparison with a missing field is false, for every operator;
//! * a comparison across kinds (string vs number, bool vs bytes, …) is false for
//!   every operator, `!=` included: `x != "a"` does not match documents where `x`
//!   is a number or is missing. Kinds are never compared by their rank in the
//!   total order, which exists for sorting, not for filtering;
//! * `in` matches when some listed value would match `=`;
//! * `not e` matches exactly when `e` does not, so `not x = "a"` *does* match
//!   documents where `x` is missing or a number (unlike `x != "a"`);
//! * `and`/`or` as usual (every operand / some operand).

use geoul_store::{compare_values, Document, EncodedDoc, Value};

use crate::ast::{CmpOp, Expr};

/// The kind of a value for filtering: numbers (int and float) are one kind.
fn kind(v: &Value) -> u8 {
    match v {
        Value::Bool(_) => 0,
        Value::Int(_) | Value::Float(_) => 1,
        Value::Str(_) => 2,
        Value::Bytes(_) => 3,
    }
}

/// Whether `field_value op literal` holds (false across kinds).
fn compare_holds(field_value: &Value, op: CmpOp, literal: &Value) -> bool {
    kind(field_value) == kind(literal) && op.holds(compare_values(field_value, literal))
}

impl Expr {
    /// Whether `doc` matches this filter (see the module doc). Recurses once per
    /// nesting level: call it on validated filters (depth ≤ `EXPR_DEPTH_MAX`),
    /// which every deserialized or parsed filter is.
    pub fn matches(&self, doc: &Document) -> bool {
        match self {
            Expr::Cmp { field, op, value } => {
                doc.get(field).is_some_and(|v| compare_holds(v, *op, value))
            }
            Expr::In { field, values } => doc.get(field).is_some_and(|v| {
                values
                    .iter()
                    .any(|literal| compare_holds(v, CmpOp::Eq, literal))
            }),
            Expr::And(items) => items.iter().all(|e| e.matches(doc)),
            Expr::Or(items) => items.iter().any(|e| e.matches(doc)),
            Expr::Not(inner) => !inner.matches(doc),
        }
    }

    /// [`Expr::matches`] on a stored document without decoding it: each
    /// predicate reads only its field (executors test many candidates and
    /// keep few). A field that does not decode counts as missing.
    pub fn matches_encoded(&self, doc: &EncodedDoc) -> bool {
        let get = |field: &str| doc.field(field).ok().flatten();
        match self {
            Expr::Cmp { field, op, value } => {
                get(field).is_some_and(|v| compare_holds(&v, *op, value))
            }
            Expr::In { field, values } => get(field).is_some_and(|v| {
                values
                    .iter()
                    .any(|literal| compare_holds(&v, CmpOp::Eq, literal))
            }),
            Expr::And(items) => items.iter().all(|e| e.matches_encoded(doc)),
            Expr::Or(items) => items.iter().any(|e| e.matches_encoded(doc)),
            Expr::Not(inner) => !inner.matches_encoded(doc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(fields: &[(&str, Value)]) -> Document {
        Document::from_fields(fields.iter().map(|(n, v)| (n.to_string(), v.clone())))
            .expect("valid document")
    }

    fn cmp(field: &str, op: CmpOp, value: Value) -> Expr {
        Expr::cmp(field, op, value)
    }

    #[test]
    fn comparisons_follow_the_value_order() {
        let d = doc(&[("n", Value::Int(5)), ("s", Value::Str("b".into()))]);
        assert!(cmp("n", CmpOp::Eq, Value::Float(5.0)).matches(&d));
        assert!(cmp("n", CmpOp::Lt, Value::Float(5.5)).matches(&d));
        assert!(cmp("n", CmpOp::Ge, Value::Int(5)).matches(&d));
        assert!(!cmp("n", CmpOp::Gt, Value::Int(5)).matches(&d));
        assert!(cmp("s", CmpOp::Gt, Value::Str("a".into())).matches(&d));
        assert!(cmp("s", CmpOp::Le, Value::Str("b".into())).matches(&d));
    }

    #[test]
    fn missing_fields_and_other_kinds_never_match_even_for_ne() {
        let d = doc(&[("n", Value::Int(5))]);
        for op in [
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ] {
            assert!(
                !cmp("n", op, Value::Str("a".into())).matches(&d),
                "{op:?} across kinds"
            );
            assert!(
                !cmp("missing", op, Value::Int(1)).matches(&d),
                "{op:?} on missing"
            );
        }
        // `not` is plain negation, so it does match there.
        let not_eq = Expr::Not(Box::new(cmp("n", CmpOp::Eq, Value::Str("a".into()))));
        assert!(not_eq.matches(&d));
    }

    #[test]
    fn in_and_or_not() {
        let d = doc(&[("m", Value::Str("ranked".into())), ("p", Value::Int(3))]);
        let is_ranked = Expr::In {
            field: "m".into(),
            values: vec![Value::Int(1), Value::Str("ranked".into())],
        };
        assert!(is_ranked.matches(&d));
        let few = cmp("p", CmpOp::Lt, Value::Int(2));
        assert!(!Expr::And(vec![is_ranked.clone(), few.clone()]).matches(&d));
        assert!(Expr::Or(vec![is_ranked.clone(), few.clone()]).matches(&d));
        assert!(Expr::Not(Box::new(few)).matches(&d));
        let not_in = Expr::In {
            field: "p".into(),
            values: vec![Value::Bool(true)],
        };
        assert!(!not_in.matches(&d));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::testgen::{narrow_doc, narrow_field, narrow_value};
    use proptest::prelude::*;

    proptest! {
        /// On a present field of the literal's kind exactly one of `<`, `=`, `>`
        /// holds and the other operators follow; otherwise nothing holds.
        #[test]
        fn operators_agree_with_each_other(
            doc in narrow_doc(),
            field in narrow_field(),
            literal in narrow_value(),
        ) {
            let holds = |op| Expr::cmp(field.clone(), op, literal.clone()).matches(&doc);
            let (lt, eq, gt) = (holds(CmpOp::Lt), holds(CmpOp::Eq), holds(CmpOp::Gt));
            let comparable = doc.get(&field).is_some_and(|v| kind(v) == kind(&literal));
            prop_assert_eq!(u8::from(lt) + u8::from(eq) + u8::from(gt), u8::from(comparable));
            prop_assert_eq!(holds(CmpOp::Ne), comparable && !eq);
            prop_assert_eq!(holds(CmpOp::Le), lt || eq);
            prop_assert_eq!(holds(CmpOp::Ge), gt || eq);
            let listed = Expr::In { field: field.clone(), values: vec![literal.clone()] };
            prop_assert_eq!(listed.matches(&doc), eq);
        }
    }

    proptest::proptest! {
        /// The executors' encoded evaluation means what `matches` means.
        #[test]
        fn encoded_evaluation_agrees_with_decoded(
            e in crate::testgen::expr_with(crate::testgen::narrow_field(), crate::testgen::narrow_value()),
            d in crate::testgen::narrow_doc(),
        ) {
            let encoded = d.encode().expect("encodes");
            proptest::prop_assert_eq!(e.matches_encoded(&encoded), e.matches(&d));
            let order = vec![crate::ast::OrderKey::asc("a"), crate::ast::OrderKey::desc("b")];
            proptest::prop_assert_eq!(
                crate::order::SortKey::from_encoded(&order, &encoded, b"k"),
                crate::order::SortKey::new(&order, &d, b"k")
            );
        }
    }
}
