use super::*;
use proptest::prelude::*;

fn spec() -> InstanceSpec {
    InstanceSpec {
        addr: "10.0.0.7:7777".into(),
        mode: "ranked".into(),
        region: "eu".into(),
        map: Some("Frost Valley".into()),
        players: 7,
        max_players: 10,
        spectators: 12,
        state: InstanceState::Playing,
        rating: Some(1510.5),
        started_at: Some(1_700_000_000_000),
        tags: [
            ("voice".to_string(), TagValue::Bool(true)),
            ("level".to_string(), TagValue::Int(12)),
            ("skill".to_string(), TagValue::Float(0.75)),
            ("lang".to_string(), TagValue::Str("ko".into())),
        ]
        .into_iter()
        .collect(),
    }
}

#[test]
fn a_valid_spec_round_trips_through_its_document() {
    let s = spec();
    s.validate().expect("valid");
    let doc = s
        .to_doc(&Meta {
            started_at: 1_700_000_000_000,
            updated_at: 1_700_000_001_000,
            ttl_ms: 10_000,
            registered_at: 1_700_000_000_500,
            seats: true,
        })
        .expect("doc");
    assert_eq!(doc.get("open_slots"), Some(&Value::Int(3)));
    assert_eq!(doc.get("tag.level"), Some(&Value::Int(12)));
    let back = from_doc("i-1", &doc, 42).expect("reads back");
    assert_eq!(back.spec(), s);
    assert_eq!(back.updated_at, 1_700_000_001_000);
    assert_eq!(back.expires_at, 42);
    assert_eq!(back.ttl_ms, 10_000);
    assert_eq!(back.registered_at, 1_700_000_000_500);
    assert!(back.seats);
}

/// Breaks one rule of a valid spec.
type Breaker = Box<dyn Fn(&mut InstanceSpec)>;

#[test]
fn every_rule_names_its_field() {
    let cases: Vec<(&str, Breaker)> = vec![
        ("addr", Box::new(|s| s.addr = "no-port".into())),
        ("addr", Box::new(|s| s.addr = "host:0".into())),
        ("addr", Box::new(|s| s.addr = "host:99999".into())),
        ("addr", Box::new(|s| s.addr = "bad host:1".into())),
        ("addr", Box::new(|s| s.addr = "x".repeat(300) + ":1")),
        ("mode", Box::new(|s| s.mode = "Ranked".into())),
        ("mode", Box::new(|s| s.mode = String::new())),
        ("region", Box::new(|s| s.region = "e".repeat(33))),
        ("map", Box::new(|s| s.map = Some("a\u{0}b".into()))),
        ("map", Box::new(|s| s.map = Some("m".repeat(65)))),
        ("max_players", Box::new(|s| s.max_players = 0)),
        (
            "max_players",
            Box::new(|s| s.max_players = MAX_PLAYERS_MAX + 1),
        ),
        ("players", Box::new(|s| s.players = 11)),
        (
            "spectators",
            Box::new(|s| s.spectators = SPECTATORS_MAX + 1),
        ),
        ("rating", Box::new(|s| s.rating = Some(f64::INFINITY))),
        ("rating", Box::new(|s| s.rating = Some(2e9))),
        (
            "tags",
            Box::new(|s| {
                for i in 0..=TAGS_MAX {
                    s.tags.insert(format!("t{i}"), TagValue::Int(1));
                }
            }),
        ),
        (
            "tags.Bad",
            Box::new(|s| {
                s.tags.insert("Bad".into(), TagValue::Int(1));
            }),
        ),
        (
            "tags.long",
            Box::new(|s| {
                s.tags
                    .insert("long".into(), TagValue::Str("x".repeat(TAG_STR_MAX + 1)));
            }),
        ),
        (
            "tags.nan",
            Box::new(|s| {
                s.tags.insert("nan".into(), TagValue::Float(f64::NAN));
            }),
        ),
    ];
    for (field, break_it) in cases {
        let mut s = spec();
        break_it(&mut s);
        let e = s.validate().expect_err(field);
        assert_eq!(e.field, field, "{e}");
    }
    assert!(check_addr("[::1]:7777").is_ok());
    assert!(check_addr("[nope]:7777").is_err());
    assert!(check_id("match-1:eu.7_a").is_ok());
    assert_eq!(check_id("").expect_err("empty").field, "id");
    assert!(check_id("a b").is_err());
    assert!(check_id("é").is_err());
    assert!(check_id(&"i".repeat(ID_MAX + 1)).is_err());
}

