//! The serialized form of [`Expr`]: a flat list of nodes in prefix order.
//!
//! Owns: `Serialize`/`Deserialize` for [`Expr`].
//! Does not own: semantic checks (names, literals, operand counts: `validate`).
//!
//! Why flat: a derived, recursive `Deserialize` would recurse once per nesting
//! level of the bytes it is fed, so a hostile peer could send `not not not …`
//! a million levels deep and overflow the stack before `validate` ever ran. The
//! flat form is read as a sequence of at most [`EXPR_NODES_MAX`] nodes and the
//! tree is rebuilt with an explicit stack that refuses depth over
//! [`EXPR_DEPTH_MAX`], so every deserialized `Expr` is small and shallow enough
//! for the recursive code (evaluation, printing, dropping) to be safe.

use std::fmt;

use geoul_store::Value;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ast::{CmpOp, Expr, EXPR_DEPTH_MAX, EXPR_NODES_MAX};

/// One node; `And(n)`/`Or(n)`/`Not` are followed by their `n` (or one) operands.
#[derive(Serialize, Deserialize)]
enum Node {
    Cmp {
        field: String,
        op: CmpOp,
        value: Value,
    },
    In {
        field: String,
        values: Vec<Value>,
    },
    And(u32),
    Or(u32),
    Not,
}

/// The nodes of `expr` in prefix order (iteratively: this also runs on trees
/// built in code that were never validated).
fn flatten(expr: &Expr) -> Vec<Node> {
    let mut out = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        out.push(match e {
            Expr::Cmp { field, op, value } => Node::Cmp {
                field: field.clone(),
                op: *op,
                value: value.clone(),
            },
            Expr::In { field, values } => Node::In {
                field: field.clone(),
                values: values.clone(),
            },
            // Saturating: a tree that large is refused on the way in anyway.
            Expr::And(items) => Node::And(u32::try_from(items.len()).unwrap_or(u32::MAX)),
            Expr::Or(items) => Node::Or(u32::try_from(items.len()).unwrap_or(u32::MAX)),
            Expr::Not(_) => Node::Not,
        });
        match e {
            Expr::And(items) | Expr::Or(items) => stack.extend(items.iter().rev()),
            Expr::Not(inner) => stack.push(inner),
            Expr::Cmp { .. } | Expr::In { .. } => {}
        }
    }
    out
}

/// Why a node list is not a well-formed, bounded tree.
#[derive(Debug, PartialEq, Eq)]
enum RebuildError {
    Empty,
    TooComplex,
    TooDeep,
    MissingOperands,
    ExtraNodes(usize),
}

impl fmt::Display for RebuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty filter"),
            Self::TooComplex => write!(f, "filter has more than {EXPR_NODES_MAX} nodes"),
            Self::TooDeep => write!(f, "filter is nested more than {EXPR_DEPTH_MAX} levels deep"),
            Self::MissingOperands => f.write_str("an operator is missing operands"),
            Self::ExtraNodes(n) => write!(f, "{n} nodes outside the filter tree"),
        }
    }
}

/// Rebuilds the tree from prefix order by reading it backwards: operands are
/// complete before their operator is seen, so each operator pops its operands.
fn rebuild(nodes: Vec<Node>) -> Result<Expr, RebuildError> {
    if nodes.len() > EXPR_NODES_MAX {
        return Err(RebuildError::TooComplex);
    }
    // (subtree, its depth); the last element is the first operand.
    let mut stack: Vec<(Expr, usize)> = Vec::new();
    for node in nodes.into_iter().rev() {
        let built = match node {
            Node::Cmp { field, op, value } => (Expr::Cmp { field, op, value }, 1),
            Node::In { field, values } => (Expr::In { field, values }, 1),
            Node::Not => {
                let (inner, depth) = stack.pop().ok_or(RebuildError::MissingOperands)?;
                (Expr::Not(Box::new(inner)), depth + 1)
            }
            Node::And(n) | Node::Or(n) => {
                let n = usize::try_from(n).map_err(|_| RebuildError::MissingOperands)?;
                if n > stack.len() {
                    return Err(RebuildError::MissingOperands);
                }
                let operands = stack.split_off(stack.len() - n);
                let depth = 1 + operands.iter().map(|(_, d)| *d).max().unwrap_or(0);
                // Popped in reverse: the top of the stack is the first operand.
                let items: Vec<Expr> = operands.into_iter().rev().map(|(e, _)| e).collect();
                let expr = if matches!(node, Node::And(_)) {
                    Expr::And(items)
                } else {
                    Expr::Or(items)
                };
                (expr, depth)
            }
        };
        if built.1 > EXPR_DEPTH_MAX {
            return Err(RebuildError::TooDeep);
        }
        stack.push(built);
    }
    let (expr, _) = stack.pop().ok_or(RebuildError::Empty)?;
    if !stack.is_empty() {
        return Err(RebuildError::ExtraNodes(stack.len()));
    }
    Ok(expr)
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        flatten(self).serialize(serializer)
    }
}

