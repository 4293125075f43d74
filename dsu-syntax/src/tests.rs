//! Snapshots of what this crate reads from source, each with its input in the snapshot's
//! description, and the properties the patch builder relies on.

use crate::*;
use quote::ToTokens;
use std::fmt::Write as _;

fn snapshot(name: &str, input: &str, output: String) {
    insta::with_settings!({ description => input, omit_expression => true }, {
        insta::assert_snapshot!(name, output);
    });
}

/// A path as written, without the spaces of token text.
fn path_text(p: &syn::Path) -> String {
    tokens_text(p)
}

fn attrs_of(item: &str) -> Vec<syn::Attribute> {
    let item: syn::Item = syn::parse_str(item).expect("an item");
    match item {
        syn::Item::Fn(f) => f.attrs,
        syn::Item::Struct(s) => s.attrs,
        syn::Item::Enum(e) => e.attrs,
        syn::Item::Impl(i) => i.attrs,
        other => panic!("no attributes read from {}", other.to_token_stream()),
    }
}

fn render_args(args: &TransformArgs) -> String {
    let way = |w| args.old_type(w).map_or("-".to_string(), path_text);
    format!(
        "from = {}, to = {}, default = {}",
        way(Direction::Forward),
        way(Direction::Inverse),
        args.default.is_some()
    )
}

const TYPES: &[&str] = &[
    "#[dsu::transform(from = dsu_old::Entry)] struct Entry;",
    "#[dsu::transform(from = dsu_old::Entry, default)] struct Entry;",
    "#[dsu::transform(default, to = dsu_old::Entry, from = dsu_old::Entry)] struct Entry;",
    "#[dsu::transform(from = dsu_old::Entry, default)] #[transform(to = dsu_old::Entry, default)] struct Entry;",
    "#[dsu::transform] struct Entry;",
    "#[dsu::transform(from = dsu_old::Entry, from = dsu_old::Entry)] struct Entry;",
    "#[dsu::transform(into = dsu_old::Entry)] struct Entry;",
    "#[dsu::transform(default, default)] struct Entry;",
    "#[dsu::transform = \"x\"] struct Entry;",
    "#[serde::transform(from = x)] #[dsu::updateable] struct Entry;",
];

#[test]
fn transform_arguments_of_types() {
    let mut out = String::new();
    for input in TYPES {
        let rendered = match transform_attrs(&attrs_of(input)) {
            Ok(all) if all.is_empty() => "no #[dsu::transform]".to_string(),
            Ok(all) => all.iter().map(render_args).collect::<Vec<_>>().join(" | "),
            Err(e) => {
                format!("error: {}", e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" / "))
            }
        };
        let _ = writeln!(out, "{input}\n    {rendered}");
    }
    snapshot("transform_arguments_of_types", "the attributes of each line's struct", out);
}

#[test]
fn transformer_functions() {
    let inputs = [
        "#[dsu::transform(from = dsu_old::Entry)] fn up(old: &dsu_old::Entry) -> Entry { todo!() }",
        "#[dsu::transform(to = dsu_old::Entry)] fn down(new: &Entry) -> dsu_old::Entry { todo!() }",
        "#[transform(to = crate::dsu_old::Tag)] fn down(new: &Tag) -> crate::dsu_old::Tag { todo!() }",
        "fn plain() {}",
        "#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry)] fn both() {}",
        "#[dsu::transform(from = dsu_old::Entry, default)] fn defaulted() {}",
        "#[dsu::transform] fn nothing() {}",
        "#[dsu::transform(from = dsu_old::A)] #[dsu::transform(to = dsu_old::A)] fn twice() {}",
    ];
    let mut out = String::new();
    for input in inputs {
        let rendered = match fn_transformer(&attrs_of(input)) {
            Ok(None) => "not a transformer".to_string(),
            Ok(Some(t)) => format!("{:?} {}", t.direction, path_text(&t.old_type)),
            Err(e) => format!("error: {e}"),
        };
        let _ = writeln!(out, "{input}\n    {rendered}");
    }
    snapshot("transformer_functions", "each line's function", out);
}

#[test]
fn a_transformer_moves_only_its_type_one_way() {
    let t =
        fn_transformer(&attrs_of("#[dsu::transform(from = dsu_old::Entry)] fn up() {}")).unwrap().unwrap();
    assert!(t.moves("Entry", Direction::Forward));
    assert!(!t.moves("Entry", Direction::Inverse));
    assert!(!t.moves("Tag", Direction::Forward));
}