#[test]
fn json_rejects_unknown_fields_wrong_types_and_negative_counts() {
    let ok = r#"{"addr":"h:1","mode":"m","region":"r","max_players":4,"tags":{"lang":"ko","lvl":3,"ok":true,"f":0.5}}"#;
    let s: InstanceSpec = serde_json::from_str(ok).expect("parses");
    assert_eq!(s.tags.get("lvl"), Some(&TagValue::Int(3)));
    assert_eq!(s.tags.get("lang"), Some(&TagValue::Str("ko".into())));
    let unknown = r#"{"addr":"h:1","mode":"m","region":"r","max_players":4,"colour":"red"}"#;
    let e = serde_json::from_str::<InstanceSpec>(unknown).expect_err("unknown");
    assert!(e.to_string().contains("unknown field `colour`"), "{e}");
    let wrong = r#"{"addr":"h:1","mode":"m","region":"r","max_players":"four"}"#;
    let e = serde_json::from_str::<InstanceSpec>(wrong).expect_err("type");
    assert!(e.to_string().contains("invalid type"), "{e}");
    let negative = r#"{"addr":"h:1","mode":"m","region":"r","max_players":4,"players":-1}"#;
    let e = serde_json::from_str::<InstanceSpec>(negative).expect_err("negative");
    assert!(e.to_string().contains("-1"), "{e}");
}

#[test]
fn updates_change_only_what_they_name() {
    let u = InstanceUpdate {
        players: Some(9),
        state: Some(InstanceState::Ending),
        set_tags: [("lang".to_string(), TagValue::Str("en".into()))]
            .into_iter()
            .collect(),
        remove_tags: vec!["voice".into()],
        ..InstanceUpdate::default()
    };
    let s = u.apply_to(spec());
    assert_eq!(s.players, 9);
    assert_eq!(s.state, InstanceState::Ending);
    assert_eq!(s.mode, "ranked");
    assert_eq!(s.tags.get("lang"), Some(&TagValue::Str("en".into())));
    assert!(!s.tags.contains_key("voice"));
    assert!(InstanceUpdate::default().is_empty());
}

fn arb_tag() -> impl Strategy<Value = TagValue> {
    prop_oneof![
        "[ -~]{0,20}".prop_map(TagValue::Str),
        any::<i64>().prop_map(TagValue::Int),
        (-1e12f64..1e12).prop_map(TagValue::Float),
        any::<bool>().prop_map(TagValue::Bool),
    ]
}

proptest! {
    /// Tags survive both encodings: postcard (the binary protocol) and JSON
    /// (`geoul call`, the CLI), each with its own form.
    #[test]
    fn tags_round_trip_through_postcard_and_json(
        tags in prop::collection::btree_map("[a-z][a-z0-9_-]{0,8}", arb_tag(), 0..8),
    ) {
        let mut s = spec();
        s.tags = tags;
        let bin = postcard::to_allocvec(&s).expect("encodes");
        let back: InstanceSpec = postcard::from_bytes(&bin).expect("decodes");
        prop_assert_eq!(&back, &s);
        let json = serde_json::to_string(&s).expect("encodes");
        let back: InstanceSpec = serde_json::from_str(&json).expect("decodes");
        // JSON writes 2.0 as 2.0, which reads back as a float: kinds survive.
        prop_assert_eq!(&back, &s);
    }
}
