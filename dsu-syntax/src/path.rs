//! Stable paths: the name a function has at run time, the same in the program and in every
//! patch. The macros form it as `module_path!()`, `::`, and the function's path relative to its
//! module ([`local_path`]); `cargo dsu patch` forms it from the module tree, so the two must
//! spell types and traits alike ([`normalize_token_text`]).

use quote::ToTokens;
use syn::{Ident, ItemImpl, Path, Type};

/// Where a function is defined: free in a module, in an inherent `impl`, or in a trait `impl`.
#[derive(Debug, Clone, Copy)]
pub enum FnOwner<'a> {
    Free,
    Inherent { self_ty: &'a Type },
    Trait { self_ty: &'a Type, trait_path: &'a Path },
}

impl<'a> FnOwner<'a> {
    /// The owner of the methods of `item`.
    pub fn of_impl(item: &'a ItemImpl) -> Self {
        match &item.trait_ {
            None => FnOwner::Inherent { self_ty: &item.self_ty },
            Some((_, trait_path, _)) => FnOwner::Trait { self_ty: &item.self_ty, trait_path },
        }
    }
}

/// The function's path relative to its module, as a user reads it: `greet`, `Counter::bump`,
/// `<Counter as fmt::Display>::fmt`.
pub fn local_path(owner: FnOwner<'_>, name: &Ident) -> String {
    match owner {
        FnOwner::Free => name.to_string(),
        FnOwner::Inherent { self_ty } => format!("{}::{name}", tokens_text(self_ty)),
        FnOwner::Trait { self_ty, trait_path } => {
            format!("<{} as {}>::{name}", tokens_text(self_ty), tokens_text(trait_path))
        }
    }
}

/// The stable path of a function of the module `module_path` (what `module_path!()` gives
/// there: `app`, `core_logic::handlers`).
pub fn stable_path(module_path: &str, owner: FnOwner<'_>, name: &Ident) -> String {
    format!("{module_path}::{}", local_path(owner, name))
}

/// Token text as a user writes it (see [`normalize_token_text`]).
pub fn tokens_text(t: &impl ToTokens) -> String {
    normalize_token_text(&t.to_token_stream().to_string())
}

/// Token text with the spaces proc-macro2 puts around `::`, `<`, `>`, `,` and `&` removed, and
/// no leading `::`: `fmt :: Display` → `fmt::Display`, `Vec < u8 >` → `Vec<u8>`.
///
/// The same function as `dsu_abi::normalize_token_text`, which the runtime's symbol names are
/// made with; this crate depends on syn alone, so it carries its own copy, and cargo-dsu's tests
/// check the two agree.
pub fn normalize_token_text(text: &str) -> String {
    let mut out = text
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" ::", "::")
        .replace("< ", "<")
        .replace(" <", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&");
    if out.starts_with("::") {
        out.replace_range(..2, "");
    }
    out
}