#[test]
fn which_attributes_are_dsu_s() {
    let cases = [
        ("#[dsu::updateable] fn f() {}", true, false),
        ("#[updateable] fn f() {}", true, false),
        ("#[::dsu::updateable(?Send)] fn f() {}", true, false),
        ("#[other::updateable] fn f() {}", false, false),
        ("#[dsu::nested::updateable] fn f() {}", false, false),
        ("#[dsu::transform(from = dsu_old::A)] fn f() {}", false, true),
        ("#[transform] fn f() {}", false, true),
        ("#[tower::transform] fn f() {}", false, false),
    ];
    for (input, updateable, transform) in cases {
        let attrs = attrs_of(input);
        assert_eq!((is_updateable(&attrs), is_transform(&attrs)), (updateable, transform), "{input}");
    }
}

const IMPLS: &str = "
    impl Counter { fn bump(&mut self) {} fn new() -> Self { Counter } }
    impl fmt::Display for Counter { fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { Ok(()) } }
    impl ::std::ops::Add<Vec<u8>> for crate::Bytes { fn add(self, o: Vec<u8>) -> Self { self } }
    impl<'a> Handler<'a> for &'a Wrapper<(u8, u16)> { fn handle(&self) {} }
    impl Store<[u8; 4]> { fn get(&self) {} }
";

#[test]
fn stable_paths_of_methods_and_functions() {
    let file: syn::File = syn::parse_str(IMPLS).unwrap();
    let mut out = String::new();
    for item in &file.items {
        let syn::Item::Impl(imp) = item else { continue };
        for ii in &imp.items {
            let syn::ImplItem::Fn(m) = ii else { continue };
            let _ =
                writeln!(out, "{}", stable_path("core_logic::handlers", FnOwner::of_impl(imp), &m.sig.ident));
        }
    }
    let free: syn::ItemFn = syn::parse_str("fn get() {}").unwrap();
    let _ = writeln!(out, "{}", stable_path("core_logic::handlers", FnOwner::Free, &free.sig.ident));
    snapshot("stable_paths", IMPLS, out);
}

/// Signatures the rule accepts or refuses, differently by place for some.
const SIGNATURES: &[&str] = &[
    "fn f(a: u32, b: &str) -> String",
    "fn f<'a>(a: &'a str, b: &'a str) -> &'a str",
    "unsafe fn f(p: *const u8) -> u8",
    "fn f(&mut self, g: &dyn Fn(&str) -> Box<dyn Iterator<Item = u8>>)",
    "fn f(self: Box<Self>) -> Self",
    "async fn f(&self, key: &str) -> Option<&str>",
    "async fn f(&self) -> &str",
    "async fn route(&self, req: &Request) -> &str",
    "fn f<T: Clone>(t: T) -> T",
    "fn insert<K: Into<String>>(&mut self, key: K)",
    "fn f<const N: usize>() -> [u8; N]",
    "fn f<'a>(x: &'a u8) where 'a: 'static",
    "fn f<'a: 'b, 'b>(x: &'a u8, y: &'b u8)",
    "const fn f() -> u32",
    "async fn f<'a>(x: &'a str) -> &'a str",
    "extern \"C\" fn f(x: u32)",
    "fn f(w: impl Write) -> usize",
    "fn nested(&mut self, items: Vec<impl Fn()>)",
    "fn f(&self) -> impl Iterator<Item = u8>",
    "const extern \"C\" fn f<T>(t: impl Sized)",
];

/// One verdict of the rule: `updateable`, or each refused part with its tokens and message.
fn verdict(sig: &syn::Signature, place: Place) -> String {
    match can_be_updateable(sig, place) {
        Ok(()) => "updateable".to_string(),
        Err(reason) => {
            let parts = reason.parts.iter();
            let parts = parts.map(|p| format!("\n        {:?} at `{}`: {}", p.why, p.part(), p.why.message()));
            format!("refused{}", parts.collect::<String>())
        }
    }
}

#[test]
fn which_functions_can_be_updateable() {
    let places = [(Place::Free, "free"), (Place::Inherent, "inherent"), (Place::TraitImpl, "trait impl")];
    let mut out = String::new();
    for input in SIGNATURES {
        let sig: syn::Signature = syn::parse_str(input).expect("a signature");
        let _ = writeln!(out, "{input}");
        // Places with the same verdict on one line.
        let mut verdicts: Vec<(Vec<&str>, String)> = Vec::new();
        for (place, name) in places {
            let v = verdict(&sig, place);
            match verdicts.iter_mut().find(|(_, w)| *w == v) {
                Some((names, _)) => names.push(name),
                None => verdicts.push((vec![name], v)),
            }
        }
        for (names, v) in verdicts {
            let _ = writeln!(out, "    {}: {v}", names.join(", "));
        }
    }
    snapshot("updateable_signatures", "each line's signature, in each place", out);
}

