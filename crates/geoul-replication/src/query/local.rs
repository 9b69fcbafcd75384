//! One node's part of a query: pick an access path, walk it, keep the top k.
//!
//! Owns: the planner ([`Plan`]) and [`local_query`]. Does not own: the query
//! language, hints and top-k (geoul-query) or index maintenance (the table).
//!
//! Plans, cheapest first for the usual game searches:
//! * `eq` — an indexed `=`/`in` that selects few entries (probed by walking at
//!   most [`EQ_PROBE`] keys of it), or any indexed `=`/`in` when the query
//!   has no `order by` (keys of one value come in key order, the result's
//!   order, so each value's walk stops after `limit` matches);
//! * `order` — walk the index of the first `order by` field in query order and
//!   stop as soon as `limit` rows matched and the field's value changes: for
//!   "best 20 of a large, loosely filtered set" this reads a few hundred keys.
//!   If it has read [`order_budget`] keys without finishing, the filter is too
//!   selective for it and the next plan runs instead;
//! * `eq` with a large set, or `range` on an indexed field;
//! * `scan` — every entry of the served slots.
//!
//! Every plan re-applies the whole filter and visibility to each candidate:
//! hints only narrow where to look.

use std::ops::Bound;

use geoul_placement::slot_of;
use geoul_query::{hints, Cursor, Expr, Hint, OrderKey, Query, SortKey, TopK};
use geoul_store::{compare_values, Entry, Key, Table, Value};

use super::{QueryError, QueryPage, SlotSet};
use crate::local::TableHandle;

/// Keys of an equality hint walked to estimate its size.
pub const EQ_PROBE: usize = 1024;

/// Keys the `order` plan may read before giving up on it.
pub fn order_budget(limit: usize) -> usize {
    20_000 + 100 * limit
}

/// How a node reads candidates.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Keys holding one of `values` in `field`'s index.
    Eq {
        /// Field.
        field: String,
        /// Values.
        values: Vec<Value>,
    },
    /// Keys within bounds in `field`'s index.
    Range {
        /// Field.
        field: String,
        /// Lower bound.
        lower: Bound<Value>,
        /// Upper bound.
        upper: Bound<Value>,
    },
    /// The first order key's index, in query order.
    Order(OrderKey),
    /// Every entry of the served slots.
    Scan,
}

impl Plan {
    /// A short description for explain output.
    pub fn describe(&self) -> String {
        match self {
            Self::Eq { field, values } => format!("index {field} in {} value(s)", values.len()),
            Self::Range { field, .. } => format!("index {field} range"),
            Self::Order(k) => format!(
                "index {} {}",
                k.field,
                if k.descending { "desc" } else { "asc" }
            ),
            Self::Scan => "scan".into(),
        }
    }
}

struct Run<'a> {
    served: &'a SlotSet,
    now_ms: u64,
    filter: Option<&'a Expr>,
    order: &'a [OrderKey],
    after: Option<&'a Cursor>,
    top: TopK<Entry>,
    examined: u64,
}

impl Run<'_> {
    /// Offers one candidate; returns whether it matched (and its first order
    /// value, for the early stop of the order plan).
    fn visit(&mut self, table: &Table, key: &[u8]) -> Option<Option<Value>> {
        if !self.served.contains(slot_of(key)) {
            return None;
        }
        self.examined += 1;
        let visible = table.get(key, self.now_ms)?;
        // Only the filter's and the order's fields are read: most candidates
        // are rejected, and decoding whole documents dominated searches.
        if self
            .filter
            .is_some_and(|f| !f.matches_encoded(visible.value))
        {
            return None;
        }
        let sort = SortKey::from_encoded(self.order, visible.value, key);
        // Rows on earlier pages are not matches of this one (the order plan
        // counts matches to know when it may stop).
        if self.after.is_some_and(|c| !c.admits(self.order, &sort)) {
            return None;
        }
        let first = sort.values.first().cloned().flatten();
        // The row is copied out only if it places: the lock may be released
        // before the page is built (scans lock slot by slot).
        if self.top.accepts(&sort) {
            let entry = Entry {
                key: Key::new(key).ok()?,
                version: visible.version,
                expires_at_ms: visible.expires_at_ms,
                value: Some(visible.value.clone()),
            };
            self.top.offer(sort, entry);
        }
        Some(first)
    }
}

