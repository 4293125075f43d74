//! Module trees: which files a crate reads, and the module paths of their items.

use super::*;

const CHANGED: &str = "#[dsu::updateable]\nfn f() -> u32 { 2 }\n";
const ORIGINAL: &str = "#[dsu::updateable]\nfn f() -> u32 { 1 }\n";

/// The functions changed when every module file of `layout` (root `src/main.rs`) changes `f`.
fn changed_paths(name: &str, layout: &[(&str, &str)]) -> Vec<String> {
    let old: Vec<(&str, String)> = layout.iter().map(|(f, t)| (*f, t.replace("{f}", ORIGINAL))).collect();
    let new: Vec<(&str, String)> = layout.iter().map(|(f, t)| (*f, t.replace("{f}", CHANGED))).collect();
    let old: Vec<(&str, &str)> = old.iter().map(|(f, t)| (*f, t.as_str())).collect();
    let new: Vec<(&str, &str)> = new.iter().map(|(f, t)| (*f, t.as_str())).collect();
    let r = cmp(name, &old, &new);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    r.functions_changed.iter().map(|i| format!("{} {}:{}", i.path, i.file, i.line)).collect()
}

#[test]
fn modules_from_files_and_inline() {
    let f = "#[dsu::updateable]\nfn serve() {}\nmod inner {\n#[dsu::updateable]\nfn deep() {}\n}\n";
    let g = f.replace("fn serve() {}", "fn serve() { () }").replace("fn deep() {}", "fn deep() { () }");
    let r = cmp(
        "mods",
        &[("src/main.rs", "mod net;"), ("src/net/mod.rs", f)],
        &[("src/main.rs", "mod net;"), ("src/net/mod.rs", &g)],
    );
    assert_eq!(paths(&r.functions_changed), ["app::net::serve", "app::net::inner::deep"]);
}

#[test]
fn declarations_are_followed_as_rustc_follows_them() {
    let got = changed_paths(
        "rules",
        &[
            (
                "src/main.rs",
                "{f}\nmod a;\nmod b;\n#[path = \"elsewhere/c_file.rs\"]\nmod c;\nmod inl {\n    mod x;\n}\n",
            ),
            // A non-mod-rs file: its children are in `a/`.
            ("src/a.rs", "{f}\nmod deep;\n"),
            ("src/a/deep.rs", "{f}"),
            ("src/b/mod.rs", "{f}\nmod sub;\n"),
            ("src/b/sub.rs", "{f}"),
            // A `#[path]` file owns its directory.
            ("src/elsewhere/c_file.rs", "{f}\nmod beside;\n"),
            ("src/elsewhere/beside.rs", "{f}"),
            // Inside an inline module, one directory deeper.
            ("src/inl/x.rs", "{f}"),
            // Not declared anywhere, and not Rust: never read.
            ("src/orphan.rs", "this is not rust {"),
            ("src/a/orphan.rs", "nor this {"),
        ],
    );
    let mut expected = [
        "app::f src/main.rs:1",
        "app::a::f src/a.rs:1",
        "app::a::deep::f src/a/deep.rs:1",
        "app::b::f src/b/mod.rs:1",
        "app::b::sub::f src/b/sub.rs:1",
        "app::c::f src/elsewhere/c_file.rs:1",
        "app::c::beside::f src/elsewhere/beside.rs:1",
        "app::inl::x::f src/inl/x.rs:1",
    ];
    expected.sort();
    let mut got = got;
    got.sort();
    assert_eq!(got, expected);
}

#[test]
fn modules_behind_cfg_are_read_when_their_file_exists() {
    let got = changed_paths(
        "cfg",
        &[
            (
                "src/main.rs",
                "#[cfg(windows)]
mod win;
#[cfg(feature = \"extra\")]
mod absent;
",
            ),
            ("src/win.rs", "{f}"),
        ],
    );
    assert_eq!(got, ["app::win::f src/win.rs:1"]);
}

#[test]
fn a_declared_module_without_a_file_is_an_error() {
    let files = [("src/main.rs", "fn a() {}\n\nmod gone;\n")];
    let e = error_of("missing", &[unit("app", "src/main.rs")], &files, &files);
    assert!(e.starts_with("src/main.rs:3: no file for `mod gone;`"), "{e}");
}

#[test]
fn a_path_cycle_is_an_error() {
    let files = [("src/main.rs", "#[path = \"main.rs\"]\nmod again;\n")];
    let e = error_of("cycle", &[unit("app", "src/main.rs")], &files, &files);
    assert!(e.contains("comes back to this file"), "{e}");
}

#[test]
fn inline_modules_get_their_code_before_their_closing_brace() {
    let text = "mod a {\n    mod b { fn x() {} }\n    // a comment with } in it\n}\n";
    let file = syn::parse_file(text).unwrap();
    let syn::Item::Mod(a) = &file.items[0] else { panic!() };
    let (brace, _) = a.content.as_ref().unwrap();
    let at = crate::compare::tree::byte_offset(text, brace.span.close().start());
    assert_eq!(&text[at..], "}\n");
    // Columns count characters, offsets bytes.
    let text = "mod é { }";
    let file = syn::parse_file(text).unwrap();
    let syn::Item::Mod(m) = &file.items[0] else { panic!() };
    let at = crate::compare::tree::byte_offset(text, m.content.as_ref().unwrap().0.span.close().start());
    assert_eq!(&text[at..], "}");
}
