//! Stable paths: the name a function has at run time, the same in the program and in every
//! patch. The macros form it as `module_path!()`, `::`, and the function's path relative to its
//! module ([`local_path`]); `cargo dsu patch` forms it from the module tree with [`stable_path`].
//! Both spell the self type and trait with [`tokens_text`], so the two always agree.

use crate::rule::Place;
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

    /// The type `Self` names, for a method.
    pub fn self_ty(&self) -> Option<&'a Type> {
        match *self {
            FnOwner::Free => None,
            FnOwner::Inherent { self_ty } | FnOwner::Trait { self_ty, .. } => Some(self_ty),
        }
    }

    /// Where the function is declared, as far as [`crate::can_be_updateable`] cares.
    pub fn place(&self) -> Place {
        match self {
            FnOwner::Free => Place::Free,
            FnOwner::Inherent { .. } => Place::Inherent,
            FnOwner::Trait { .. } => Place::TraitImpl,
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
/// no leading `::`: `fmt :: Display` → `fmt::Display`, `Vec < u8 >` → `Vec<u8>`. The stable
/// paths in the runtime's table and symbol names are spelled with it.
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
