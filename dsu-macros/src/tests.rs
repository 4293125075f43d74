//! Expansion snapshots, one per supported form, with the input in each snapshot's description.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::quote;

fn pretty(tokens: TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as a file");
    prettyplease::unparse(&file)
}

fn check_updateable(name: &str, input: TokenStream) {
    let expanded = pretty(crate::expand::updateable(TokenStream::new(), input.clone()));
    insta::with_settings!({ description => pretty(input), omit_expression => true }, {
        insta::assert_snapshot!(name, expanded);
    });
}

#[test]
fn free_fn() {
    check_updateable("free_fn", quote! {
        /// Adds.
        pub fn add(a: u32, b: u32) -> u32 { a + b }
    });
}

#[test]
fn references_in_and_out() {
    check_updateable("references_in_and_out", quote! {
        fn first_word(s: &str) -> &str { s.split(' ').next().unwrap_or("") }
    });
}

#[test]
fn named_lifetime() {
    check_updateable("named_lifetime", quote! {
        fn longest<'a>(a: &'a str, b: &'a str) -> &'a str { if a.len() >= b.len() { a } else { b } }
    });
}

#[test]
fn owned_types_and_result() {
    check_updateable("owned_types_and_result", quote! {
        fn summarise(
            name: String,
            entries: Vec<Entry>,
            limits: Limits,
            (lo, hi): (u32, u32),
        ) -> Result<Summary, String> {
            Summary::new(name, entries, limits, lo, hi)
        }
    });
}

#[test]
fn unsafe_fn() {
    check_updateable("unsafe_fn", quote! {
        unsafe fn read(p: *const u32) -> u32 { unsafe { *p } }
    });
}

#[test]
fn inherent_impl() {
    check_updateable("inherent_impl", quote! {
        impl Store {
            pub fn new() -> Self { Store { n: 0 } }
            pub fn get(&self, key: &str) -> Option<&str> { self.map.get(key).map(String::as_str) }
            pub fn bump(&mut self) -> u64 { self.n += 1; self.n }
            pub fn into_map(self) -> HashMap<String, String> { self.map }
            pub fn into_len(mut self) -> usize { self.n = 0; self.map.len() }
            fn boxed(self: Box<Self>) -> usize { self.map.len() }
        }
    });
}

#[test]
fn trait_impl() {
    check_updateable("trait_impl", quote! {
        impl fmt::Display for Entry {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { write!(f, "{}", self.name) }
        }
    });
}

#[test]
fn trait_impl_with_associated_type() {
    check_updateable("trait_impl_with_associated_type", quote! {
        impl Iterator for Countdown {
            type Item = u32;
            fn next(&mut self) -> Option<Self::Item> {
                if self.0 == 0 { None } else { self.0 -= 1; Some(self.0) }
            }
        }
    });
}

#[test]
fn async_free_fn() {
    check_updateable("async_free_fn", quote! {
        /// Handles one request.
        pub async fn handle(req: &Request, log: &mut Vec<&str>) -> Response {
            log.push("handled");
            backend(req).await
        }
    });
}

#[test]
fn async_inherent_impl() {
    check_updateable("async_inherent_impl", quote! {
        impl Server {
            pub async fn lookup(&self, key: &str) -> Option<String> { self.db.get(key).await }
            pub async fn count(&mut self) -> u64 { self.n += 1; self.n }
            pub async fn start(port: u16) -> Self { Server::bind(port).await }
        }
    });
}

#[test]
fn async_trait_impl() {
    check_updateable("async_trait_impl", quote! {
        impl Handler for Echo {
            type Body = String;
            async fn handle(&self, req: &Request) -> Self::Body { format!("{}{}", self.prefix, req.path) }
        }
    });
}

/// The slot's type, whose text the signature fingerprint hashes, of the expansion's first
/// function.
fn slot_type(expanded: &TokenStream) -> String {
    let text = expanded.to_string();
    let start = text.find("Slot :: new (").expect("a slot");
    let end = text[start..].find("as * mut ()").expect("the slot's type") + start;
    text[start..end].to_string()
}

#[test]
fn async_fingerprint_differs_from_sync_and_covers_send() {
    let sync = crate::expand::updateable(TokenStream::new(), quote!(fn f(x: &str) -> u32 { 1 }));
    let send = crate::expand::updateable(TokenStream::new(), quote!(async fn f(x: &str) -> u32 { 1 }));
    let not_send =
        crate::expand::updateable(quote!(?Send), quote!(async fn f(x: &str) -> u32 { 1 }));
    let (sync, send, not_send) = (slot_type(&sync), slot_type(&send), slot_type(&not_send));
    assert!(!sync.contains("Future"), "{sync}");
    assert!(send.contains("dyn :: core :: future :: Future < Output = u32 > + :: core :: marker :: Send + '__dsu"), "{send}");
    assert!(!not_send.contains("Send"), "{not_send}");
    assert!(not_send.contains("Future < Output = u32 > + '__dsu"), "{not_send}");
    assert_ne!(sync, send);
    assert_ne!(send, not_send);
}