/// Reads the node sequence, refusing it as soon as it passes the node bound
/// (before reading, or allocating for, the rest).
struct NodesVisitor;

impl<'de> Visitor<'de> for NodesVisitor {
    type Value = Vec<Node>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sequence of at most {EXPR_NODES_MAX} filter nodes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Node>, A::Error> {
        let hint = seq.size_hint().unwrap_or(0).min(EXPR_NODES_MAX);
        let mut nodes = Vec::with_capacity(hint);
        while let Some(node) = seq.next_element::<Node>()? {
            if nodes.len() == EXPR_NODES_MAX {
                return Err(de::Error::custom(RebuildError::TooComplex));
            }
            nodes.push(node);
        }
        Ok(nodes)
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let nodes = deserializer.deserialize_seq(NodesVisitor)?;
        rebuild(nodes).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: i64) -> Expr {
        Expr::cmp("a", CmpOp::Eq, Value::Int(i))
    }

    #[test]
    fn round_trips_through_postcard_and_json() {
        let expr = Expr::Or(vec![
            Expr::And(vec![leaf(1), Expr::Not(Box::new(leaf(2)))]),
            Expr::In {
                field: "b".into(),
                values: vec![Value::Str("x".into()), Value::Bool(true)],
            },
            leaf(3),
        ]);
        let bytes = postcard::to_stdvec(&expr).expect("encodes");
        assert_eq!(postcard::from_bytes::<Expr>(&bytes).expect("decodes"), expr);
        let json = serde_json::to_string(&expr).expect("encodes");
        assert_eq!(serde_json::from_str::<Expr>(&json).expect("decodes"), expr);
    }

    #[test]
    fn refuses_deep_trees_without_recursing() {
        // A million `Not`s: a recursive decoder would overflow the stack here.
        let mut nodes: Vec<Node> = (0..1_000_000).map(|_| Node::Not).collect();
        nodes.push(Node::Cmp {
            field: "a".into(),
            op: CmpOp::Eq,
            value: Value::Int(1),
        });
        let bytes = postcard::to_stdvec(&nodes).expect("encodes");
        let err = postcard::from_bytes::<Expr>(&bytes).expect_err("refused");
        assert!(matches!(err, postcard::Error::SerdeDeCustom), "{err:?}");

        let mut deep = leaf(1);
        for _ in 0..EXPR_DEPTH_MAX {
            deep = Expr::Not(Box::new(deep));
        }
        assert_eq!(rebuild(flatten(&deep)), Err(RebuildError::TooDeep));
    }

    #[test]
    fn refuses_malformed_node_lists() {
        assert_eq!(rebuild(vec![]), Err(RebuildError::Empty));
        assert_eq!(rebuild(vec![Node::Not]), Err(RebuildError::MissingOperands));
        assert_eq!(
            rebuild(vec![
                Node::And(3),
                Node::Not,
                Node::Cmp {
                    field: "a".into(),
                    op: CmpOp::Eq,
                    value: Value::Int(1)
                }
            ]),
            Err(RebuildError::MissingOperands)
        );
        let two_roots = flatten(&leaf(1))
            .into_iter()
            .chain(flatten(&leaf(2)))
            .collect();
        assert_eq!(rebuild(two_roots), Err(RebuildError::ExtraNodes(1)));
    }
}
