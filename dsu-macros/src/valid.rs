//! Validation: one rule per function, each saying why the form is refused and what to do.
//! All errors are collected and combined, so the user sees every problem at once.

use crate::ast::{AsyncLifetimes, Owner, UpdateableFn};
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{GenericParam, ItemImpl, ReturnType, Type};

/// Collects errors; `finish` combines them into one.
#[derive(Default)]
pub struct Errors(Vec<syn::Error>);

impl Errors {
    pub fn push_span(&mut self, span: proc_macro2::Span, msg: impl std::fmt::Display) {
        self.0.push(syn::Error::new(span, msg));
    }

    pub fn spanned(&mut self, tokens: impl quote::ToTokens, msg: impl std::fmt::Display) {
        self.0.push(syn::Error::new_spanned(tokens, msg));
    }

    pub fn finish(self) -> syn::Result<()> {
        let mut iter = self.0.into_iter();
        match iter.next() {
            None => Ok(()),
            Some(mut first) => {
                for e in iter {
                    first.combine(e);
                }
                Err(first)
            }
        }
    }
}

/// Runs every function rule.
pub fn check_fn(f: &UpdateableFn<'_>, errors: &mut Errors) {
    no_type_or_const_generics(f, errors);
    no_where_clause(f, errors);
    no_bounded_lifetimes(f, errors);
    not_const(f, errors);
    async_rules(f, errors);
    no_foreign_abi(f, errors);
    not_variadic(f, errors);
    no_impl_trait(f, errors);
    method_needs_annotated_impl(f, errors);
}

/// A slot holds one code pointer; a generic function has one instance per type argument, and
/// instances are made in the caller's crate, out of the patch's reach.
fn no_type_or_const_generics(f: &UpdateableFn<'_>, errors: &mut Errors) {
    for p in &f.sig.generics.params {
        match p {
            GenericParam::Type(_) | GenericParam::Const(_) => errors.spanned(
                p,
                "#[dsu::updateable] cannot make a generic function updateable: a slot holds one \
                 code pointer. Make a non-generic wrapper for each type you need and mark it instead",
            ),
            GenericParam::Lifetime(_) => {}
        }
    }
}

/// Where clauses only make sense with generic parameters or early-bound lifetimes.
fn no_where_clause(f: &UpdateableFn<'_>, errors: &mut Errors) {
    if let Some(w) = &f.sig.generics.where_clause {
        errors.spanned(
            w,
            "#[dsu::updateable] functions cannot have a where clause: remove the bounds",
        );
    }
}

/// A bounded lifetime (`'a: 'b`) is early-bound and the function can no longer be stored as a
/// `for<'a> fn(..)` pointer.
fn no_bounded_lifetimes(f: &UpdateableFn<'_>, errors: &mut Errors) {
    if f.is_async() {
        return; // every lifetime parameter is refused by `async_rules`
    }
    for p in &f.sig.generics.params {
        if let GenericParam::Lifetime(l) = p {
            if !l.bounds.is_empty() {
                errors.spanned(
                    l,
                    "#[dsu::updateable] functions cannot have lifetime bounds: remove the bound",
                );
            }
        }
    }
}

/// A `const fn` can be evaluated at compile time into its callers; no slot can replace that.
fn not_const(f: &UpdateableFn<'_>, errors: &mut Errors) {
    if let Some(c) = &f.sig.constness {
        errors.spanned(
            c,
            "#[dsu::updateable] cannot make a `const fn` updateable: constant evaluation happens at \
             compile time. Remove `const`, or leave this function out",
        );
    }
}

