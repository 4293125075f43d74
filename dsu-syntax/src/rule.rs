//! Which functions can be updateable: one rule, over a function's signature alone.
//!
//! The macros apply it to a free function (a refusal is a compile error) and to every method of
//! an updateable `impl` block (a refused method stays a plain method, and the build warns);
//! `cargo dsu patch` applies it to refuse a change to such a method, which no patch can replace.
//! Both read it here, so a method the build left without a slot is never taken for one.

use crate::path::tokens_text;
use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use std::fmt;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{FnArg, GenericParam, Lifetime, ReturnType, Signature};

/// Where a function is declared, as far as the rule cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A free function.
    Free,
    /// A method of an inherent `impl`.
    Inherent,
    /// A method of a trait `impl`: its signature is the trait's.
    TraitImpl,
}

/// Why a function cannot be updateable: every part of its signature that breaks the rule, in
/// source order (never empty).
#[derive(Clone, Debug)]
pub struct Reason {
    pub parts: Vec<Refused>,
}

/// One part of a signature that breaks the rule.
#[derive(Clone, Debug)]
pub struct Refused {
    pub why: Why,
    /// The offending tokens, for an error's span.
    pub at: TokenStream,
}

/// The rule a part of a signature breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// A type or const parameter.
    Generic,
    WhereClause,
    /// A bounded lifetime parameter (`'a: 'b`) of a synchronous function.
    LifetimeBound,
    Const,
    /// A lifetime parameter of an `async fn`.
    AsyncLifetimeParameter,
    /// An `async fn` of a trait impl that returns a borrow and takes more than one reference.
    AsyncTraitMethodReturningBorrow,
    ExternAbi,
    Variadic,
    ImplTraitArgument,
    ImplTraitReturn,
}

impl Why {
    /// What is refused, why, and what to do instead.
    pub fn message(self) -> &'static str {
        match self {
            Why::Generic => {
                "#[dsu::updateable] cannot make a generic function updateable: a slot holds one \
                 code pointer. Make a non-generic wrapper for each type you need and mark it \
                 instead"
            }
            Why::WhereClause => {
                "#[dsu::updateable] functions cannot have a where clause: remove the bounds"
            }
            Why::LifetimeBound => {
                "#[dsu::updateable] functions cannot have lifetime bounds: remove the bound"
            }
            Why::Const => {
                "#[dsu::updateable] cannot make a `const fn` updateable: constant evaluation \
                 happens at compile time. Remove `const`, or leave this function out"
            }
            Why::AsyncLifetimeParameter => {
                "#[dsu::updateable] `async fn` cannot declare lifetime parameters: its future is \
                 stored with one lifetime, that of the borrows it holds. Write the references with \
                 elided lifetimes (`&str`, `Formatter<'_>`) or return an owned value"
            }
            Why::AsyncTraitMethodReturningBorrow => {
                "#[dsu::updateable] cannot make an `async fn` of a trait impl updateable when it \
                 returns a borrow and takes more than one reference: its stored future can only \
                 borrow for as long as every argument, shorter than the trait's signature \
                 promises. Return an owned value"
            }
            Why::ExternAbi => {
                "#[dsu::updateable] cannot make an `extern` function updateable: foreign callers \
                 bind to its symbol. Keep the extern function as a thin wrapper around an \
                 updateable Rust one"
            }
            Why::Variadic => "#[dsu::updateable] functions cannot be variadic",
            Why::ImplTraitArgument => {
                "#[dsu::updateable] functions cannot use `impl Trait` in argument position: use a \
                 concrete type or `Box<dyn Trait>`"
            }
            Why::ImplTraitReturn => {
                "#[dsu::updateable] functions cannot use `impl Trait` in return position: use a \
                 concrete type or `Box<dyn Trait>`"
            }
        }
    }
}

impl Reason {
    /// Every part's message, in order, joined by "; ": for a reader shown the function (the
    /// build's warning at a method's name).
    pub fn message(&self) -> String {
        self.parts.iter().map(|p| p.why.message()).collect::<Vec<_>>().join("; ")
    }
}

impl Refused {
    /// The offending tokens' text ([`tokens_text`]): `T : Clone`, `impl Write`, `const`.
    pub fn part(&self) -> String {
        tokens_text(&self.at)
    }
}

/// Every part's message with the tokens it is about, `` <message> (`T : Clone`) ``, joined by
/// "; ": for a reader no span points for (`cargo dsu patch`'s refusals, which name a file and
/// line).
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{} (`{}`)", p.why.message(), p.part())?;
        }
        Ok(())
    }
}