#[test]
fn async_fn_without_borrowed_arguments_is_static() {
    let out = crate::expand::updateable(TokenStream::new(), quote!(async fn f(n: u32) -> u32 { n }));
    let ty = slot_type(&out);
    assert!(ty.contains("fn (u32) -> :: core :: pin :: Pin"), "no binder: {ty}");
    assert!(ty.contains("+ 'static >"), "{ty}");
}

#[test]
fn async_fn_with_lifetime_parameter_is_refused() {
    let input = quote! {
        async fn longest<'a>(a: &'a str, b: &'a str) -> &'a str { if a.len() >= b.len() { a } else { b } }
    };
    let out = crate::expand::updateable(TokenStream::new(), input.clone());
    check_refusal("refusal_async_lifetime_parameter", out, input);
}

#[test]
fn not_send_needs_an_async_fn() {
    let out = crate::expand::updateable(quote!(?Send), quote!(fn f() {})).to_string();
    assert!(out.contains("applies to `async fn`s only"), "{out}");
    let out = crate::expand::updateable(quote!(Send), quote!(async fn f() {})).to_string();
    assert!(out.contains("takes no arguments, except `?Send`"), "{out}");
}

#[test]
fn update_point_fn() {
    let input = quote! {
        fn handle(request: &str) -> String { request.to_uppercase() }
    };
    let expanded = pretty(crate::expand::update_point(TokenStream::new(), input.clone()));
    insta::with_settings!({ description => pretty(input), omit_expression => true }, {
        insta::assert_snapshot!("update_point_fn", expanded);
    });
}

