//! geoul-query: the query language of geoul's distributed query (DESIGN.md §8).
//!
//! A [`Query`] names a table, a filter, an order and a limit, and may resume
//! after a [`Cursor`]. It arrives as text (CLI, HTTP: [`parse_query`],
//! [`parse_search`]) or as a tree over the network ([`Query::validate`] checks
//! every bound). Each replica evaluates the filter ([`Expr::matches`]) on its
//! rows, narrowed by index [`hints`], and keeps its best rows in a [`TopK`]; the
//! coordinator merges the replicas' pages ([`merge_pages`]) and hands out the
//! last row's sort key as the cursor for the next page.
//!
//! * `ast` — the tree, its bounds and its canonical text form (`Display`);
//! * `validate` — complete, non-recursive checks for trees from the network;
//! * `wire` — the flat serialized form of filters (no recursion on decode);
//! * `parse` — the text form, with errors that point at a line and column;
//! * `eval` — what a filter means;
//! * `order` — sort keys, their total order and cursors;
//! * `topk` — a replica's top-k and the coordinator's k-way merge;
//! * `plan` — index hints (superset filters) from the top-level conjunction.
//!
//! Architecture invariant: pure. No IO, no async, no clock, no randomness; the
//! same query over the same rows gives the same rows in the same order on every
//! node. Does not own: which replicas to ask, deadlines, partial results,
//! indexes, expiry (the executor and the replication layer).
//!
//! # Grammar
//!
//! Keywords (`where and or not in order by asc desc limit true false`) are
//! case-insensitive; a field whose name is a keyword is written in backquotes.
//! Whitespace may separate any two tokens. Precedence: `not` > `and` > `or`.
//!
//! ```text
//! query     = table [ "where" filter ] tail ;          (* parse_query *)
//! search    = [ filter ] tail ;                        (* parse_search; "" = all rows *)
//! tail      = [ "order" "by" key { "," key } ] [ "limit" integer ] ;
//! key       = field [ "asc" | "desc" ] ;               (* asc by default; ≤ 8 keys *)
//! filter    = conj { "or" conj } ;
//! conj      = unary { "and" unary } ;
//! unary     = "not" unary | "(" filter ")" | predicate ;
//! predicate = field cmp value
//!           | field [ "not" ] "in" "(" value { "," value } ")" ;
//! cmp       = "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" ;
//! value     = string | integer | float | "true" | "false" | bytes ;
//! field     = name | "`" name "`" ;
//! name      = 1-64 of [A-Za-z0-9_.-] ;                 (* not a keyword unless backquoted *)
//! table     = 1-48 of [a-z0-9_.-] ;
//! string    = '"' { char | escape } '"' | "'" { char | escape } "'" ;
//! escape    = '\"' | "\'" | "\\" | "\n" | "\t" | "\r" | "\u{" 1-6 hex digits "}" ;
//! integer   = [ "-" ] digits ;                         (* must fit in i64 *)
//! float     = [ "-" ] ( digits "." [ digits ] | "." digits | digits )
//!             [ ( "e" | "E" ) [ "+" | "-" ] digits ] ; (* needs "." or an exponent; finite *)
//! bytes     = ( "x" | "X" ) '"' { hex hex } '"' ;
//! ```
//!
//! Bounds: text ≤ [`QUERY_TEXT_MAX`] bytes, `limit` in 1..=[`LIMIT_MAX`]
//! (default [`DEFAULT_LIMIT`]), ≤ [`ORDER_KEYS_MAX`] order keys, ≤
//! [`EXPR_NODES_MAX`] filter nodes nested ≤ [`EXPR_DEPTH_MAX`] deep, ≤
//! [`IN_VALUES_MAX`] `in` values in all.
//!
//! # Example
//!
//! ```
//! use geoul_query::{hints, merge_pages, parse_query, Hint, SortKey, TopK};
//! use geoul_store::{Document, Value};
//!
//! let query = parse_query(
//!     r#"instances where mode = "ranked" and spectators < 50 order by rating desc limit 2"#,
//! )?;
//! let row = |key: &str, rating: i64, spectators: i64| {
//!     let doc = Document::from_fields([
//!         ("mode".to_string(), Value::Str("ranked".into())),
//!         ("rating".to_string(), Value::Int(rating)),
//!         ("spectators".to_string(), Value::Int(spectators)),
//!     ])
//!     .expect("valid document");
//!     (key.as_bytes().to_vec(), doc)
//! };
//! let filter = query.filter.as_ref().expect("has a filter");
//!
//! // An index on `spectators` may narrow the scan; the filter is still applied.
//! assert!(matches!(&hints(filter)[1], Hint::Range { field, .. } if field == "spectators"));
//!
//! // Each replica keeps its best rows…
//! let replica_pages: Vec<Vec<_>> = [
//!     vec![row("a", 1500, 3), row("b", 1900, 80)],
//!     vec![row("c", 1700, 10), row("d", 1600, 0)],
//! ]
//! .into_iter()
//! .map(|rows| {
//!     let mut top = TopK::new(&query.order, query.limit as usize, None).expect("no cursor");
//!     for (key, doc) in rows.into_iter().filter(|(_, doc)| filter.matches(doc)) {
//!         top.offer(SortKey::new(&query.order, &doc, &key), key);
//!     }
//!     top.into_sorted()
//! })
//! .collect();
//!
//! // …and the coordinator merges them; the last row is where the next page starts.
//! let page = merge_pages(&query.order, query.limit as usize, replica_pages);
//! let keys: Vec<&[u8]> = page.iter().map(|(_, key)| key.as_slice()).collect();
//! assert_eq!(keys, [b"c", b"d"]);
//! let cursor = page.last().expect("a full page").0.to_cursor().encode()?;
//! assert!(!cursor.contains(['+', '/', '=']));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod ast;
mod eval;
mod heap;
mod order;
mod parse;
mod plan;
mod topk;
mod validate;
mod wire;

#[cfg(test)]
mod testgen;

pub use ast::{
    is_keyword, CmpOp, Expr, OrderKey, Query, DEFAULT_LIMIT, EXPR_DEPTH_MAX, EXPR_NODES_MAX,
    FIELD_NAME_BYTES_MAX, IN_VALUES_MAX, KEYWORDS, LIMIT_MAX, LITERAL_BYTES_MAX, ORDER_KEYS_MAX,
    QUERY_TEXT_MAX, TABLE_NAME_BYTES_MAX,
};
pub use order::{compare, Cursor, CursorError, SortKey, CURSOR_BYTES_MAX, CURSOR_TEXT_MAX};
pub use parse::{parse_query, parse_search, ParseError, ParseErrorKind};
pub use plan::{hints, Hint};
pub use topk::{merge_pages, TopK};
pub use validate::{valid_field_name, valid_table_name, QueryError};