#[test]
fn a_methods_place_is_its_impl_s() {
    let file: syn::File = syn::parse_str(IMPLS).unwrap();
    let places: Vec<Place> = file
        .items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Impl(imp) => Some(FnOwner::of_impl(imp).place()),
            _ => None,
        })
        .collect();
    use Place::*;
    assert_eq!(places, [Inherent, TraitImpl, TraitImpl, TraitImpl, Inherent]);
    assert_eq!(FnOwner::Free.place(), Free);
}

#[test]
fn a_reason_names_every_part() {
    let sig: syn::Signature = syn::parse_str("const fn f<T: Clone>()").unwrap();
    let reason = can_be_updateable(&sig, Place::Inherent).unwrap_err();
    assert_eq!(reason.message(), format!("{}; {}", Why::Generic.message(), Why::Const.message()));
    assert_eq!(
        reason.to_string(),
        format!("{} (`T : Clone`); {} (`const`)", Why::Generic.message(), Why::Const.message())
    );
}

#[test]
fn updateable_arguments() {
    let cases = ["", "?Send", "? Send", "Send", "?Sync", "?Send, ?Send", "send = false"];
    let mut out = String::new();
    for input in cases {
        let rendered = match syn::parse_str::<UpdateableArgs>(input) {
            Ok(a) => format!("not Send: {}", a.not_send.is_some()),
            Err(e) => format!("error: {e}"),
        };
        let _ = writeln!(out, "#[dsu::updateable({input})]\n    {rendered}");
    }
    snapshot("updateable_arguments", "each line's attribute", out);
}

#[test]
fn token_text_is_written_as_users_write_it() {
    assert_eq!(normalize_token_text("fmt :: Display"), "fmt::Display");
    assert_eq!(normalize_token_text("Vec < & str >"), "Vec<&str>");
    assert_eq!(normalize_token_text(":: std :: fmt"), "std::fmt");
}

const DOCUMENTED: &str = r#"
    /// An entry.
    #[doc = "More."]
    #[doc(alias = "record")]
    #[derive(Clone)]
    pub struct Entry {
        /// Its name.
        pub name: String,
        hits: u32,
    }
    /** Serves. */
    #[dsu::updateable]
    fn serve(/** the port */ port: u16) -> u16 {
        //! Inner docs are attributes too.
        /// A local.
        let p = port; // a comment
        match p {
            /// An arm.
            0 => 1,
            _ => p,
        }
    }
    mod inner {
        //! A module.
        /// A static.
        static N: u32 = 1;
    }
"#;

const UNDOCUMENTED: &str = "
    #[derive(Clone)] pub struct Entry { pub name: String, hits: u32 }
    #[dsu::updateable] fn serve(port: u16) -> u16 { let p = port; match p { 0 => 1, _ => p } }
    mod inner { static N: u32 = 1; }
";

#[test]
fn behaviour_tokens_leave_out_documentation() {
    let documented: syn::File = syn::parse_str(DOCUMENTED).unwrap();
    let plain: syn::File = syn::parse_str(UNDOCUMENTED).unwrap();
    let tokens = behaviour_tokens(&documented);
    assert_eq!(tokens, behaviour_tokens(&plain));
    assert!(!tokens.contains("doc"), "{tokens}");
    // Each item alone, too.
    for (a, b) in documented.items.iter().zip(&plain.items) {
        assert_eq!(behaviour_tokens(a), behaviour_tokens(b));
    }
    snapshot("behaviour_tokens", DOCUMENTED, tokens);
}