/// A refusal is exactly one `compile_error!` followed by the original item, token for token, so
/// the user sees one error and no cascade from a half-expanded item. The error output is
/// snapshotted as the macro's raw text: it is not parsed, since a refusal need not be valid code.
fn check_refusal(name: &str, out: TokenStream, input: TokenStream) {
    let text = out.to_string();
    assert_eq!(text.matches("compile_error").count(), 1, "exactly one error: {text}");
    let tokens: Vec<TokenTree> = out.into_iter().collect();
    // `:: core :: compile_error ! { "…" }`, then the item.
    let message = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace))
        .expect("a compile_error! invocation");
    let head: TokenStream = tokens[..message].iter().cloned().collect();
    assert_eq!(head.to_string(), ":: core :: compile_error !", "the error comes first: {text}");
    let rest: TokenStream = tokens[message + 1..].iter().cloned().collect();
    assert_eq!(rest.to_string(), input.to_string(), "the original item follows, unchanged");
    insta::with_settings!({ description => pretty(input), omit_expression => true }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn refusal_keeps_the_item_and_emits_one_error() {
    let input = quote! {
        fn largest<T: PartialOrd>(a: T, b: T) -> T { if a > b { a } else { b } }
    };
    let out = crate::expand::updateable(TokenStream::new(), input.clone());
    check_refusal("refusal_generic_fn", out, input);
}

#[test]
fn refusal_of_an_item_keeps_the_item_and_emits_one_error() {
    let input = quote! {
        static HITS: u64 = 0;
    };
    let out = crate::expand::updateable(TokenStream::new(), input.clone());
    check_refusal("refusal_static", out, input);
}

#[test]
fn update_point_refusal_keeps_the_item_and_emits_one_error() {
    let input = quote! {
        pub struct Server { port: u16 }
    };
    let out = crate::expand::update_point(TokenStream::new(), input.clone());
    check_refusal("refusal_update_point_on_struct", out, input);
}

#[test]
fn all_errors_are_reported_together() {
    let input = quote! {
        const extern "C" fn both<T>() {}
    };
    let out = crate::expand::updateable(TokenStream::new(), input).to_string();
    assert_eq!(out.matches("compile_error").count(), 3, "generic, const and extern: {out}");
}

#[test]
fn updateable_struct() {
    check_updateable("updateable_struct", quote! {
        #[derive(Debug, Clone)]
        pub struct Entry { pub name: String, pub hits: u64, tags: Vec<String> }
    });
}

#[test]
fn updateable_enum() {
    check_updateable("updateable_enum", quote! {
        pub enum Shape { Empty, Circle { radius: f64 }, Pair(u32, u32) }
    });
}

#[test]
fn transformer_fn() {
    let input = quote! {
        fn upgrade(old: &dsu_old::Entry) -> Result<Entry, String> {
            Ok(Entry { name: old.name.clone(), hits: u64::from(old.hits) })
        }
    };
    let args = quote!(from = dsu_old::Entry);
    let expanded = pretty(crate::transform::transform(args, input.clone()));
    insta::with_settings!({ description => pretty(input), omit_expression => true }, {
        insta::assert_snapshot!("transformer_fn", expanded);
    });
}

#[test]
fn instrumented_free_fn() {
    // `#[instrument]` moves onto the implementation, named after the function.
    check_updateable("instrumented_free_fn", quote! {
        #[instrument]
        fn greet(name: &str) -> String { format!("hello {name}") }
    });
}

#[test]
fn instrumented_async_free_fn() {
    check_updateable("instrumented_async_free_fn", quote! {
        #[tracing::instrument(skip(db), fields(user = %name), err)]
        async fn get(db: Arc<Db>, name: String) -> Result<String, Error> { db.get(&name).await }
    });
}

#[test]
fn instrumented_inherent_impl() {
    check_updateable("instrumented_inherent_impl", quote! {
        impl Store {
            #[tracing::instrument(skip(self), ret, level = "debug")]
            pub fn get(&self, key: &str) -> Option<u32> { self.map.get(key).copied() }
            #[tracing::instrument(skip_all, name = "store.load")]
            pub async fn load(&mut self, path: &str) -> usize { self.read(path).await }
        }
    });
}

#[test]
fn instrumented_async_trait_impl() {
    check_updateable("instrumented_async_trait_impl", quote! {
        impl Handler for Echo {
            type Body = String;
            #[tracing::instrument(skip(self, req), fields(path = %req.path))]
            async fn handle(&self, req: &Request) -> Self::Body { format!("{}{}", self.prefix, req.path) }
        }
    });
}

/// The `#[instrument]` attribute the implementation of `input`'s first function gets.
fn moved_instrument(input: TokenStream) -> String {
    let out = crate::expand::updateable(TokenStream::new(), input).to_string();
    let start = out.find("# [instrument").expect("an #[instrument] in the expansion");
    let end = out[start..].find("] fn").expect("the attribute's end") + start + 1;
    out[start..end].to_string()
}

#[test]
fn instrument_keeps_a_span_name_it_has() {
    // Named: left as it is.
    let a = moved_instrument(quote!(#[instrument(name = "custom", skip_all)] fn f(x: u32) {}));
    assert_eq!(a, "# [instrument (name = \"custom\" , skip_all)]");
    // A bare string literal is a name to tracing too.
    let a = moved_instrument(quote!(#[instrument("custom", skip_all)] fn f(x: u32) {}));
    assert_eq!(a, "# [instrument (\"custom\" , skip_all)]");
    // `name` inside `fields(..)` is a field, not the span's name.
    let a = moved_instrument(quote!(#[instrument(fields(name = 1),)] fn f(x: u32) {}));
    assert_eq!(a, "# [instrument (fields (name = 1) , name = \"f\")]");
    let a = moved_instrument(quote!(#[instrument()] fn f(x: u32) {}));
    assert_eq!(a, "# [instrument (name = \"f\")]");
}

#[test]
fn instrument_changes_the_body_hash() {
    // A patch that changes only the instrumentation changes the function.
    let hash = |input: TokenStream| {
        let text = crate::expand::updateable(TokenStream::new(), input).to_string();
        let at = text.find("__DSU_SIG ,").expect("FnInfo::new's arguments");
        text[at..].split(',').nth(1).expect("the body hash").trim().to_string()
    };
    let plain = hash(quote!(fn f(x: u32) -> u32 { x }));
    let traced = hash(quote!(#[instrument] fn f(x: u32) -> u32 { x }));
    let skipping = hash(quote!(#[instrument(skip(x))] fn f(x: u32) -> u32 { x }));
    assert_ne!(plain, traced);
    assert_ne!(traced, skipping);
    // Other attributes (docs, lints) leave it as it was.
    assert_eq!(plain, hash(quote!(#[doc = "x"] #[allow(unused)] fn f(x: u32) -> u32 { x })));
}

const PLAIN_METHODS: &str = "
    impl Store {
        pub fn get(&self, key: &str) -> Option<u32> { self.map.get(key).copied() }
        pub fn put<T: ToString>(&mut self, key: T, v: u32) { self.map.insert(key.to_string(), v); }
        pub fn show(&self, out: impl std::fmt::Write) -> std::fmt::Result { Ok(()) }
        #[allow(deprecated)]
        pub const fn limit() -> usize { 64 }
        #[cfg(feature = \"iter\")]
        pub fn keys(&self) -> impl Iterator<Item = &String> { self.map.keys() }
    }
";

#[test]
fn plain_methods() {
    // Methods the rule refuses stay as they are, each with its warning; the others are updateable.
    check_updateable("plain_methods", PLAIN_METHODS.parse().unwrap());
}

/// The notes of the warnings in an expansion, one per line.
fn warning_notes(expanded: TokenStream) -> String {
    struct Notes(Vec<String>);
    impl<'ast> syn::visit::Visit<'ast> for Notes {
        fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
            if a.path().is_ident("deprecated") {
                let nv: syn::MetaNameValue = a.parse_args().expect("deprecated(note = ..)");
                let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = nv.value else {
                    panic!("a string note")
                };
                self.0.push(s.value());
            }
        }
    }
    let file: syn::File = syn::parse2(expanded).expect("the expansion parses");
    let mut notes = Notes(Vec::new());
    syn::visit::visit_file(&mut notes, &file);
    notes.0.join("\n")
}

#[test]
fn plain_method_warnings() {
    let out = crate::expand::updateable(TokenStream::new(), PLAIN_METHODS.parse().unwrap());
    insta::with_settings!({ description => pretty(PLAIN_METHODS.parse().unwrap()), omit_expression => true }, {
        insta::assert_snapshot!("plain_method_warnings", warning_notes(out));
    });
}

#[test]
fn plain_trait_method_warning_names_the_trait() {
    let input = quote! {
        impl Router for Table {
            async fn route(&self, req: &Request) -> &str { &self.0 }
            fn size(&self) -> usize { self.0.len() }
        }
    };
    let notes = warning_notes(crate::expand::updateable(TokenStream::new(), input));
    assert!(notes.starts_with("`<Table as Router>::route` stays a plain method"), "{notes}");
    assert!(notes.contains("returns a borrow and takes more than one reference"), "{notes}");
    assert_eq!(notes.lines().count(), 1, "`size` is updateable: {notes}");
}

#[test]
fn every_method_plain_leaves_no_hidden_impl() {
    let input = quote! {
        impl Store {
            pub fn put<T: ToString>(&mut self, key: T) {}
        }
    };
    let out = crate::expand::updateable(TokenStream::new(), input).to_string();
    assert_eq!(out.matches("impl Store").count(), 1, "{out}");
    assert!(!out.contains("__DSU_SLOT"), "{out}");
    assert!(out.contains("pub fn put < T : ToString > (& mut self , key : T) { }"), "{out}");
}

#[test]
fn refusal_of_a_method_marked_itself() {
    // Marked `#[dsu::updateable]` itself, the method asked for it: a refusal is an error. The
    // item follows without that mark, which would expand again and add a second error.
    let input = quote! {
        impl Store {
            pub fn get(&self) -> u32 { 1 }
            #[dsu::updateable]
            pub fn put<T: ToString>(&mut self, key: T) {}
        }
    };
    let out = crate::expand::updateable(TokenStream::new(), input.clone());
    let text = out.to_string();
    assert_eq!(text.matches("compile_error").count(), 1, "{text}");
    assert!(text.contains("cannot make a generic function updateable"), "{text}");
    let unmarked = quote! {
        impl Store {
            pub fn get(&self) -> u32 { 1 }
            pub fn put<T: ToString>(&mut self, key: T) {}
        }
    };
    assert!(text.ends_with(&format!("}} {unmarked}")), "{text}");
}

#[test]
fn only_dsu_s_own_attribute_marks_a_method() {
    // `#[dsu::updateable]` and `#[updateable]` (imported) mark a method itself, so a refusal is
    // an error; another crate's attribute of that name does not (`dsu_syntax::is_dsu_attr`): the
    // method stays plain, with its warning, and keeps the attribute.
    let refusals = |mark: TokenStream| {
        let input = quote! { impl Store { #mark pub fn put<T: ToString>(&mut self, key: T) {} } };
        crate::expand::updateable(TokenStream::new(), input).to_string()
    };
    for mark in [quote!(#[dsu::updateable]), quote!(#[updateable]), quote!(#[::dsu::updateable])] {
        let text = refusals(mark.clone());
        assert_eq!(text.matches("compile_error").count(), 1, "{mark}: {text}");
    }
    let text = refusals(quote!(#[cache::updateable]));
    assert!(!text.contains("compile_error"), "{text}");
    assert!(text.contains("# [cache :: updateable] pub fn put"), "{text}");
    assert!(text.contains("stays a plain method"), "{text}");
}
