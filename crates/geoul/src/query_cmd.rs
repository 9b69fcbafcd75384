//! `geoul query 'TABLE where … order by … limit N'`: a distributed query from
//! the command line.
//!
//! Owns: parsing the text (errors with a caret under the position, exit 2),
//! running it through the client, and rendering the rows as a table (key,
//! then every field that appears) or as JSON (`--json`, the same shape as
//! `POST /query`). Does not own: the query language (geoul-query) or its
//! execution (the cluster).

use std::time::Duration;

use anyhow::Context;
use geoul_client::wire::QueryAnswer;
use geoul_node::query_json::{answer_json, key_text};
use geoul_store::Value;

use crate::cli::QueryArgs;
use crate::cluster_client::{connect_client, load_secret, one_line, targets};
use crate::Failure;

pub fn run(args: QueryArgs) -> Result<(), Failure> {
    let mut query = geoul_query::parse_query(&args.query)
        .map_err(|e| Failure::Usage(format!("query: {}", e.render(&args.query))))?;
    if let Some(after) = &args.after {
        query.after = Some(
            geoul_query::Cursor::decode(after)
                .map_err(|e| Failure::Usage(format!("--after: {e}")))?,
        );
    }
    query
        .validate()
        .map_err(|e| Failure::Usage(format!("query: {e}")))?;
    let targets = targets(&args.cluster)?;
    let secret = load_secret(&args.cluster)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let answer = runtime.block_on(async {
        let client = connect_client(&targets, &secret).await?;
        client
            .query(&query, args.timeout)
            .await
            .map_err(|e| Failure::Runtime(one_line(&e.to_string())))
    })?;
    if args.json {
        println!("{}", answer_json(&answer));
    } else {
        println!("{}", render(&answer, args.timeout));
    }
    Ok(())
}

fn text(value: &Value) -> String {
    match value {
        Value::Str(s) => s.chars().flat_map(char::escape_debug).collect(),
        other => other.to_string(),
    }
}

/// A table: `KEY` and every field in order of first appearance, then a line
/// with the count, partial slots and the cursor of the next page.
pub fn render(answer: &QueryAnswer, timeout: Duration) -> String {
    let mut columns: Vec<String> = Vec::new();
    for row in &answer.rows {
        for (name, _) in row.doc.fields() {
            if !columns.iter().any(|c| c == name) {
                columns.push(name.to_string());
            }
        }
    }
    let mut grid: Vec<Vec<String>> = vec![std::iter::once("KEY".to_string())
        .chain(columns.iter().map(|c| c.to_uppercase()))
        .collect()];
    for row in &answer.rows {
        let mut line = vec![key_text(&row.key)];
        for c in &columns {
            line.push(row.doc.get(c).map(text).unwrap_or_else(|| "-".into()));
        }
        grid.push(line);
    }
    let widths: Vec<usize> = (0..=columns.len())
        .map(|i| grid.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in &grid {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let n = answer.rows.len();
    out.push_str(&format!("({n} {})", if n == 1 { "row" } else { "rows" }));
    if answer.partial {
        out.push_str(&format!(
            "\nPARTIAL: {} slot(s) could not be answered within {}; rows they hold are missing",
            answer.missing_slots.len(),
            crate::cluster_client::format_duration(timeout)
        ));
    }
    if let Some(next) = &answer.next {
        out.push_str(&format!("\nnext page: --after {next}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use geoul_client::wire::{Row, Stamp};
    use geoul_store::Document;

    fn answer(partial: bool) -> QueryAnswer {
        let row = |key: &str, fields: Vec<(&str, Value)>| Row {
            key: key.as_bytes().to_vec(),
            doc: Document::from_fields(fields.into_iter().map(|(k, v)| (k.to_string(), v)))
                .expect("doc"),
            version: Stamp { ts: 1, origin: 1 },
            expires_at_ms: None,
        };
        QueryAnswer {
            rows: vec![
                row(
                    "g1",
                    vec![
                        ("mode", Value::Str("ranked".into())),
                        ("rating", Value::Int(1500)),
                    ],
                ),
                row("g2", vec![("rating", Value::Float(99.5))]),
            ],
            partial,
            missing_slots: if partial { vec![3, 9] } else { vec![] },
            next: Some("abc".into()),
            nodes: 2,
            examined: 10,
            node: "node-1".into(),
        }
    }

    #[test]
    fn rows_render_as_an_aligned_table() {
        let out = render(&answer(false), Duration::from_secs(2));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "KEY  MODE    RATING");
        assert_eq!(lines[1], "g1   ranked  1500");
        assert_eq!(lines[2], "g2   -       99.5");
        assert_eq!(lines[3], "(2 rows)");
        assert_eq!(lines[4], "next page: --after abc");
    }

    #[test]
    fn a_partial_answer_says_so() {
        let out = render(&answer(true), Duration::from_secs(2));
        assert!(
            out.contains("PARTIAL: 2 slot(s) could not be answered within 2.0s"),
            "{out}"
        );
    }
}
