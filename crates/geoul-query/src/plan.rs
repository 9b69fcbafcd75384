//! Index hints: what an index can use to narrow the rows a filter must see.
//!
//! Owns: [`Hint`] and [`hints`].
//! Does not own: indexes or choosing between hints (the executor), and never the
//! final answer: the executor re-applies the whole filter to every row a hint
//! yields, so a hint only has to be a *superset* filter: every row that matches
//! the filter satisfies every hint, not the other way round.
//!
//! Hints come from the top-level conjunction only (an `and` tree, nested `and`s
//! flattened, or a single predicate): `=` and `in` give [`Hint::Eq`], `<`, `<=`,
//! `>`, `>=` on one field merge into one [`Hint::Range`] (their intersection).
//! `!=`, `not` and `or` give nothing: none of them confines a field to one set
//! of values or one range.

use std::cmp::Ordering;
use std::ops::Bound;

use geoul_store::{compare_values, values_equal, Value};

use crate::ast::{CmpOp, Expr};

/// What every matching row's field satisfies. Local only (not serialized).
#[derive(Clone, Debug, PartialEq)]
pub enum Hint {
    /// The field equals one of `values` (sorted by `compare_values`, no two
    /// equal). Empty means no row can match.
    Eq {
        /// Field name.
        field: String,
        /// Candidate values.
        values: Vec<Value>,
    },
    /// The field lies between `lower` and `upper` in the `compare_values` order.
    /// The range is over the total order, so it may also hold values of other
    /// kinds (`x > 5` admits strings); the filter discards those.
    Range {
        /// Field name.
        field: String,
        /// Lower bound.
        lower: Bound<Value>,
        /// Upper bound.
        upper: Bound<Value>,
    },
}

impl Hint {
    /// The field the hint is about.
    pub fn field(&self) -> &str {
        match self {
            Hint::Eq { field, .. } | Hint::Range { field, .. } => field,
        }
    }

    /// Whether a field value satisfies the hint.
    pub fn admits(&self, value: &Value) -> bool {
        match self {
            Hint::Eq { values, .. } => values.iter().any(|v| values_equal(v, value)),
            Hint::Range { lower, upper, .. } => {
                let above_lower = match lower {
                    Bound::Included(l) => compare_values(value, l) != Ordering::Less,
                    Bound::Excluded(l) => compare_values(value, l) == Ordering::Greater,
                    Bound::Unbounded => true,
                };
                let below_upper = match upper {
                    Bound::Included(u) => compare_values(value, u) != Ordering::Greater,
                    Bound::Excluded(u) => compare_values(value, u) == Ordering::Less,
                    Bound::Unbounded => true,
                };
                above_lower && below_upper
            }
        }
    }
}

/// The hints `expr` gives, one per field and kind, in order of first mention.
pub fn hints(expr: &Expr) -> Vec<Hint> {
    let mut out: Vec<Hint> = Vec::new();
    // Iterative walk of the conjunction (no recursion on unvalidated trees).
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::And(items) => stack.extend(items.iter().rev()),
            Expr::Cmp { field, op, value } => match op {
                CmpOp::Eq => add_eq(&mut out, field, std::slice::from_ref(value)),
                CmpOp::Lt => add_range(&mut out, field, Bound::Unbounded, Bound::Excluded(value)),
                CmpOp::Le => add_range(&mut out, field, Bound::Unbounded, Bound::Included(value)),
                CmpOp::Gt => add_range(&mut out, field, Bound::Excluded(value), Bound::Unbounded),
                CmpOp::Ge => add_range(&mut out, field, Bound::Included(value), Bound::Unbounded),
                CmpOp::Ne => {}
            },
            Expr::In { field, values } => add_eq(&mut out, field, values),
            Expr::Or(_) | Expr::Not(_) => {}
        }
    }
    out
}

/// Sorted, without values equal to an earlier one.
fn canonical(values: &[Value]) -> Vec<Value> {
    let mut sorted = values.to_vec();
    sorted.sort_by(compare_values);
    sorted.dedup_by(|a, b| values_equal(a, b));
    sorted
}

fn add_eq(out: &mut Vec<Hint>, field: &str, values: &[Value]) {
    let values = canonical(values);
    for hint in out.iter_mut() {
        if let Hint::Eq {
            field: f,
            values: kept,
        } = hint
        {
            if f == field {
                // Both predicates hold, so the field is in both sets.
                kept.retain(|k| values.iter().any(|v| values_equal(k, v)));
                return;
            }
        }
    }
    out.push(Hint::Eq {
        field: field.to_string(),
        values,
    });
}

fn add_range(out: &mut Vec<Hint>, field: &str, lower: Bound<&Value>, upper: Bound<&Value>) {
    for hint in out.iter_mut() {
        if let Hint::Range {
            field: f,
            lower: l,
            upper: u,
        } = hint
        {
            if f == field {
                tighten(l, lower, Ordering::Greater);
                tighten(u, upper, Ordering::Less);
                return;
            }
        }
    }
    out.push(Hint::Range {
        field: field.to_string(),
        lower: lower.cloned(),
        upper: upper.cloned(),
    });
}

