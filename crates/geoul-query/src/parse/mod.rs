//! The text form: [`parse_query`] and [`parse_search`] (grammar in the crate doc).
//!
//! Owns: the grammar, and enforcing every query bound while reading, so that an
//! error points at the place that broke it and whatever parses also passes
//! [`Query::validate`].
//! Does not own: tokens (`lex`), error messages and positions (`error`) or the
//! printed form (`ast`'s `Display`).
//!
//! Recursion is bounded: parentheses and `not`s may nest at most
//! [`EXPR_DEPTH_MAX`] deep (the nesting counter is checked before descending),
//! and every step consumes text, which is at most [`QUERY_TEXT_MAX`] bytes.

mod error;
mod lex;
#[cfg(test)]
mod tests;

pub use error::{ParseError, ParseErrorKind};

use error::is_value_char;
use geoul_store::Value;

use crate::ast::{
    Expr, OrderKey, Query, DEFAULT_LIMIT, EXPR_DEPTH_MAX, EXPR_NODES_MAX, IN_VALUES_MAX, LIMIT_MAX,
    ORDER_KEYS_MAX, QUERY_TEXT_MAX,
};
use crate::validate::valid_table_name;
use lex::{
    cmp_op, eat, expected, fail_at, field, keyword, peek_word, table, trailing, value, ws, Counts,
    Input, PResult,
};
use winnow::stream::Stream;

/// Parses the full form: `TABLE [where FILTER] [order by …] [limit N]`.
///
/// ```
/// let q = geoul_query::parse_query(
///     r#"instances where mode = "ranked" and spectators < 50 order by rating desc limit 20"#,
/// )?;
/// assert_eq!(q.table, "instances");
/// assert_eq!(q.limit, 20);
/// # Ok::<(), geoul_query::ParseError>(())
/// ```
pub fn parse_query(text: &str) -> Result<Query, ParseError> {
    run(text, |i| {
        let table = table(i)?;
        let (filter, order, limit) = clauses(i, Form::Query)?;
        Ok(Query {
            table,
            filter,
            order,
            limit,
            after: None,
        })
    })
}

/// Parses the search form for `table`: `[FILTER] [order by …] [limit N]`; an
/// empty text is every row. `table` is not part of the text: if it breaks the
/// name rule the error points at the start of the text.
pub fn parse_search(table: &str, text: &str) -> Result<Query, ParseError> {
    if !valid_table_name(table) {
        let kind = ParseErrorKind::BadIdentifier {
            what: "table name",
            name: table.chars().take(64).collect(),
            reason: "use 1-48 of a-z 0-9 _ . -",
        };
        return Err(ParseError::new(text, 0, kind));
    }
    run(text, |i| {
        let (filter, order, limit) = clauses(i, Form::Search)?;
        Ok(Query {
            table: table.to_string(),
            filter,
            order,
            limit,
            after: None,
        })
    })
}

