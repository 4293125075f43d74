//! Validation: one rule per function, each saying why the form is refused and what to do.
//! All errors are collected and combined, so the user sees every problem at once.

use crate::ast::{is_dsu_updateable, UpdateableFn};
use dsu_syntax::{can_be_updateable, FnOwner, Reason, UpdateableArgs};
use syn::visit::Visit;
use syn::{ItemImpl, Type};

/// Collects errors; `finish` combines them into one.
#[derive(Default)]
pub struct Errors(Vec<syn::Error>);

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        self.0.push(e);
    }

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

/// Runs every rule of a function that is asked to be updateable: a refusal is an error.
pub fn check_fn(f: &UpdateableFn<'_>, errors: &mut Errors) {
    if let Err(reason) = can_be_updateable(f.sig, f.owner.place()) {
        refusal_errors(&reason, errors);
    }
    method_needs_annotated_impl(f, errors);
}

fn refusal_errors(reason: &Reason, errors: &mut Errors) {
    for part in &reason.parts {
        errors.spanned(&part.at, part.why.message());
    }
}

/// A method of an updateable impl that the rule refuses, left as it is.
pub struct PlainMethod<'a> {
    pub f: UpdateableFn<'a>,
    pub reason: Reason,
}

/// The methods of an updateable impl block that can be updateable, and those that stay plain
/// methods: the block as a whole stays updateable, and the build warns about each plain one
/// (see `expand::plain_method_warning`). A method marked `#[dsu::updateable]` itself asked for
/// it explicitly: a refusal there is an error, as on a free function.
pub fn split_methods<'a>(
    methods: Vec<UpdateableFn<'a>>,
    errors: &mut Errors,
) -> (Vec<UpdateableFn<'a>>, Vec<PlainMethod<'a>>) {
    let mut updateable = Vec::new();
    let mut plain = Vec::new();
    for f in methods {
        match can_be_updateable(f.sig, f.owner.place()) {
            Ok(()) => updateable.push(f),
            Err(reason) if f.attrs.iter().any(is_dsu_updateable) => refusal_errors(&reason, errors),
            Err(reason) => plain.push(PlainMethod { f, reason }),
        }
    }
    (updateable, plain)
}

/// A method's original body must stay in an `impl` of its type; only the impl-level attribute
/// knows that type.
fn method_needs_annotated_impl(f: &UpdateableFn<'_>, errors: &mut Errors) {
    if !matches!(f.owner, FnOwner::Free) {
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

/// The arguments of `#[updateable]` (see [`UpdateableArgs`]); on an error, none.
pub fn updateable_args(args: proc_macro2::TokenStream, errors: &mut Errors) -> UpdateableArgs {
    syn::parse2(args).unwrap_or_else(|e| {
        errors.push(e);
        UpdateableArgs::default()
    })
}

/// `?Send` on an item without an `async fn` is a mistake: say so.
pub fn not_send_used(args: &UpdateableArgs, fns: &[UpdateableFn<'_>], errors: &mut Errors) {
    if let Some(tokens) = &args.not_send {
        if !fns.iter().any(UpdateableFn::is_async) {
            errors.spanned(
                tokens,
                "#[dsu::updateable(?Send)] applies to `async fn`s only, and this item has \
                 none: remove `?Send`",
            );
        }
    }
}