/// Replaces `kept` with `new` if `new` is tighter; `tighter` is the ordering of
/// a tighter bound's value against a looser one's (greater for lower bounds,
/// less for upper bounds). On equal values an exclusive bound is the tighter.
fn tighten(kept: &mut Bound<Value>, new: Bound<&Value>, tighter: Ordering) {
    let replace = match (&*kept, new) {
        (_, Bound::Unbounded) => false,
        (Bound::Unbounded, _) => true,
        (Bound::Included(k) | Bound::Excluded(k), Bound::Included(n) | Bound::Excluded(n)) => {
            match compare_values(n, k) {
                Ordering::Equal => {
                    matches!(new, Bound::Excluded(_)) && matches!(kept, Bound::Included(_))
                }
                ord => ord == tighter,
            }
        }
    };
    if replace {
        *kept = new.cloned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(field: &str, op: CmpOp, v: i64) -> Expr {
        Expr::cmp(field, op, Value::Int(v))
    }

    #[test]
    fn conjunction_gives_eq_and_merged_ranges() {
        let expr = Expr::And(vec![
            cmp("mode", CmpOp::Eq, 1),
            Expr::And(vec![cmp("p", CmpOp::Gt, 3), cmp("p", CmpOp::Ge, 3)]),
            cmp("p", CmpOp::Le, 10),
            cmp("p", CmpOp::Lt, 12),
            Expr::In {
                field: "mode".into(),
                values: vec![Value::Int(2), Value::Float(1.0), Value::Int(1)],
            },
            cmp("q", CmpOp::Ne, 1),
            Expr::Or(vec![cmp("r", CmpOp::Eq, 1), cmp("r", CmpOp::Eq, 2)]),
            Expr::Not(Box::new(cmp("s", CmpOp::Eq, 1))),
        ]);
        assert_eq!(
            hints(&expr),
            vec![
                Hint::Eq {
                    field: "mode".into(),
                    values: vec![Value::Int(1)]
                },
                Hint::Range {
                    field: "p".into(),
                    lower: Bound::Excluded(Value::Int(3)),
                    upper: Bound::Included(Value::Int(10)),
                },
            ]
        );
    }

    #[test]
    fn single_predicates_and_non_conjunctions() {
        assert_eq!(
            hints(&cmp("x", CmpOp::Ge, 2)),
            vec![Hint::Range {
                field: "x".into(),
                lower: Bound::Included(Value::Int(2)),
                upper: Bound::Unbounded,
            }]
        );
        let or = Expr::Or(vec![cmp("x", CmpOp::Eq, 1), cmp("x", CmpOp::Eq, 2)]);
        assert_eq!(hints(&or), vec![]);
        let contradiction = Expr::And(vec![cmp("x", CmpOp::Eq, 1), cmp("x", CmpOp::Eq, 2)]);
        assert_eq!(
            hints(&contradiction),
            vec![Hint::Eq {
                field: "x".into(),
                values: vec![]
            }]
        );
    }

    #[test]
    fn admits_checks_bounds() {
        let range = Hint::Range {
            field: "x".into(),
            lower: Bound::Excluded(Value::Int(1)),
            upper: Bound::Included(Value::Float(2.5)),
        };
        assert!(!range.admits(&Value::Int(1)));
        assert!(range.admits(&Value::Int(2)));
        assert!(range.admits(&Value::Float(2.5)));
        assert!(!range.admits(&Value::Int(3)));
        assert_eq!(range.field(), "x");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::testgen::{expr_with, narrow_doc, narrow_field, narrow_value};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_matching_document_satisfies_every_hint(
            expr in expr_with(narrow_field(), narrow_value()),
            docs in prop::collection::vec(narrow_doc(), 1..24),
        ) {
            let hints = hints(&expr);
            for doc in docs.iter().filter(|d| expr.matches(d)) {
                for hint in &hints {
                    let value = doc.get(hint.field());
                    prop_assert!(
                        value.is_some_and(|v| hint.admits(v)),
                        "{expr} matches {doc:?} but {hint:?} does not admit it"
                    );
                }
            }
        }

        #[test]
        fn conjunctions_of_comparisons_give_a_hint_per_field(
            expr in expr_with(narrow_field(), narrow_value()),
        ) {
            // Fields with hints are unique per kind of hint.
            let hints = hints(&expr);
            for (i, a) in hints.iter().enumerate() {
                for b in &hints[i + 1..] {
                    let same_kind = matches!((a, b), (Hint::Eq { .. }, Hint::Eq { .. }))
                        || matches!((a, b), (Hint::Range { .. }, Hint::Range { .. }));
                    prop_assert!(!(same_kind && a.field() == b.field()));
                }
            }
        }
    }
}