/// An `async fn` is stored as a function returning its boxed, erased future, with every elided
/// lifetime named (see [`AsyncLifetimes`]); what that type cannot express is refused here.
fn async_rules(f: &UpdateableFn<'_>, errors: &mut Errors) {
    if !f.is_async() {
        return;
    }
    // A named lifetime may relate arguments and output in ways the erased type, bounded by one
    // lifetime, cannot keep.
    for l in f.sig.generics.lifetimes() {
        errors.spanned(
            l,
            "#[dsu::updateable] `async fn` cannot declare lifetime parameters: its future is \
             stored with one lifetime, that of the borrows it holds. Write the references with \
             elided lifetimes (`&str`, `Formatter<'_>`) or return an owned value",
        );
    }
    // A trait method keeps the trait's signature, in which an elided output lifetime is the
    // receiver's; the stored future's output can only borrow for as long as every argument.
    if let Owner::Trait { .. } = f.owner {
        let mut inputs = AsyncLifetimes::new();
        if let Some(r) = f.receiver {
            inputs.visit_type_mut(&mut r.ty.as_ref().clone());
        }
        for (_, ty) in &f.args {
            inputs.visit_type_mut(&mut (*ty).clone());
        }
        let top = syn::Lifetime::new(AsyncLifetimes::TOP, proc_macro2::Span::call_site());
        let mut output = AsyncLifetimes::output(top);
        if let ReturnType::Type(_, ty) = &f.sig.output {
            output.visit_type_mut(&mut ty.as_ref().clone());
        }
        if inputs.top_uses > 1 && output.top_uses > 0 {
            errors.spanned(
                &f.sig.output,
                "#[dsu::updateable] cannot make an `async fn` of a trait impl updateable when it \
                 returns a borrow and takes more than one reference: its stored future can only \
                 borrow for as long as every argument, shorter than the trait's signature \
                 promises. Return an owned value",
            );
        }
    }
}

/// `extern "C"` functions are called by foreign code through their symbol, not through a slot.
fn no_foreign_abi(f: &UpdateableFn<'_>, errors: &mut Errors) {
    if let Some(abi) = &f.sig.abi {
        errors.spanned(
            abi,
            "#[dsu::updateable] cannot make an `extern` function updateable: foreign callers bind \
             to its symbol. Keep the extern function as a thin wrapper around an updateable Rust one",
        );
    }
}

fn not_variadic(f: &UpdateableFn<'_>, errors: &mut Errors) {
    if let Some(v) = &f.sig.variadic {
        errors.spanned(v, "#[dsu::updateable] functions cannot be variadic");
    }
}

/// `impl Trait` is a hidden generic parameter (argument position) or a hidden concrete type that
/// a patch could change (return position).
fn no_impl_trait(f: &UpdateableFn<'_>, errors: &mut Errors) {
    struct Finder<'e> {
        errors: &'e mut Errors,
        what: &'static str,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            let msg = format!(
                "#[dsu::updateable] functions cannot use `impl Trait` {}: use a concrete type or \
                 `Box<dyn Trait>`",
                self.what
            );
            self.errors.spanned(t, msg);
        }
    }
    for (_, ty) in &f.args {
        Finder { errors, what: "in argument position" }.visit_type(ty);
    }
    if let ReturnType::Type(_, ty) = &f.sig.output {
        Finder { errors, what: "in return position" }.visit_type(ty);
    }
}

/// A method's original body must stay in an `impl` of its type; only the impl-level attribute
/// knows that type.
fn method_needs_annotated_impl(f: &UpdateableFn<'_>, errors: &mut Errors) {
    if !matches!(f.owner, Owner::Free) {
        return;
    }
    let mentions_self = f.receiver.is_some() || {
        struct SelfFinder(bool);
        impl<'ast> Visit<'ast> for SelfFinder {
            fn visit_ident(&mut self, i: &'ast syn::Ident) {
                self.0 |= i == "Self";
            }
        }
        let mut s = SelfFinder(false);
        s.visit_signature(f.sig);
        s.0
    };
    if mentions_self {
        errors.spanned(
            &f.sig.ident,
            "#[dsu::updateable] on a method goes on its impl block: write \
             `#[dsu::updateable] impl Type { .. }` to make every method of the block updateable",
        );
    }
}

