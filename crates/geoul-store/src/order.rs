//! The one total order over field values that indexes, queries and sorting share.
//!
//! Owns: [`compare_values`] and [`OrdValue`] (a [`Value`] usable as a `BTreeMap`
//! key). Does not own: which fields are indexed (`index`) or what a query means
//! (`geoul-query`).
//!
//! The order: values of different kinds rank `bool < number < string < bytes`;
//! `false < true`; integers and floats are one kind, compared by exact numeric
//! value (so `2 = 2.0` and `2^53 + 1 > 2^53 as f64`), with `-0.0 = 0.0`;
//! strings and bytes compare bytewise. NaN is never stored (documents refuse it),
//! so the order is total on everything a table holds.

use std::cmp::Ordering;

use crate::value::Value;

fn rank(v: &Value) -> u8 {
    match v {
        Value::Bool(_) => 0,
        Value::Int(_) | Value::Float(_) => 1,
        Value::Str(_) => 2,
        Value::Bytes(_) => 3,
    }
}

/// Exact comparison of an integer with a float: an i64 is not always
/// representable as f64, so compare the float's integer part as i128 first.
fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        // Not reachable for stored values; rank NaN above every number.
        return Ordering::Less;
    }
    if f >= 1e19 {
        return Ordering::Less;
    }
    if f <= -1e19 {
        return Ordering::Greater;
    }
    let floor = f.floor();
    // |floor| < 1e19 fits in i128 exactly.
    let whole = floor as i128;
    match i128::from(i).cmp(&whole) {
        Ordering::Equal if f > floor => Ordering::Less,
        other => other,
    }
}

/// The shared total order (see the module doc).
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        // Numeric equality (`-0.0 = 0.0`); NaN never reaches here.
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).unwrap_or_else(|| x.total_cmp(y)),
        (Value::Int(x), Value::Float(y)) => cmp_int_float(*x, *y),
        (Value::Float(x), Value::Int(y)) => cmp_int_float(*y, *x).reverse(),
        (Value::Str(x), Value::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Whether two values are equal under [`compare_values`] (`2 = 2.0`).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

/// A [`Value`] ordered by [`compare_values`], for ordered maps and heaps.
#[derive(Clone, Debug)]
pub struct OrdValue(pub Value);

impl PartialEq for OrdValue {
    fn eq(&self, other: &Self) -> bool {
        values_equal(&self.0, &other.0)
    }
}

impl Eq for OrdValue {}

impl PartialOrd for OrdValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdValue {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_values(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    #[test]
    fn kinds_rank_bool_number_string_bytes() {
        let ordered = [
            Value::Bool(false),
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Float(-0.5),
            Value::Int(0),
            Value::Float(0.5),
            Value::Int(i64::MAX),
            Value::Float(1e300),
            Value::Str(String::new()),
            Value::Str("a".into()),
            Value::Bytes(Bytes::new()),
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                compare_values(&pair[0], &pair[1]),
                Ordering::Less,
                "{:?} < {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn integers_and_floats_compare_exactly() {
        assert!(values_equal(&Value::Int(2), &Value::Float(2.0)));
        assert!(values_equal(&Value::Float(-0.0), &Value::Float(0.0)));
        assert!(values_equal(&Value::Int(0), &Value::Float(-0.0)));
        // 2^53 + 1 is not representable as f64; it is still above 2^53.
        let big = (1i64 << 53) + 1;
        assert_eq!(
            compare_values(&Value::Int(big), &Value::Float((1i64 << 53) as f64)),
            Ordering::Greater
        );
        assert_eq!(
            compare_values(&Value::Int(-3), &Value::Float(-2.5)),
            Ordering::Less
        );
        assert_eq!(
            compare_values(&Value::Int(i64::MAX), &Value::Float(9.3e18)),
            Ordering::Less
        );
    }

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::Int),
            (-1e20f64..1e20).prop_map(Value::Float),
            (-1000i64..1000).prop_map(|i| Value::Float(i as f64 / 4.0)),
            (-1000i64..1000).prop_map(Value::Int),
        ]
    }

    proptest! {
        #[test]
        fn the_order_is_total_and_consistent(a in number(), b in number(), c in number()) {
            let ab = compare_values(&a, &b);
            prop_assert_eq!(ab, compare_values(&b, &a).reverse());
            if ab != Ordering::Greater && compare_values(&b, &c) != Ordering::Greater {
                prop_assert_ne!(compare_values(&a, &c), Ordering::Greater);
            }
        }
    }
}
