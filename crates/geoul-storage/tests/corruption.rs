//! Damaged files: a flipped byte anywhere, a truncated file, a foreign file. `open`
//! or `load` must return an error naming the file (or, for a byte no committed tree
//! uses, the exact data written) — never a panic, never different data.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::{read_table, Contents};
use geoul_storage::{DiskStore, Record, StorageError, StorageOptions, DATA_FILE_NAME};

const TABLES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Page size of the engine file; flips are placed relative to page boundaries.
const PAGE: usize = 4096;

/// Writes ~1500 records over three tables in several batches, closes, and returns
/// what each table must hold.
fn build(dir: &Path) -> BTreeMap<String, Contents> {
    let store = DiskStore::open(dir, StorageOptions::default()).expect("open");
    let mut expected: BTreeMap<String, Contents> = BTreeMap::new();
    for round in 0u32..5 {
        let rows: Vec<(&str, Vec<u8>, Vec<u8>)> = TABLES
            .iter()
            .flat_map(|&t| {
                (0u32..100).map(move |i| {
                    let key = format!("{t}-{round}-{i:03}").into_bytes();
                    let value = format!("<{t}|{round}|{i}>")
                        .repeat(1 + (i as usize % 20))
                        .into_bytes();
                    (t, key, value)
                })
            })
            .collect();
        let batch: Vec<_> = rows
            .iter()
            .map(|(t, k, v)| Record {
                table: t,
                key: k,
                value: Some(v),
            })
            .collect();
        store.write_batch(&batch).expect("write");
        for (t, k, v) in rows {
            expected.entry(t.to_string()).or_default().insert(k, v);
        }
    }
    expected
}

/// Opens and loads everything; `Ok` only if every table reads back in full.
fn open_and_load(dir: &Path) -> Result<BTreeMap<String, Contents>, StorageError> {
    let store = DiskStore::open(dir, StorageOptions::default())?;
    let mut all = BTreeMap::new();
    for t in TABLES {
        all.insert(t.to_string(), read_table(&store, t)?);
    }
    Ok(all)
}

enum Outcome {
    Detected(StorageError),
    Intact,
}

/// Runs `open_and_load` on `dir` and classifies the outcome, failing the test on a
/// panic or on data that differs from `expected`.
fn outcome(dir: &Path, expected: &BTreeMap<String, Contents>, what: &str) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| open_and_load(dir))) {
        Err(_) => panic!("{what}: the store panicked instead of reporting an error"),
        Ok(Ok(all)) => {
            assert!(&all == expected, "{what}: silently returned different data");
            Outcome::Intact
        }
        Ok(Err(err)) => Outcome::Detected(err),
    }
}

fn data_file(dir: &Path) -> std::path::PathBuf {
    dir.join(DATA_FILE_NAME)
}

fn assert_names_file(err: &StorageError, file: &Path, what: &str) {
    match err {
        StorageError::Corrupt { file: f, .. } => assert_eq!(f, file, "{what}"),
        other => panic!(
            "{what}: expected Corrupt naming {}, got {other}",
            file.display()
        ),
    }
}

#[test]
fn a_flipped_byte_in_a_record_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = build(dir.path());
    let file = data_file(dir.path());
    let mut bytes = fs::read(&file).expect("read");
    let needle = b"<beta|4|57>";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("value bytes are stored verbatim");
    bytes[at + 3] ^= 0x20;
    fs::write(&file, &bytes).expect("write");
    match outcome(dir.path(), &expected, "flip inside a value") {
        Outcome::Detected(err) => assert_names_file(&err, &file, "flip inside a value"),
        Outcome::Intact => panic!("a flipped value byte went unnoticed"),
    }
}

#[test]
fn a_flipped_byte_anywhere_is_detected_or_harmless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = build(dir.path());
    let original = fs::read(data_file(dir.path())).expect("read");
    let scratch = tempfile::tempdir().expect("scratch");
    let file = data_file(scratch.path());
    let (mut detected, mut harmless) = (0, 0);
    let mut kinds = BTreeMap::<String, usize>::new();
    for page in 0..original.len().div_ceil(PAGE) {
        // Two positions per page: its first byte and one that wanders across pages.
        for offset in [page * PAGE, page * PAGE + (page * 613 + 41) % PAGE] {
            if offset >= original.len() {
                continue;
            }
            let mut bytes = original.clone();
            bytes[offset] ^= 0xA5;
            fs::write(&file, &bytes).expect("write scratch");
            match outcome(scratch.path(), &expected, &format!("flip at {offset}")) {
                Outcome::Detected(err) => {
                    detected += 1;
                    let kind = format!("{err:?}")
                        .split([' ', '{', '('])
                        .next()
                        .unwrap_or("")
                        .to_string();
                    *kinds.entry(kind).or_default() += 1;
                }
                Outcome::Intact => harmless += 1,
            }
            fs::remove_file(&file).expect("reset scratch");
        }
    }
    eprintln!(
        "{} bytes: {detected} flips detected {kinds:?}, {harmless} in bytes no committed tree uses",
        original.len()
    );
    assert!(detected > 0);
}

#[test]
fn truncation_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = build(dir.path());
    let original = fs::read(data_file(dir.path())).expect("read");
    let scratch = tempfile::tempdir().expect("scratch");
    let file = data_file(scratch.path());
    for len in [
        0,
        1,
        511,
        PAGE,
        original.len() / 2,
        original.len() - PAGE,
        original.len() - 1,
    ] {
        fs::write(&file, &original[..len]).expect("write truncated");
        let what = format!("truncated to {len} of {} bytes", original.len());
        match outcome(scratch.path(), &expected, &what) {
            Outcome::Detected(err) => {
                eprintln!("{what}: {err}");
                assert_names_file(&err, &file, &what);
            }
            Outcome::Intact => eprintln!("{what}: cut only unused space, data intact"),
        }
        fs::remove_file(&file).expect("reset scratch");
    }
}

#[test]
fn a_foreign_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = data_file(dir.path());
    fs::write(&file, b"this is not a geoul store".repeat(500)).expect("write");
    let err = DiskStore::open(dir.path(), StorageOptions::default()).expect_err("foreign file");
    assert_names_file(&err, &file, "foreign file");
    // Nothing was overwritten.
    assert_eq!(
        fs::read(&file).expect("read"),
        b"this is not a geoul store".repeat(500)
    );
}

#[test]
fn every_header_byte_flip_is_detected_or_harmless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = build(dir.path());
    let original = fs::read(data_file(dir.path())).expect("read");
    let scratch = tempfile::tempdir().expect("scratch");
    let file = data_file(scratch.path());
    let (mut detected, mut harmless) = (0, 0);
    for offset in 0..512 {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut bytes = original.clone();
            bytes[offset] ^= mask;
            fs::write(&file, &bytes).expect("write scratch");
            match outcome(
                scratch.path(),
                &expected,
                &format!("header flip {mask:#x} at {offset}"),
            ) {
                Outcome::Detected(_) => detected += 1,
                Outcome::Intact => harmless += 1,
            }
            fs::remove_file(&file).expect("reset scratch");
        }
    }
    eprintln!("header: {detected} flips detected, {harmless} harmless");
}