#[test]
fn behaviour_tokens_leave_out_the_commas_rustfmt_moves() {
    let pairs = [
        ("struct A { a: u32, b: u8, }", "struct A { a: u32, b: u8 }"),
        ("enum E { A, B, }", "enum E { A, B }"),
        (
            "fn f() { g(1, 2,); let v = [1, 2,]; let t = (1, 2,); }",
            "fn f() { g(1, 2); let v = [1, 2]; let t = (1, 2); }",
        ),
        (
            "fn f(x: u8) -> u8 { match x { 0 => { 1 }, 1 => if true { 2 } else { 3 }, _ => x, } }",
            "fn f(x: u8) -> u8 { match x { 0 => { 1 } 1 => if true { 2 } else { 3 } _ => x } }",
        ),
        ("fn f() { v![1, 2,]; }", "fn f() { v![1, 2]; }"),
    ];
    for (a, b) in pairs {
        let (a, b): (syn::Item, syn::Item) = (syn::parse_str(a).unwrap(), syn::parse_str(b).unwrap());
        assert_eq!(behaviour_tokens(&a), behaviour_tokens(&b));
    }
    // A one-element tuple is not `(x)`, and a comma after a non-block arm body is needed.
    let pairs = [
        ("fn f() -> (u8,) { (1,) }", "fn f() -> (u8) { (1) }"),
        ("fn f() { let t = (x,); }", "fn f() { let t = (x); }"),
    ];
    for (a, b) in pairs {
        let (a, b): (syn::Item, syn::Item) = (syn::parse_str(a).unwrap(), syn::parse_str(b).unwrap());
        assert_ne!(behaviour_tokens(&a), behaviour_tokens(&b), "{}", behaviour_tokens(&a));
    }
}

#[test]
fn behaviour_tokens_keep_what_runs() {
    let a: syn::Item = syn::parse_str("/// Same docs.\nfn f() -> u32 { 1 }").unwrap();
    let b: syn::Item = syn::parse_str("/// Same docs.\nfn f() -> u32 { 2 }").unwrap();
    assert_ne!(behaviour_tokens(&a), behaviour_tokens(&b));
    let c: syn::Item = syn::parse_str("#[inline] fn f() -> u32 { 1 }").unwrap();
    assert_ne!(behaviour_tokens(&a), behaviour_tokens(&c), "attributes other than docs count");
}

#[test]
fn state_cells() {
    let cases = [
        "static STORE: dsu::State<Mutex<HashMap<String, Entry>>> = dsu::State::new(\"store\", Default::default);",
        "static HITS: State<u64> = State::new(NAME, || 0);",
        "static PLAIN: u64 = 0;",
        "static OTHER: dsu::Cell<u64> = dsu::Cell::new(\"x\");",
    ];
    let mut out = String::new();
    for input in cases {
        let item: syn::ItemStatic = syn::parse_str(input).unwrap();
        let rendered = match state_cell(&item) {
            None => "not a state cell".to_string(),
            Some(c) => format!(
                "cell of {} named {}",
                tokens_text(c.value_type),
                c.name.map_or("(unknown)".to_string(), |n| format!("{:?}", n.value()))
            ),
        };
        let _ = writeln!(out, "{input}\n    {rendered}");
    }
    snapshot("state_cells", "each line's static", out);
}

#[test]
fn transform_attributes_are_removed_on_syn_nodes() {
    let mut s: syn::ItemStruct = syn::parse_str(
        "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, default)]\n#[derive(Clone)]\n\
         #[transform(to = dsu_old::Entry, default)]\npub struct Entry { pub hits: u64 }",
    )
    .unwrap();
    remove_transform_attrs(&mut s.attrs);
    assert_eq!(
        s.to_token_stream().to_string(),
        "# [dsu :: updateable] # [derive (Clone)] pub struct Entry { pub hits : u64 }"
    );
}

#[test]
fn cfg_predicates_against_a_build_configuration() {
    let set = crate::CfgSet::from_print_cfg("unix\ndebug_assertions\nfeature=\"fast\"\ntarget_os=\"linux\"\nlegacy_build\n");
    let file: syn::File = syn::parse_quote! {
        #[cfg(legacy_build)] fn a() -> u32 { 1 }
        #[cfg(not(legacy_build))] fn a() -> u32 { 0 }
        #[cfg(all(unix, feature = "fast"))] fn b() {}
        #[cfg(any(windows, feature = "slow"))] fn c() {}
        #[cfg(target_os = "linux")] mod m { #[cfg(windows)] fn d() {} fn e() {} }
        impl S { #[cfg(debug_assertions)] fn f() {} #[cfg(not(unix))] fn g() {} }
    };
    let mut items = file.items.clone();
    set.retain_active(&mut items);
    let kept: Vec<String> = items.iter().map(|i| quote::ToTokens::to_token_stream(i).to_string()).collect();
    insta::assert_snapshot!("cfg_retained", kept.join("\n"));
}
