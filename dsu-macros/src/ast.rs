//! Parsing: what `#[updateable]` was put on, with the original syn nodes kept so every error
//! can point at its cause.

use dsu_syntax::FnOwner;
use proc_macro2::TokenStream;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, Item, ItemFn, ItemImpl, Pat, Receiver, Signature, Type};

/// The item under `#[updateable]`.
pub enum Input {
    /// A free function (or an associated function of an impl that is not annotated).
    Fn(ItemFn),
    /// An `impl` block: every method that can be (see [`dsu_syntax::can_be_updateable`])
    /// becomes updateable.
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

/// `#[dsu::updateable]` (or `#[updateable]`, imported), as `dsu_syntax::is_dsu_attr` reads it.
pub fn is_dsu_updateable(a: &syn::Attribute) -> bool {
    dsu_syntax::is_dsu_attr(a, dsu_syntax::attr::UPDATEABLE)
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
    pub owner: FnOwner<'a>,
    /// In a trait impl, the names of its associated types and consts: a body moved out of the
    /// impl spells `Self::Name` as `<Type as Trait>::Name`.
    pub assoc: Vec<Ident>,
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
        owner: FnOwner<'a>,
        assoc: Vec<Ident>,
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
        UpdateableFn { owner, assoc, attrs, vis, sig, block, receiver, args, send: true }
    }

    pub fn is_async(&self) -> bool {
        self.sig.asyncness.is_some()
    }

    /// The path a user reads, relative to the module: `greet`, `Counter::bump`,
    /// `<Counter as fmt::Display>::fmt`; `cargo dsu patch` names the function the same way.
    pub fn local_path(&self) -> String {
        dsu_syntax::local_path(self.owner, &self.sig.ident)
    }
}