/// Whether a function with signature `sig`, declared at `place`, can be updateable.
///
/// The rule: a slot holds one code pointer, of one `fn` pointer type, called at run time, and a
/// patch replaces it with code of that same type. So the function must be one instance whose
/// type a `fn` pointer can spell:
/// - no type or const parameters, no where clause, and no `impl Trait` (in argument position a
///   hidden type parameter, in return position a hidden type a patch could change);
/// - no bounded lifetime parameters (`'a: 'b`): they are early-bound, and the function no longer
///   coerces to a `for<'a> fn(..)` pointer;
/// - not `const` (constant evaluation happens at compile time, inside its callers), no `extern`
///   ABI (foreign callers bind to its symbol), not variadic;
/// - an `async fn` is stored as a function returning its boxed future, bounded by one lifetime:
///   it declares no lifetime parameters, and in a trait impl it does not return a borrow while
///   taking more than one reference (the trait promises a longer borrow than that future gives).
///
/// Anything else is fine: receivers, `unsafe`, references, elided lifetimes, unbounded lifetime
/// parameters of a synchronous function. The rule reads the signature only, never the body.
pub fn can_be_updateable(sig: &Signature, place: Place) -> Result<(), Reason> {
    let mut parts = Vec::new();
    no_type_or_const_generics(sig, &mut parts);
    no_where_clause(sig, &mut parts);
    no_bounded_lifetimes(sig, &mut parts);
    not_const(sig, &mut parts);
    async_rules(sig, place, &mut parts);
    no_foreign_abi(sig, &mut parts);
    not_variadic(sig, &mut parts);
    no_impl_trait(sig, &mut parts);
    if parts.is_empty() { Ok(()) } else { Err(Reason { parts }) }
}

fn refuse(parts: &mut Vec<Refused>, why: Why, at: impl ToTokens) {
    parts.push(Refused { why, at: at.to_token_stream() });
}

/// A generic function has one instance per type argument, made in the caller's crate, out of
/// the patch's reach.
fn no_type_or_const_generics(sig: &Signature, parts: &mut Vec<Refused>) {
    for p in &sig.generics.params {
        if let GenericParam::Type(_) | GenericParam::Const(_) = p {
            refuse(parts, Why::Generic, p);
        }
    }
}

/// Where clauses only make sense with generic parameters or early-bound lifetimes.
fn no_where_clause(sig: &Signature, parts: &mut Vec<Refused>) {
    if let Some(w) = &sig.generics.where_clause {
        refuse(parts, Why::WhereClause, w);
    }
}

/// A bounded lifetime (`'a: 'b`) is early-bound: the function can no longer be stored as a
/// `for<'a> fn(..)` pointer.
fn no_bounded_lifetimes(sig: &Signature, parts: &mut Vec<Refused>) {
    if sig.asyncness.is_some() {
        return; // every lifetime parameter is refused by `async_rules`
    }
    for l in sig.generics.lifetimes() {
        if !l.bounds.is_empty() {
            refuse(parts, Why::LifetimeBound, l);
        }
    }
}

/// A `const fn` can be evaluated at compile time into its callers; no slot can replace that.
fn not_const(sig: &Signature, parts: &mut Vec<Refused>) {
    if let Some(c) = &sig.constness {
        refuse(parts, Why::Const, c);
    }
}

/// An `async fn` is stored as a function returning its boxed, erased future, with every elided
/// lifetime named (see [`AsyncLifetimes`]); what that type cannot express is refused here.
fn async_rules(sig: &Signature, place: Place, parts: &mut Vec<Refused>) {
    if sig.asyncness.is_none() {
        return;
    }
    // A named lifetime may relate arguments and output in ways the erased type, bounded by one
    // lifetime, cannot keep.
    for l in sig.generics.lifetimes() {
        refuse(parts, Why::AsyncLifetimeParameter, l);
    }
    // A trait method keeps the trait's signature, in which an elided output lifetime is the
    // receiver's; the stored future's output can only borrow for as long as every argument.
    if place == Place::TraitImpl {
        let mut inputs = AsyncLifetimes::new();
        for input in &sig.inputs {
            let ty = match input {
                FnArg::Receiver(r) => &r.ty,
                FnArg::Typed(t) => &t.ty,
            };
            inputs.visit_type_mut(&mut ty.as_ref().clone());
        }
        let top = Lifetime::new(AsyncLifetimes::TOP, Span::call_site());
        let mut output = AsyncLifetimes::output(top);
        if let ReturnType::Type(_, ty) = &sig.output {
            output.visit_type_mut(&mut ty.as_ref().clone());
        }
        if inputs.top_uses > 1 && output.top_uses > 0 {
            refuse(parts, Why::AsyncTraitMethodReturningBorrow, &sig.output);
        }
    }
}

/// `extern "C"` functions are called by foreign code through their symbol, not through a slot.
fn no_foreign_abi(sig: &Signature, parts: &mut Vec<Refused>) {
    if let Some(abi) = &sig.abi {
        refuse(parts, Why::ExternAbi, abi);
    }
}

/// A variadic function has no `fn` pointer type a slot could hold.
fn not_variadic(sig: &Signature, parts: &mut Vec<Refused>) {
    if let Some(v) = &sig.variadic {
        refuse(parts, Why::Variadic, v);
    }
}

/// `impl Trait` is a hidden generic parameter (argument position) or a hidden concrete type that
/// a patch could change (return position).
fn no_impl_trait(sig: &Signature, parts: &mut Vec<Refused>) {
    struct Finder<'p> {
        parts: &'p mut Vec<Refused>,
        why: Why,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            refuse(self.parts, self.why, t);
        }
    }
    for input in &sig.inputs {
        if let FnArg::Typed(t) = input {
            Finder { parts, why: Why::ImplTraitArgument }.visit_type(&t.ty);
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        Finder { parts, why: Why::ImplTraitReturn }.visit_type(ty);
    }
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

impl Default for AsyncLifetimes {
    fn default() -> Self {
        Self::new()
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
