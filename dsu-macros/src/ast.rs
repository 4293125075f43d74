//! Parsing: what `#[updateable]` was put on, with the original syn nodes kept so every error
//! can point at its cause.

use proc_macro2::TokenStream;
use proc_macro2::Span;
use syn::visit_mut::VisitMut;
use syn::{
    FnArg, ImplItem, ImplItemFn, Item, ItemFn, ItemImpl, Lifetime, Pat, Path, Receiver, Signature,
    Type,
};

/// The item under `#[updateable]`.
pub enum Input {
    /// A free function (or an associated function of an impl that is not annotated).
    Fn(ItemFn),
    /// An `impl` block: every method becomes updateable.
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

/// Names the elided lifetimes (`&T`, `'_`) of an `async fn`'s signature, for its erased type
/// `for<'__dsu, ..> fn(..) -> Pin<Box<dyn Future<Output = T> + Send + '__dsu>>`.
///
/// Every elided lifetime that is not behind a reference (the reference of each argument, `'_`
/// in a by-value argument, the output's) becomes `'__dsu`, the lifetime the future is bounded
/// by: the future borrows every argument, so it lives no longer than the shortest of them.
/// Elided lifetimes behind a reference (`&mut Formatter<'_>`, `&mut Vec<&str>`) get fresh names
/// `'__dsu_1`, `'__dsu_2`…: the reference's type implies they outlive `'__dsu`, and giving them
/// `'__dsu` too would make the caller's `&'a mut T<'b>` need `'a == 'b` (`&mut` is invariant).
/// Lifetimes hidden in a path (`Iter<u8>` for `Iter<'_, u8>`) cannot be seen: write them out.
pub struct AsyncLifetimes {
    top: Lifetime,
    depth: usize,
    /// Every elided lifetime becomes `top`, behind a reference or not (for the output, whose
    /// elided lifetimes all borrow from the arguments).
    flat: bool,
    /// How many elided lifetimes became `top`.
    pub top_uses: usize,
    /// The fresh names given, in order.
    pub fresh: Vec<Lifetime>,
}

impl AsyncLifetimes {
    pub const TOP: &'static str = "'__dsu";

    pub fn new() -> Self {
        Self::named(Self::TOP)
    }

    /// Names `top`, `{top}_1`, `{top}_2`… instead (the dispatcher's own, which must not shadow
    /// the binders of the items inside it).
    pub fn named(top: &str) -> Self {
        AsyncLifetimes {
            top: Lifetime::new(top, Span::call_site()),
            depth: 0,
            flat: false,
            top_uses: 0,
            fresh: Vec::new(),
        }
    }

    /// A namer for the output once the inputs are named: `top` is `'__dsu` if the inputs used
    /// it, `'static` otherwise (a `fn` pointer type cannot have a lifetime only in its output).
    pub fn output(top: Lifetime) -> Self {
        AsyncLifetimes { top, depth: 0, flat: true, top_uses: 0, fresh: Vec::new() }
    }

    /// The name of the next elided lifetime.
    pub fn name(&mut self) -> Lifetime {
        if self.depth == 0 || self.flat {
            self.top_uses += 1;
            self.top.clone()
        } else {
            let name = format!("{}_{}", self.top, self.fresh.len() + 1);
            let l = Lifetime::new(&name, Span::call_site());
            self.fresh.push(l.clone());
            l
        }
    }
}

impl VisitMut for AsyncLifetimes {
    fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
        if r.lifetime.as_ref().is_none_or(|l| l.ident == "_") {
            r.lifetime = Some(self.name());
        }
        self.depth += 1;
        self.visit_type_mut(&mut r.elem);
        self.depth -= 1;
    }

    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if l.ident == "_" {
            *l = self.name();
        }
    }

    fn visit_type_bare_fn_mut(&mut self, _: &mut syn::TypeBareFn) {
        // Elided lifetimes inside a fn pointer type belong to that type.
    }

    fn visit_parenthesized_generic_arguments_mut(
        &mut self,
        _: &mut syn::ParenthesizedGenericArguments,
    ) {
        // Likewise inside `Fn(&str) -> &str` sugar.
    }
}
