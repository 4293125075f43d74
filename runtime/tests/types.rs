//! `#[dsu::updateable]` on structs and enums: structural fingerprints.

#![allow(dead_code)]

use dsu::Fingerprinted;
use std::collections::HashMap;

mod v1 {
    #[dsu::updateable]
    pub struct Entry {
        pub name: String,
        pub hits: u32,
    }
}

mod same {
    #[dsu::updateable]
    pub struct Entry {
        pub name: String,
        pub hits: u32,
    }
}

mod wider {
    #[dsu::updateable]
    pub struct Entry {
        pub name: String,
        pub hits: u64,
    }
}

mod reordered {
    #[dsu::updateable]
    pub struct Entry {
        pub hits: u32,
        pub name: String,
    }
}

mod renamed {
    #[dsu::updateable]
    pub struct Entry {
        pub name: String,
        pub visits: u32,
    }
}

mod nested {
    #[dsu::updateable]
    pub struct Store {
        pub entries: std::collections::HashMap<String, super::v1::Entry>,
        pub order: Vec<(u32, Option<Box<super::v1::Entry>>)>,
    }

    #[dsu::updateable]
    pub struct Tuple(pub u8, pub String);
}

#[dsu::updateable]
pub enum Shape {
    Empty,
    Circle { radius: f64 },
    Pair(u32, u32),
}

mod shape_swapped {
    #[dsu::updateable]
    pub enum Shape {
        Empty,
        Pair(u32, u32),
        Circle { radius: f64 },
    }
}

#[test]
fn fingerprints_follow_structure() {
    assert_eq!(v1::Entry::FINGERPRINT, same::Entry::FINGERPRINT, "same structure, same fingerprint");
    assert_ne!(v1::Entry::FINGERPRINT, wider::Entry::FINGERPRINT, "u32 -> u64");
    assert_ne!(v1::Entry::FINGERPRINT, reordered::Entry::FINGERPRINT, "field order");
    assert_ne!(v1::Entry::FINGERPRINT, renamed::Entry::FINGERPRINT, "field name");
    assert_ne!(Shape::FINGERPRINT, shape_swapped::Shape::FINGERPRINT, "variant order");
    assert_ne!(
        <HashMap<String, v1::Entry>>::FINGERPRINT,
        <HashMap<String, wider::Entry>>::FINGERPRINT,
        "containers see their elements' changes"
    );
    assert_ne!(nested::Store::FINGERPRINT, v1::Entry::FINGERPRINT);
    let _ = nested::Tuple(1, String::new());
    let _ = (Shape::Empty, Shape::Circle { radius: 1.0 }, Shape::Pair(1, 2));
}

static ENTRIES: dsu::State<std::sync::Mutex<HashMap<String, v1::Entry>>> =
    dsu::State::new("types-test-entries", Default::default);
static ENTRIES_WIDER: dsu::State<std::sync::Mutex<HashMap<String, wider::Entry>>> =
    dsu::State::new("types-test-entries", Default::default);

#[test]
fn a_cell_refuses_code_compiled_for_another_layout() {
    ENTRIES.with(|e| e.lock().unwrap().insert("a".into(), v1::Entry { name: "a".into(), hits: 1 }));
    match ENTRIES_WIDER.try_with(|e| e.lock().unwrap().len()) {
        Err(dsu::Error::StateType { name, expected, found }) => {
            assert_eq!(name, "types-test-entries");
            assert!(expected.contains("wider::Entry") && found.contains("v1::Entry"), "{expected} / {found}");
        }
        other => panic!("expected a type error, got {other:?}"),
    }
    assert!(ENTRIES_WIDER.try_access().is_err());
}
