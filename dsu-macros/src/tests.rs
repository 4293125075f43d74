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