fn run(
    text: &str,
    parser: impl FnOnce(&mut Input<'_>) -> PResult<Query>,
) -> Result<Query, ParseError> {
    if text.len() > QUERY_TEXT_MAX {
        let kind = ParseErrorKind::TooLong { len: text.len() };
        return Err(ParseError::new(text, QUERY_TEXT_MAX, kind));
    }
    let mut input = Input {
        input: text,
        state: Counts::default(),
    };
    match parser(&mut input) {
        Ok(query) => {
            debug_assert_eq!(query.validate(), Ok(()), "parsed {text:?}");
            Ok(query)
        }
        Err(err) => Err(match err.into_inner() {
            Ok(fail) => fail.into_error(text),
            // Only partial (streaming) input is ever incomplete; ours is whole.
            Err(_) => ParseError::new(
                text,
                text.len(),
                ParseErrorKind::UnexpectedEnd {
                    expected: "more input".into(),
                },
            ),
        }),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Query,
    Search,
}

type Clauses = (Option<Expr>, Vec<OrderKey>, u32);

/// Everything after the table. `next` collects what could still come at each
/// point, so text after a complete query gets a message listing it.
fn clauses(i: &mut Input<'_>, form: Form) -> PResult<Clauses> {
    let mut next: Vec<&'static str> = Vec::new();
    let filter = match form {
        Form::Query if keyword(i, "where")? => Some(or_expr(i, "after \"where\"")?.expr),
        Form::Query => {
            next.push("\"where\"");
            None
        }
        Form::Search => {
            ws(i)?;
            let word = peek_word(i);
            let no_filter = i.input.is_empty()
                || word.eq_ignore_ascii_case("order")
                || word.eq_ignore_ascii_case("limit");
            if no_filter {
                None
            } else {
                Some(or_expr(i, "at the start")?.expr)
            }
        }
    };
    if filter.is_some() {
        next.extend(["\"and\"", "\"or\""]);
    }
    let mut order = Vec::new();
    if keyword(i, "order")? {
        if !keyword(i, "by")? {
            return expected(i, "\"by\" after \"order\"");
        }
        next.clear();
        order = order_keys(i, &mut next)?;
    } else {
        next.push("\"order by\"");
    }
    let limit = if keyword(i, "limit")? {
        next.clear();
        limit(i)?
    } else {
        next.push("\"limit\"");
        DEFAULT_LIMIT
    };
    ws(i)?;
    if !i.input.is_empty() {
        next.push("end of input");
        return trailing(i, one_of(&next));
    }
    Ok((filter, order, limit))
}

/// `"a", "b" or c`.
fn one_of(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn order_keys(i: &mut Input<'_>, next: &mut Vec<&'static str>) -> PResult<Vec<OrderKey>> {
    let mut keys = Vec::new();
    let mut after = "after \"by\"";
    loop {
        ws(i)?;
        let start = i.eof_offset();
        if keys.len() == ORDER_KEYS_MAX {
            return fail_at(start, ParseErrorKind::TooManyOrderKeys);
        }
        let field = field(i, &format!("a field name {after}"))?;
        let explicit = if keyword(i, "desc")? {
            Some(true)
        } else if keyword(i, "asc")? {
            Some(false)
        } else {
            None
        };
        keys.push(OrderKey {
            field,
            descending: explicit == Some(true),
        });
        if !eat(i, ',')? {
            if explicit.is_none() {
                next.extend(["\"asc\"", "\"desc\""]);
            }
            next.push("\",\"");
            return Ok(keys);
        }
        after = "after \",\"";
    }
}

fn limit(i: &mut Input<'_>) -> PResult<u32> {
    ws(i)?;
    let start = i.eof_offset();
    let s: &str = i.input;
    let word = &s[..s.find(|c| !is_value_char(c)).unwrap_or(s.len())];
    let digits = word.strip_prefix('-').unwrap_or(word);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return expected(i, "a whole number after \"limit\"");
    }
    match word.parse::<u32>() {
        Ok(n) if (1..=LIMIT_MAX).contains(&n) => {
            i.next_slice(word.len());
            Ok(n)
        }
        // Negative, zero, too large, or beyond u32: all out of range.
        _ => fail_at(
            start,
            ParseErrorKind::LimitOutOfRange {
                literal: word.to_string(),
            },
        ),
    }
}

/// A parsed sub-filter and the depth of its tree.
struct Sub {
    expr: Expr,
    depth: usize,
}

/// `and_expr {or and_expr}`; `after` says where it starts (`after "and"`), for
/// messages.
fn or_expr(i: &mut Input<'_>, after: &str) -> PResult<Sub> {
    ws(i)?;
    let start = i.eof_offset();
    let mut items = vec![and_expr(i, after)?];
    while keyword(i, "or")? {
        items.push(and_expr(i, "after \"or\"")?);
    }
    combine(i, start, items, Expr::Or)
}

/// `unary {and unary}`.
fn and_expr(i: &mut Input<'_>, after: &str) -> PResult<Sub> {
    ws(i)?;
    let start = i.eof_offset();
    let mut items = vec![unary(i, after)?];
    while keyword(i, "and")? {
        items.push(unary(i, "after \"and\"")?);
    }
    combine(i, start, items, Expr::And)
}

/// One operand as is; several become one n-ary node (as `ast`'s `Display`
/// prints them).
fn combine(
    i: &mut Input<'_>,
    start: usize,
    mut items: Vec<Sub>,
    make: fn(Vec<Expr>) -> Expr,
) -> PResult<Sub> {
    if items.len() == 1 {
        if let Some(only) = items.pop() {
            return Ok(only);
        }
    }
    let depth = 1 + items.iter().map(|s| s.depth).max().unwrap_or(0);
    node(i, start, depth)?;
    Ok(Sub {
        expr: make(items.into_iter().map(|s| s.expr).collect()),
        depth,
    })
}

/// Counts a new node of tree depth `depth` starting at `start`.
fn node(i: &mut Input<'_>, start: usize, depth: usize) -> PResult<()> {
    if depth > EXPR_DEPTH_MAX {
        return fail_at(start, ParseErrorKind::TooDeep);
    }
    i.state.nodes += 1;
    if i.state.nodes > EXPR_NODES_MAX {
        return fail_at(start, ParseErrorKind::TooComplex);
    }
    Ok(())
}

/// Enters a parenthesis or `not` at `start`, refusing to nest deeper than the
/// bound (checked before the recursive call, so the stack stays bounded).
fn enter(i: &mut Input<'_>, start: usize) -> PResult<()> {
    if i.state.nesting >= EXPR_DEPTH_MAX {
        return fail_at(start, ParseErrorKind::TooDeep);
    }
    i.state.nesting += 1;
    Ok(())
}

fn leave(i: &mut Input<'_>) {
    i.state.nesting = i.state.nesting.saturating_sub(1);
}

/// `not unary | primary`.
fn unary(i: &mut Input<'_>, after: &str) -> PResult<Sub> {
    ws(i)?;
    let start = i.eof_offset();
    if !keyword(i, "not")? {
        return primary(i, after);
    }
    enter(i, start)?;
    let inner = unary(i, "after \"not\"")?;
    leave(i);
    let depth = inner.depth + 1;
    node(i, start, depth)?;
    Ok(Sub {
        expr: Expr::Not(Box::new(inner.expr)),
        depth,
    })
}

/// `( or_expr ) | predicate`.
fn primary(i: &mut Input<'_>, after: &str) -> PResult<Sub> {
    ws(i)?;
    let start = i.eof_offset();
    if !eat(i, '(')? {
        return predicate(i, after);
    }
    enter(i, start)?;
    let inner = or_expr(i, "after \"(\"")?;
    if !eat(i, ')')? {
        return expected(i, "\"and\", \"or\" or \")\"");
    }
    leave(i);
    Ok(inner)
}

/// `field op value | field [not] in (value, …)`.
fn predicate(i: &mut Input<'_>, after: &str) -> PResult<Sub> {
    ws(i)?;
    let start = i.eof_offset();
    let field = field(i, &format!("a field name, \"not\" or \"(\" {after}"))?;
    node(i, start, 1)?;
    if keyword(i, "in")? {
        let values = in_list(i)?;
        return Ok(Sub {
            expr: Expr::In { field, values },
            depth: 1,
        });
    }
    if keyword(i, "not")? {
        if !keyword(i, "in")? {
            return expected(i, "\"in\" after \"not\"");
        }
        let values = in_list(i)?;
        // `x not in (…)` is `not (x in (…))`: one more node, one more level.
        node(i, start, 2)?;
        return Ok(Sub {
            expr: Expr::Not(Box::new(Expr::In { field, values })),
            depth: 2,
        });
    }
    let Some((op, op_text)) = cmp_op(i)? else {
        let what = format!("an operator (=, !=, <, <=, >, >=, in, not in) after {field:?}");
        return expected(i, what);
    };
    let value = value(i, &format!("after {op_text:?}"))?;
    Ok(Sub {
        expr: Expr::Cmp { field, op, value },
        depth: 1,
    })
}

/// `( value {, value} )`.
fn in_list(i: &mut Input<'_>) -> PResult<Vec<Value>> {
    ws(i)?;
    let open = i.eof_offset();
    if !eat(i, '(')? {
        return expected(i, "\"(\" after \"in\"");
    }
    if eat(i, ')')? {
        return fail_at(open, ParseErrorKind::EmptyInList);
    }
    let mut values = Vec::new();
    let mut after = "after \"(\"";
    loop {
        ws(i)?;
        i.state.in_values += 1;
        if i.state.in_values > IN_VALUES_MAX {
            return fail_at(i.eof_offset(), ParseErrorKind::TooManyInValues);
        }
        values.push(value(i, after)?);
        if eat(i, ')')? {
            return Ok(values);
        }
        if !eat(i, ',')? {
            return expected(i, "\",\" or \")\"");
        }
        after = "after \",\"";
    }
}
