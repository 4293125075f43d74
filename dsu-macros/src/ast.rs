//! Parsing: what `#[updateable]` was put on, with the original syn nodes kept so every error
//! can point at its cause.

use crate::rule::Place;
use proc_macro2::TokenStream;
use syn::{
    FnArg, ImplItem, ImplItemFn, Item, ItemFn, ItemImpl, Pat, Path, Receiver, Signature, Type,
};

/// The item under `#[updateable]`.
pub enum Input {
    /// A free function (or an associated function of an impl that is not annotated).
    Fn(ItemFn),
    /// An `impl` block: every method that can be (see [`crate::rule`]) becomes updateable.
    Impl(ItemImpl),
    /// Anything else; refused with the item kind named.
    Other(Item),
}

impl Input {
    pub fn parse(tokens: TokenStream) -> syn::Result<Self> {
        // A method of an impl block arrives without its impl; `Item` cannot parse it when it has
        // a receiver, so try `ItemFn` first (syn accepts receivers there).
        if let Ok(f) = syn::parse2::<ItemFn>(tokens.clone()) {
            return Ok(Input::Fn(f));
        }
        match syn::parse2::<Item>(tokens.clone()) {
            Ok(Item::Impl(i)) => Ok(Input::Impl(i)),
            Ok(other) => Ok(Input::Other(other)),
            Err(_) => {
                // A method with a visibility-less or defaulted signature inside an impl block:
                // parse as an impl item to produce a precise error later.
                let f = syn::parse2::<ImplItem>(tokens)?;
                match f {
                    ImplItem::Fn(ImplItemFn { attrs, vis, sig, block, .. }) => {
                        Ok(Input::Fn(ItemFn { attrs, vis, sig, block: Box::new(block) }))
                    }
                    other => Err(syn::Error::new_spanned(
                        other,
                        "#[dsu::updateable] goes on a function, an impl block, a struct or an enum",
                    )),
                }
            }
        }
    }
}

/// Where a function lives: free, inherent method, or trait-impl method.
#[derive(Clone)]
pub enum Owner<'a> {
    Free,
    Inherent { self_ty: &'a Type },
    Trait { self_ty: &'a Type, trait_path: &'a Path, assoc: Vec<syn::Ident> },
}

impl Owner<'_> {
    pub fn self_ty(&self) -> Option<&Type> {
        match self {
            Owner::Free => None,
            Owner::Inherent { self_ty } | Owner::Trait { self_ty, .. } => Some(self_ty),
        }
    }

    pub fn place(&self) -> Place {
        match self {
            Owner::Free => Place::Free,
            Owner::Inherent { .. } => Place::Inherent,
            Owner::Trait { .. } => Place::TraitImpl,
        }
    }
}

/// `#[dsu::updateable]` (or `#[updateable]`, imported).
pub fn is_dsu_updateable(a: &syn::Attribute) -> bool {
    a.path().segments.last().is_some_and(|s| s.ident == "updateable")
}

/// Whether an attribute of an updateable function belongs to its body rather than to its
/// dispatcher, and so goes on the implementation the slot holds: `#[tracing::instrument]` (or
/// `#[instrument]`, imported). Its span must cover the body (for an `async fn`, the whole future),
/// not the dispatcher's call through the slot, and its `skip(..)` and `fields(..)` name the
/// arguments, which only the implementation keeps (the dispatcher renames them).
pub fn is_body_attr(a: &syn::Attribute) -> bool {
    a.path().segments.last().is_some_and(|s| s.ident == "instrument")
}

/// One function to make updateable.
pub struct UpdateableFn<'a> {
    pub owner: Owner<'a>,
    pub attrs: &'a [syn::Attribute],
    pub vis: &'a syn::Visibility,
    pub sig: &'a Signature,
    pub block: &'a syn::Block,
    pub receiver: Option<&'a Receiver>,
    /// Typed arguments after the receiver: (pattern, type).
    pub args: Vec<(&'a Pat, &'a Type)>,
    /// For an `async fn`: whether its erased future is `Send` (`#[dsu::updateable(?Send)]`
    /// turns it off). Ignored for synchronous functions.
    pub send: bool,
}

impl<'a> UpdateableFn<'a> {
    pub fn new(
        owner: Owner<'a>,
        attrs: &'a [syn::Attribute],
        vis: &'a syn::Visibility,
        sig: &'a Signature,
        block: &'a syn::Block,
    ) -> Self {
        let mut receiver = None;
        let mut args = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(t) => args.push((&*t.pat, &*t.ty)),
            }
        }
        UpdateableFn { owner, attrs, vis, sig, block, receiver, args, send: true }
    }

    pub fn is_async(&self) -> bool {
        self.sig.asyncness.is_some()
    }

    /// The path a user reads, relative to the module: `greet`, `Counter::bump`,
    /// `<Counter as fmt::Display>::fmt`.
    pub fn local_path(&self) -> String {
        let name = self.sig.ident.to_string();
        match &self.owner {
            Owner::Free => name,
            Owner::Inherent { self_ty } => format!("{}::{name}", tokens_text(self_ty)),
            Owner::Trait { self_ty, trait_path, .. } => {
                format!("<{} as {}>::{name}", tokens_text(self_ty), tokens_text(trait_path))
            }
        }
    }
}

/// Token text as a user writes it (see [`dsu_abi::normalize_token_text`]).
pub fn tokens_text(t: &impl quote::ToTokens) -> String {
    dsu_abi::normalize_token_text(&t.to_token_stream().to_string())
}
