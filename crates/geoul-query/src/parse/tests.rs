//! Parser tests: accepted forms, one test per error kind (message and exact
//! position), and properties (print → parse round trip, no panics on any text).

use geoul_store::Value;
use proptest::prelude::*;

use super::*;
use crate::ast::CmpOp;
use crate::testgen::{expr_with, wide_field, wide_query, wide_value};

fn cmp(field: &str, op: CmpOp, value: Value) -> Expr {
    Expr::cmp(field, op, value)
}

fn filter(text: &str) -> Expr {
    parse_search("t", text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .filter
        .expect("a filter")
}

fn literal(text: &str) -> Value {
    match filter(&format!("x = {text}")) {
        Expr::Cmp { value, .. } => value,
        other => panic!("{other:?}"),
    }
}

/// Parses `text`, expecting an error; returns (message, offset, line, column).
fn error(text: &str) -> (String, usize, usize, usize) {
    let err = parse_query(text).expect_err(text);
    (err.to_string(), err.offset, err.line, err.column)
}

fn at(message: &str, offset: usize, column: usize) -> (String, usize, usize, usize) {
    (message.to_string(), offset, 1, column)
}

#[test]
fn parses_the_design_example() {
    let q = parse_query(
        r#"instances where mode = "ranked" and region = "eu" and spectators < 50 order by rating desc limit 20"#,
    )
    .expect("parses");
    assert_eq!(q.table, "instances");
    assert_eq!(
        q.filter,
        Some(Expr::And(vec![
            cmp("mode", CmpOp::Eq, Value::Str("ranked".into())),
            cmp("region", CmpOp::Eq, Value::Str("eu".into())),
            cmp("spectators", CmpOp::Lt, Value::Int(50)),
        ]))
    );
    assert_eq!(q.order, vec![OrderKey::desc("rating")]);
    assert_eq!(q.limit, 20);
}

#[test]
fn search_form_and_defaults() {
    let q = parse_search("instances", "").expect("empty is everything");
    assert_eq!(q, Query::new("instances"));
    let q = parse_search("t", "  order by a, b ASC, c desc ").expect("order only");
    assert_eq!(q.filter, None);
    assert_eq!(
        q.order,
        vec![OrderKey::asc("a"), OrderKey::asc("b"), OrderKey::desc("c")]
    );
    assert_eq!(parse_search("t", "limit 7").expect("limit only").limit, 7);
    let q = parse_query("t").expect("table only");
    assert_eq!((q.filter, q.limit), (None, DEFAULT_LIMIT));
}

#[test]
fn keywords_are_case_insensitive_and_precedence_is_not_and_or() {
    let q = parse_query("t WHERE a = 1 Or b = 2 AND NOT c = 3 ORDER BY z DESC LIMIT 5")
        .expect("parses");
    let expected = Expr::Or(vec![
        cmp("a", CmpOp::Eq, Value::Int(1)),
        Expr::And(vec![
            cmp("b", CmpOp::Eq, Value::Int(2)),
            Expr::Not(Box::new(cmp("c", CmpOp::Eq, Value::Int(3)))),
        ]),
    ]);
    assert_eq!(q.filter, Some(expected));
    let grouped = filter("(a = 1 or b = 2) and c = 3");
    assert!(matches!(&grouped, Expr::And(items) if matches!(items[0], Expr::Or(_))));
}

#[test]
fn operators_in_lists_and_names() {
    assert_eq!(filter("x<>1"), cmp("x", CmpOp::Ne, Value::Int(1)));
    assert_eq!(filter("x!=1"), cmp("x", CmpOp::Ne, Value::Int(1)));
    assert_eq!(filter("x<=1"), cmp("x", CmpOp::Le, Value::Int(1)));
    assert_eq!(filter("x>=-1"), cmp("x", CmpOp::Ge, Value::Int(-1)));
    assert_eq!(
        filter("x not in (1, 'a')"),
        Expr::Not(Box::new(Expr::In {
            field: "x".into(),
            values: vec![Value::Int(1), Value::Str("a".into())],
        }))
    );
    assert_eq!(
        filter("`order` = 1"),
        cmp("order", CmpOp::Eq, Value::Int(1))
    );
    assert_eq!(filter("-x.y < -5"), cmp("-x.y", CmpOp::Lt, Value::Int(-5)));
    assert_eq!(
        filter("1st\n\t=\r\n1"),
        cmp("1st", CmpOp::Eq, Value::Int(1))
    );
    assert_eq!(filter("notx = 1"), cmp("notx", CmpOp::Eq, Value::Int(1)));
}

#[test]
fn literals() {
    assert_eq!(
        literal(r#""a\"b\\c\n\t\r\u{e9}\u{1F600}""#),
        Value::Str("a\"b\\c\n\t\r\u{e9}\u{1F600}".into())
    );
    assert_eq!(literal(r"'it\'s'"), Value::Str("it's".into()));
    assert_eq!(literal("-9223372036854775808"), Value::Int(i64::MIN));
    assert_eq!(literal("1.5"), Value::Float(1.5));
    assert_eq!(literal("-2e3"), Value::Float(-2000.0));
    assert_eq!(literal(".5"), Value::Float(0.5));
    assert_eq!(literal("1."), Value::Float(1.0));
    assert_eq!(literal("1E+2"), Value::Float(100.0));
    assert_eq!(literal("TRUE"), Value::Bool(true));
    assert_eq!(literal("false"), Value::Bool(false));
    assert_eq!(literal(r#"x"00fF""#), Value::Bytes(vec![0, 255].into()));
    assert_eq!(literal(r#"X"""#), Value::Bytes(Vec::new().into()));
}

#[test]
fn unexpected_end() {
    let expected = "line 1, column 17: expected a value after \"<\", found end of input";
    assert_eq!(error("t where rating <"), at(expected, 16, 17));
    let expected = "line 1, column 8: expected \"by\" after \"order\", found end of input";
    assert_eq!(error("t order"), at(expected, 7, 8));
    let expected = "line 1, column 15: expected \"and\", \"or\" or \")\", found end of input";
    assert_eq!(error("t where (x = 1"), at(expected, 14, 15));
}

#[test]
fn unexpected_token() {
    let expected = "line 1, column 12: expected a value after \"=\", found \"=\"";
    assert_eq!(error("t where x == 1"), at(expected, 11, 12));
    let expected = "line 1, column 19: expected a field name, \"not\" or \"(\" after \"and\" \
                    (a field named or is written `or`), found keyword \"or\"";
    assert_eq!(error("t where x = 1 and or y = 2"), at(expected, 18, 19));
    let expected = "line 1, column 11: expected an operator (=, !=, <, <=, >, >=, in, not in) \
                    after \"x\", found a string";
    assert_eq!(error("t where x \"a\""), at(expected, 10, 11));
    let expected = "line 1, column 9: expected a whole number after \"limit\", found \"ten\"";
    assert_eq!(error("t limit ten"), at(expected, 8, 9));
    let expected = "line 1, column 13: expected a value after \"=\", found \"abc\"";
    assert_eq!(error("t where x = abc"), at(expected, 12, 13));
    let err = parse_search("t", "where x = 1").expect_err("no where in the search form");
    assert_eq!(
        err.to_string(),
        "line 1, column 1: expected a field name, \"not\" or \"(\" at the start \
         (a field named where is written `where`), found keyword \"where\""
    );
}

#[test]
fn trailing_input() {
    let expected =
        "line 1, column 15: expected \"and\", \"or\", \"order by\", \"limit\" or end of \
                    input, found \"y\" after a complete query";
    assert_eq!(error("t where x = 1 y = 2"), at(expected, 14, 15));
    let expected =
        "line 1, column 3: expected \"where\", \"order by\", \"limit\" or end of input, \
                    found \"wher\" after a complete query";
    assert_eq!(error("t wher x = 1"), at(expected, 2, 3));
    let expected = "line 1, column 14: expected \"asc\", \"desc\", \",\", \"limit\" or end of \
                    input, found \"y\" after a complete query";
    assert_eq!(error("t order by x y"), at(expected, 13, 14));
    let expected = "line 1, column 11: expected end of input, found keyword \"order\" after a \
                    complete query";
    assert_eq!(error("t limit 5 order by x"), at(expected, 10, 11));
}

#[test]
fn unterminated_string() {
    let expected = "line 1, column 16: unterminated string: no closing quote";
    assert_eq!(error("t where name = \"abc"), at(expected, 15, 16));
    assert_eq!(error("t where name = \"abc\\"), at(expected, 15, 16));
    assert_eq!(error("t where name = x\"ab"), at(expected, 15, 16));
}

#[test]
fn bad_escape() {
    let expected = "line 1, column 15: bad escape `\\q` in string \
                    (use \\\" \\' \\\\ \\n \\t \\r or \\u{HEX})";
    assert_eq!(error(r#"t where s = "a\qb""#), at(expected, 14, 15));
    let err = parse_query(r#"t where s = "\u{110000}""#).expect_err("not a char");
    assert_eq!(
        err.kind,
        ParseErrorKind::BadEscape {
            escape: "\\u{110000}".into()
        }
    );
    assert_eq!(err.offset, 13);
    let err = parse_query(r#"t where s = "\u12""#).expect_err("no braces");
    assert_eq!(
        err.kind,
        ParseErrorKind::BadEscape {
            escape: "\\u1".into()
        }
    );
}

#[test]
fn integer_overflow() {
    let expected = "line 1, column 13: integer 9223372036854775808 does not fit in 64 bits";
    assert_eq!(
        error("t where n = 9223372036854775808"),
        at(expected, 12, 13)
    );
}

#[test]
fn bad_number() {
    let expected = "line 1, column 13: bad number \"1.2.3\": not a number";
    assert_eq!(error("t where n = 1.2.3"), at(expected, 12, 13));
    let expected = "line 1, column 13: bad number \"1e999\": out of the range of a 64-bit float";
    assert_eq!(error("t where n = 1e999"), at(expected, 12, 13));
    let expected = "line 1, column 13: bad number \"2e\": no digits in the exponent";
    assert_eq!(error("t where n = 2e"), at(expected, 12, 13));
    let expected = "line 1, column 13: bad number \"-.\": no digits";
    assert_eq!(error("t where n = -."), at(expected, 12, 13));
    let expected = "line 1, column 13: bad number \"1and\": not a number";
    assert_eq!(error("t where n = 1and m = 2"), at(expected, 12, 13));
}

#[test]
fn bad_bytes() {
    let expected = "line 1, column 13: bad bytes literal: an odd number of hex digits";
    assert_eq!(error(r#"t where b = x"abc""#), at(expected, 12, 13));
    let expected =
        "line 1, column 13: bad bytes literal: only hex digits may appear between the quotes";
    assert_eq!(error(r#"t where b = x"zz""#), at(expected, 12, 13));
}

#[test]
fn limit_out_of_range() {
    let expected = "line 1, column 9: limit 0 is out of range (1 to 10000)";
    assert_eq!(error("t limit 0"), at(expected, 8, 9));
    let expected = "line 1, column 9: limit 10001 is out of range (1 to 10000)";
    assert_eq!(error("t limit 10001"), at(expected, 8, 9));
    let expected = "line 1, column 9: limit -5 is out of range (1 to 10000)";
    assert_eq!(error("t limit -5"), at(expected, 8, 9));
    let expected = "line 1, column 9: limit 99999999999999999999 is out of range (1 to 10000)";
    assert_eq!(error("t limit 99999999999999999999"), at(expected, 8, 9));
    assert_eq!(parse_query("t limit 10000").expect("max").limit, LIMIT_MAX);
}

#[test]
fn too_long() {
    let text = format!("t where x = \"{}\"", "a".repeat(QUERY_TEXT_MAX));
    let expected = format!(
        "line 1, column 8193: query is {} bytes (at most 8192)",
        text.len()
    );
    assert_eq!(error(&text), at(&expected, 8192, 8193));
    // The position never splits a character.
    let text = format!("t{}", "é".repeat(QUERY_TEXT_MAX / 2));
    assert_eq!(
        parse_query(&text).expect_err("long").offset,
        QUERY_TEXT_MAX - 1
    );
}

#[test]
fn too_deep() {
    let expected = "line 1, column 41: filter is nested more than 32 levels deep";
    let parens = format!("t where {}x = 1{}", "(".repeat(33), ")".repeat(33));
    assert_eq!(error(&parens), at(expected, 40, 41));
    let nots = format!("t where {}x = 1", "not ".repeat(33));
    let expected = "line 1, column 137: filter is nested more than 32 levels deep";
    assert_eq!(error(&nots), at(expected, 136, 137));
    // 32 levels are fine.
    let ok = format!("t where {}x = 1{}", "(".repeat(32), ")".repeat(32));
    assert!(parse_query(&ok).is_ok());
    // Few parentheses, but each adds an `or` and an `and` level to the tree.
    let level = "a = 1 or a = 1 and (";
    let mixed = format!("t where {}a = 1{}", level.repeat(16), ")".repeat(16));
    let expected = "line 1, column 9: filter is nested more than 32 levels deep";
    assert_eq!(error(&mixed), at(expected, 8, 9));
    let fits = format!("t where {}a = 1{}", level.repeat(15), ")".repeat(15));
    assert!(parse_query(&fits).is_ok());
    // Far beyond the bound: refused without overflowing the stack.
    assert!(parse_query(&format!("t where {}", "(".repeat(8000))).is_err());
    assert!(parse_query(&format!("t where {}", "not ".repeat(2000))).is_err());
}

#[test]
fn too_complex() {
    let text = format!("t where {}", vec!["a = 1"; EXPR_NODES_MAX + 1].join(" or "));
    let expected = "line 1, column 2313: filter has more than 256 terms";
    assert_eq!(error(&text), at(expected, 2312, 2313));
    let fits = format!("t where {}", vec!["a = 1"; EXPR_NODES_MAX - 1].join(" or "));
    assert!(parse_query(&fits).is_ok(), "255 predicates and one `or`");
}

#[test]
fn too_many_order_keys() {
    let expected = "line 1, column 36: more than 8 order keys";
    assert_eq!(
        error("t order by a, b, c, d, e, f, g, h, i"),
        at(expected, 35, 36)
    );
    assert!(parse_query("t order by a, b, c, d, e, f, g, h").is_ok());
}

#[test]
fn too_many_in_values() {
    let text = format!("t where x in ({}1)", "1, ".repeat(IN_VALUES_MAX));
    let expected = "line 1, column 3087: more than 1024 values in in lists";
    assert_eq!(error(&text), at(expected, 3086, 3087));
    // The bound is over all lists together.
    let half = format!("({}1)", "1, ".repeat(IN_VALUES_MAX / 2));
    assert!(parse_query(&format!("t where x in {half} or y in {half}")).is_err());
}

#[test]
fn empty_in_list() {
    let expected = "line 1, column 14: empty in list";
    assert_eq!(error("t where x in ()"), at(expected, 13, 14));
    assert_eq!(error("t where x in ( )"), at(expected, 13, 14));
}

#[test]
fn bad_identifier() {
    let expected = "line 1, column 1: bad table name \"Instances\": use 1-48 of a-z 0-9 _ . -";
    assert_eq!(error("Instances where x = 1"), at(expected, 0, 1));
    let long = "a".repeat(65);
    let expected = format!("line 1, column 9: bad field name \"{long}\": longer than 64 bytes");
    assert_eq!(error(&format!("t where {long} = 1")), at(&expected, 8, 9));
    let expected = "line 1, column 9: bad field name \"abc = 1\": no closing backquote";
    assert_eq!(error("t where `abc = 1"), at(expected, 8, 9));
    let expected = "line 1, column 12: bad field name \"a b\": use 1-64 of A-Z a-z 0-9 _ . -";
    assert_eq!(error("t order by `a b`"), at(expected, 11, 12));
    let err = parse_search("Bad", "x = 1").expect_err("bad table");
    assert_eq!((err.offset, err.line, err.column), (0, 1, 1));
    assert!(matches!(
        err.kind,
        ParseErrorKind::BadIdentifier {
            what: "table name",
            ..
        }
    ));
}

#[test]
fn errors_on_later_lines_render_with_a_caret() {
    let text = "t where\n  x = 1 and\n  y < ";
    let err = parse_query(text).expect_err("no value");
    assert_eq!((err.line, err.column), (3, 7));
    assert_eq!(
        err.render(text),
        "line 3, column 7: expected a value after \"<\", found end of input\n  y < \n      ^"
    );
}

/// Token soup: mostly grammar pieces, so parses often get far.
fn soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "(", ")", "not", "and", "or", "x", "`y`", "=", "<", ">=", "!=", "1", "-2.5e3", "\"s\\n\"",
        "'q'", "in", "(1,", "2)", ",", "order", "by", "asc", "desc", "limit", "5", "true",
        "x\"0a\"", "\\", "\"", "`", "é", "\n", "1e", ".", "where", "t",
    ]);
    prop::collection::vec((token, prop::sample::select(vec!["", " "])), 0..24)
        .prop_map(|parts| parts.into_iter().flat_map(|(t, s)| [t, s]).collect())
}

proptest! {
    #[test]
    fn printed_queries_parse_back_to_the_same_tree(query in wide_query()) {
        prop_assert_eq!(query.validate(), Ok(()));
        let text = query.to_string();
        let parsed = parse_query(&text).map_err(|e| TestCaseError::fail(e.render(&text)))?;
        prop_assert_eq!(parsed, query);
    }

    #[test]
    fn printed_filters_parse_back_in_the_search_form(
        expr in expr_with(wide_field(), wide_value()),
    ) {
        let text = expr.to_string();
        let parsed = parse_search("t", &text).map_err(|e| TestCaseError::fail(e.render(&text)))?;
        prop_assert_eq!(parsed.filter, Some(expr));
    }

    #[test]
    fn any_text_gives_a_query_or_a_located_error(text in any::<String>()) {
        check_any(&text)?;
    }

    #[test]
    fn token_soup_gives_a_query_or_a_located_error(text in soup()) {
        check_any(&text)?;
        check_any(&format!("t {text}"))?;
    }
}

/// Whatever the text, the parser does not panic; a query it accepts is valid
/// and prints to text that parses back to it; an error points inside the text.
fn check_any(text: &str) -> Result<(), TestCaseError> {
    match parse_query(text) {
        Ok(query) => {
            prop_assert_eq!(query.validate(), Ok(()));
            let again = parse_query(&query.to_string());
            prop_assert_eq!(again.as_ref(), Ok(&query));
        }
        Err(err) => {
            prop_assert!(err.offset <= text.len());
            prop_assert!(text.is_char_boundary(err.offset));
            prop_assert!(err.line >= 1 && err.column >= 1);
            let rendered = err.render(text);
            prop_assert!(rendered.ends_with('^'));
        }
    }
    let _ = parse_search("t", text);
    Ok(())
}
