//! Which methods of an `#[dsu::updateable] impl` get a slot.
//!
//! A slot holds one code pointer, replaced at run time. A method has one only when its code is
//! one function compiled once, in its own crate: inside an updateable `impl`, a method that
//! cannot have one stays a plain method (the macros leave it as written), and a patch cannot
//! change it.

use std::fmt;
use syn::visit::Visit;
use syn::{FnArg, GenericParam, Signature};

/// Why a method stays a plain method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotUpdateable {
    /// `fn f<T>`: one instance per type argument, made in each caller's crate.
    TypeParameter(String),
    /// `fn f<const N: usize>`: one instance per value, made in each caller's crate.
    ConstParameter(String),
    /// `fn f(x: impl Trait)`: a hidden type parameter.
    ImplTraitArgument,
    /// `const fn`: callers may evaluate it at compile time, into their own code.
    ConstFn,
}

impl fmt::Display for NotUpdateable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotUpdateable::TypeParameter(p) => write!(
                f,
                "it has the type parameter `{p}`, so each caller's crate compiles its own \
                 instance and no slot can hold them all"
            ),
            NotUpdateable::ConstParameter(p) => write!(
                f,
                "it has the const parameter `{p}`, so each caller's crate compiles its own \
                 instance and no slot can hold them all"
            ),
            NotUpdateable::ImplTraitArgument => f.write_str(
                "it takes an `impl Trait` argument, a hidden type parameter, so each caller's \
                 crate compiles its own instance and no slot can hold them all",
            ),
            NotUpdateable::ConstFn => f.write_str(
                "it is a `const fn`, which callers may evaluate at compile time into their own code",
            ),
        }
    }
}

/// Whether a method of an `#[dsu::updateable] impl` with signature `sig` gets a slot: it does
/// unless it has type or const generic parameters, an `impl Trait` argument, or is `const fn`.
/// Lifetime parameters are fine (a `for<'a> fn(..)` pointer holds them).
pub fn updateable_method(sig: &Signature) -> Result<(), NotUpdateable> {
    if sig.constness.is_some() {
        return Err(NotUpdateable::ConstFn);
    }
    for p in &sig.generics.params {
        match p {
            GenericParam::Type(t) => return Err(NotUpdateable::TypeParameter(t.ident.to_string())),
            GenericParam::Const(c) => return Err(NotUpdateable::ConstParameter(c.ident.to_string())),
            GenericParam::Lifetime(_) => {}
        }
    }
    struct ImplTrait(bool);
    impl<'ast> Visit<'ast> for ImplTrait {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut found = ImplTrait(false);
    for input in &sig.inputs {
        if let FnArg::Typed(t) = input {
            found.visit_type(&t.ty);
        }
    }
    if found.0 {
        return Err(NotUpdateable::ImplTraitArgument);
    }
    Ok(())
}