/// Runs every impl-block rule.
pub fn check_impl(item: &ItemImpl, errors: &mut Errors) {
    if !item.generics.params.is_empty() {
        errors.spanned(
            &item.generics,
            "#[dsu::updateable] cannot be put on a generic impl block: each instance would need \
             its own slots. Write the impl for a concrete type",
        );
    }
    if let Some(u) = &item.unsafety {
        errors.spanned(
            u,
            "#[dsu::updateable] cannot be put on an `unsafe impl`: its methods' safety contract \
             is the trait's, which a patch cannot be checked against. Keep the unsafe impl thin \
             and call updateable functions from it",
        );
    }
    if let Some(d) = &item.defaultness {
        errors.spanned(
            d,
            "#[dsu::updateable] cannot be put on a `default impl`: a specialisable method has no \
             single implementation for a slot to hold",
        );
    }
    no_inherent_impl_possible(&item.self_ty, errors);
    if let Type::ImplTrait(_) = &*item.self_ty {
        errors.spanned(&item.self_ty, "#[dsu::updateable] needs a concrete self type");
    }
}

/// The original bodies move into a hidden inherent `impl` of the self type, which Rust allows
/// only for nominal types of this crate: not for references, pointers, tuples, arrays, slices,
/// trait objects or primitives. (A type of another crate gets rustc's own error, E0116.)
fn no_inherent_impl_possible(self_ty: &Type, errors: &mut Errors) {
    const PRIMITIVES: &[&str] = &[
        "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32",
        "i64", "i128", "isize", "f32", "f64",
    ];
    let refused = match self_ty {
        Type::Path(p) => p.qself.is_none() && PRIMITIVES.iter().any(|t| p.path.is_ident(t)),
        Type::Reference(_) | Type::Ptr(_) | Type::Tuple(_) | Type::Array(_) | Type::Slice(_)
        | Type::TraitObject(_) | Type::BareFn(_) | Type::Never(_) => true,
        _ => false,
    };
    if refused {
        errors.spanned(
            self_ty,
            "#[dsu::updateable] needs an impl for a struct or enum of this crate: the original \
             bodies are kept in a hidden inherent impl, which Rust does not allow for this type. \
             Implement the trait for a wrapper type of your own",
        );
    }
}

/// A generic type has one layout per instance; fingerprints are per type.
pub fn check_type_generics(generics: &syn::Generics, errors: &mut Errors) {
    if !generics.params.is_empty() {
        errors.spanned(
            generics,
            "#[dsu::updateable] cannot be put on a generic type yet: fingerprints are computed per \
             concrete type. Use a concrete type",
        );
    }
}

/// `#[update_point]` takes no arguments.
pub fn no_args(args: &proc_macro2::TokenStream, macro_name: &str, errors: &mut Errors) {
    if !args.is_empty() {
        errors.spanned(args, format!("#[dsu::{macro_name}] takes no arguments"));
    }
}

/// The arguments of `#[updateable]`: none, or `?Send`, which drops the `Send` bound of the
/// erased futures of the item's `async fn`s.
pub struct UpdateableArgs {
    /// The `?Send` tokens, if given.
    pub not_send: Option<proc_macro2::TokenStream>,
}

impl UpdateableArgs {
    pub fn parse(args: &proc_macro2::TokenStream, errors: &mut Errors) -> Self {
        let text = args.to_string().replace(' ', "");
        if args.is_empty() {
            UpdateableArgs { not_send: None }
        } else if text == "?Send" {
            UpdateableArgs { not_send: Some(args.clone()) }
        } else {
            errors.spanned(
                args,
                "#[dsu::updateable] takes no arguments, except `?Send` on an `async fn` (or an \
                 impl block with one) whose future is not `Send`",
            );
            UpdateableArgs { not_send: None }
        }
    }

    /// `?Send` on an item without an `async fn` is a mistake: say so.
    pub fn check_used(&self, fns: &[UpdateableFn<'_>], errors: &mut Errors) {
        if let Some(tokens) = &self.not_send {
            if !fns.iter().any(UpdateableFn::is_async) {
                errors.spanned(
                    tokens,
                    "#[dsu::updateable(?Send)] applies to `async fn`s only, and this item has \
                     none: remove `?Send`",
                );
            }
        }
    }
}