fn bound(b: &Bound<Value>) -> Bound<&Value> {
    match b {
        Bound::Included(v) => Bound::Included(v),
        Bound::Excluded(v) => Bound::Excluded(v),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The query's rows among the slots of `asked` that this node serves.
pub fn local_query(
    handle: &TableHandle,
    query: &Query,
    asked: &SlotSet,
    now_ms: u64,
) -> Result<QueryPage, QueryError> {
    query.validate()?;
    let mut served = SlotSet::empty();
    for slot in asked.iter() {
        if let Some(s) = geoul_placement::Slot::new(slot) {
            if handle.sync().serves(s) {
                served.insert(slot);
            }
        }
    }
    let limit = query.limit as usize;
    let hints = query.filter.as_ref().map(hints).unwrap_or_default();
    let plans = choose(&handle.lock(), query, &hints);
    let mut run = Run {
        served: &served,
        now_ms,
        filter: query.filter.as_ref(),
        order: &query.order,
        after: query.after.as_ref(),
        top: TopK::new(&query.order, limit, query.after.as_ref())?,
        examined: 0,
    };
    let mut used = Plan::Scan;
    for plan in plans {
        run.top = TopK::new(&query.order, limit, query.after.as_ref())?;
        used = plan.clone();
        if execute(handle, &mut run, &plan, &hints, limit, query.after.as_ref()) {
            break;
        }
    }
    let examined = run.examined;
    let rows = run.top.into_sorted().into_iter().map(|(_, e)| e).collect();
    Ok(QueryPage {
        rows,
        served,
        plan: used.describe(),
        examined,
    })
}

/// Plans to try in order (the last one always completes).
fn choose(table: &Table, query: &Query, hints: &[Hint]) -> Vec<Plan> {
    if query.order.is_empty() {
        // Any indexed equality stops early (see `execute`): no need to probe.
        let eq = hints
            .iter()
            .filter(|h| table.has_index(h.field()))
            .filter_map(|h| match h {
                Hint::Eq { field, values } => Some((field, values)),
                Hint::Range { .. } => None,
            })
            .min_by_key(|(_, values)| values.len());
        if let Some((field, values)) = eq {
            return vec![
                Plan::Eq {
                    field: field.clone(),
                    values: values.clone(),
                },
                Plan::Scan,
            ];
        }
    }
    let mut best_eq: Option<(usize, Plan)> = None;
    let mut range: Option<Plan> = None;
    for hint in hints {
        if !table.has_index(hint.field()) {
            continue;
        }
        match hint {
            Hint::Eq { field, values } => {
                let mut size = 0;
                for v in values {
                    let keys =
                        table.index_range(field, Bound::Included(v), Bound::Included(v), false);
                    size += keys.map_or(0, |k| k.take(EQ_PROBE).count());
                    if size >= EQ_PROBE {
                        break;
                    }
                }
                if best_eq.as_ref().is_none_or(|(n, _)| size < *n) {
                    let plan = Plan::Eq {
                        field: field.clone(),
                        values: values.clone(),
                    };
                    best_eq = Some((size, plan));
                }
            }
            Hint::Range {
                field,
                lower,
                upper,
            } => {
                if range.is_none() {
                    range = Some(Plan::Range {
                        field: field.clone(),
                        lower: lower.clone(),
                        upper: upper.clone(),
                    });
                }
            }
        }
    }
    let order = query
        .order
        .first()
        .filter(|k| table.has_index(&k.field))
        .map(|k| Plan::Order(k.clone()));
    let mut plans = Vec::new();
    match best_eq {
        Some((size, plan)) if size < EQ_PROBE => plans.push(plan),
        Some((_, plan)) => {
            plans.extend(order);
            plans.push(plan);
        }
        None => {
            plans.extend(order);
            plans.extend(range);
        }
    }
    plans.push(Plan::Scan);
    plans
}

/// Runs one plan; `false` when it gave up (the order plan over budget).
/// Index plans hold the table's lock while they walk (they are short: the
/// order walk is budgeted); scans take it slot by slot, so a scan of a large
/// table never stalls writes for long.
fn execute(
    handle: &TableHandle,
    run: &mut Run<'_>,
    plan: &Plan,
    hints: &[Hint],
    limit: usize,
    after: Option<&Cursor>,
) -> bool {
    match plan {
        Plan::Eq { field, values } => {
            // Keys holding one value come in key order, which is the result's
            // order when the query has no `order by`: then each value's walk
            // stops after `limit` matches.
            let by_key = run.order.is_empty();
            let table = handle.lock();
            for v in values {
                let Some(keys) =
                    table.index_range(field, Bound::Included(v), Bound::Included(v), false)
                else {
                    return false;
                };
                let mut matched = 0usize;
                for key in keys {
                    if run.visit(&table, key).is_some() {
                        matched += 1;
                        if by_key && matched >= limit {
                            break;
                        }
                    }
                }
            }
            true
        }
        Plan::Range {
            field,
            lower,
            upper,
        } => {
            let table = handle.lock();
            let Some(keys) = table.index_range(field, bound(lower), bound(upper), false) else {
                return false;
            };
            for key in keys {
                run.visit(&table, key);
            }
            true
        }
        Plan::Order(first) => {
            let bounds = hint_bounds(hints, &first.field);
            order_walk(handle, run, first, bounds, limit, after)
        }
        Plan::Scan => {
            scan(handle, run, |_, _| true);
            true
        }
    }
}

/// Visits every visible entry of the served slots that `keep` admits,
/// locking the table one slot at a time.
fn scan(handle: &TableHandle, run: &mut Run<'_>, keep: impl Fn(&Table, &[u8]) -> bool) {
    let slots: Vec<u16> = run.served.iter().collect();
    for slot in slots {
        let Some(slot) = geoul_placement::Slot::new(slot) else {
            continue;
        };
        let table = handle.lock();
        for key in table.slot_keys(slot) {
            if keep(&table, key.as_bytes()) {
                run.visit(&table, key.as_bytes());
            }
        }
    }
}

/// The bounds the filter puts on `field`, if it puts any: then every
/// matching row holds the field within them.
fn hint_bounds(hints: &[Hint], field: &str) -> Option<(Bound<Value>, Bound<Value>)> {
    hints.iter().find_map(|h| match h {
        Hint::Range {
            field: f,
            lower,
            upper,
        } if f == field => Some((lower.clone(), upper.clone())),
        Hint::Eq { field: f, values } if f == field => {
            let min = values.iter().min_by(|a, b| compare_values(a, b))?;
            let max = values.iter().max_by(|a, b| compare_values(a, b))?;
            Some((Bound::Included(min.clone()), Bound::Included(max.clone())))
        }
        _ => None,
    })
}

/// The stricter of two lower (`upper = false`) or upper bounds.
fn stricter<'a>(a: Bound<&'a Value>, b: Bound<&'a Value>, upper: bool) -> Bound<&'a Value> {
    let value = |x: &Bound<&'a Value>| match x {
        Bound::Included(v) | Bound::Excluded(v) => Some(*v),
        Bound::Unbounded => None,
    };
    match (value(&a), value(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) => match compare_values(x, y) {
            std::cmp::Ordering::Equal => {
                if matches!(a, Bound::Excluded(_)) {
                    a
                } else {
                    b
                }
            }
            std::cmp::Ordering::Less if upper => a,
            std::cmp::Ordering::Less => b,
            std::cmp::Ordering::Greater if upper => b,
            std::cmp::Ordering::Greater => a,
        },
    }
}

fn order_walk(
    handle: &TableHandle,
    run: &mut Run<'_>,
    first: &OrderKey,
    bounds: Option<(Bound<Value>, Bound<Value>)>,
    limit: usize,
    after: Option<&Cursor>,
) -> bool {
    // Rows sort by the first field, then the rest; a cursor's first value is
    // where the walk resumes (inclusive: later keys tie-break past it). A
    // cursor past every indexed row (its value missing) skips the walk.
    let start = match after.map(|c| c.values.first().cloned().flatten()) {
        Some(None) => None,
        Some(Some(v)) => Some(Bound::Included(v)),
        None => Some(Bound::Unbounded),
    };
    let (hint_lower, hint_upper) = match &bounds {
        Some((l, u)) => (bound(l), bound(u)),
        None => (Bound::Unbounded, Bound::Unbounded),
    };
    if let Some(start) = start {
        // Within what the filter allows of the field: a range on the order
        // field is walked from its edge, not from the index's end.
        let (lower, upper) = if first.descending {
            (hint_lower, stricter(hint_upper, bound(&start), true))
        } else {
            (stricter(hint_lower, bound(&start), false), hint_upper)
        };
        let table = handle.lock();
        let Some(keys) = table.index_range(&first.field, lower, upper, first.descending) else {
            return false;
        };
        let budget = order_budget(limit);
        let mut matched = 0usize;
        let mut full_at: Option<Option<Value>> = None;
        let mut read = 0usize;
        for key in keys {
            read += 1;
            if read > budget && full_at.is_none() {
                return false;
            }
            if let Some(value) = run.visit(&table, key) {
                if let Some(full) = &full_at {
                    if value.as_ref().map(OrdOpt) != full.as_ref().map(OrdOpt) {
                        return true;
                    }
                }
                matched += 1;
                if matched >= limit && full_at.is_none() {
                    full_at = Some(value);
                }
            }
        }
        if matched >= limit {
            return true;
        }
    }
    // Fewer than `limit` indexed rows matched: rows without the field sort
    // after every indexed one and may fill the page — unless the filter
    // bounds the field, which a row without it cannot match.
    if bounds.is_some() {
        return true;
    }
    let field = first.field.clone();
    let now = run.now_ms;
    scan(handle, run, |table, key| {
        table
            .get(key, now)
            .and_then(|v| v.value.field(&field).ok())
            .is_some_and(|f| f.is_none())
    });
    true
}

/// Equality of optional values under the shared order (`2 = 2.0`).
#[derive(Debug)]
struct OrdOpt<'a>(&'a Value);

impl PartialEq for OrdOpt<'_> {
    fn eq(&self, other: &Self) -> bool {
        geoul_store::values_equal(self.0, other.0)
    }
}
