//! `#[dsu::transform(from = dsu_old::Entry)]`: a state transformer, and
//! `#[dsu::transform(to = dsu_old::Entry)]`: its inverse, for rolling a patch back.
//!
//! On a function `fn f(old: &dsu_old::Entry) -> Entry` (or `-> Result<Entry, E>` with
//! `E: Display`), `from` implements `Transform<dsu_old::Entry> for Entry` through `f`, whose
//! values are fresh: safe code cannot take parts of the old value, so the old value is dropped
//! whole when the update commits and the new one when it aborts. On a
//! function `fn g(new: &Entry) -> dsu_old::Entry` (or `-> Result<dsu_old::Entry, E>`), `to`
//! implements `Transform<Entry> for dsu_old::Entry` through `g`: the old value made from the new
//! one, which a rollback of the patch runs. A function goes one way: `from` or `to`, not both.
//!
//! On a struct, `#[dsu::transform(from = dsu_old::Entry, default)]` asks `cargo dsu patch` to
//! derive the transformer (fields kept by name, new ones from `Default`), and
//! `#[dsu::transform(to = dsu_old::Entry, default)]` its inverse (fields kept by name, fields only
//! the old type has from `Default`, fields only the new type has dropped). Both directions may be
//! asked in one attribute, `#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry, default)]`,
//! or in two. On a struct the macro only checks the form; `cargo dsu patch` sees both definitions.
//!
//! `dsu_old` exists only in patches (`cargo dsu patch` writes the old revision's definitions
//! there), so everything but the check that the new type is updateable is compiled only in the
//! patches that need the transformer (see `patch_only_transform`); in the program's own build the
//! function is checked for its form and left out.

use crate::valid::Errors;
use dsu_abi::{PATCH_CFG, TRANSFORMER_CFG};
use dsu_syntax::{tokens_text, Direction, TransformArgs, Transformer};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Item, ReturnType, Type};

pub fn transform(args: TokenStream, input: TokenStream) -> TokenStream {
    let fallback = |e: syn::Error, input: TokenStream| {
        let err = e.to_compile_error();
        quote!(#err #input)
    };
    let args: TransformArgs = match syn::parse2(args) {
        Ok(a) => a,
        Err(e) => return fallback(e, input),
    };
    // The attribute is where the macro is called.
    let at = Span::call_site();
    if let Err(e) = args.names_old_type(at) {
        return fallback(e, input);
    }
    match syn::parse2::<Item>(input.clone()) {
        Ok(Item::Fn(f)) => {
            let expanded = args.one_way(at).and_then(|t| match t.direction {
                Direction::Forward => expand_from(&args, &t, f),
                Direction::Inverse => expand_to(&args, &t, f),
            });
            expanded.unwrap_or_else(|e| fallback(e, input))
        }
        Ok(Item::Struct(s)) => expand_struct(&args, s).unwrap_or_else(|e| fallback(e, input)),
        _ => fallback(
            syn::Error::new(
                at,
                "#[dsu::transform] goes on a function `fn(&OldType) -> NewType` (`from`) or \
                 `fn(&NewType) -> OldType` (`to`), or with `default` on a struct",
            ),
            input,
        ),
    }
}

/// On a struct the transformers are derived by `cargo dsu patch`, which sees both definitions;
/// here only check the form and that the type is updateable.
fn expand_struct(args: &TransformArgs, s: syn::ItemStruct) -> syn::Result<TokenStream> {
    if args.default.is_none() {
        let t = &s.ident;
        let msg = if args.from.is_some() {
            format!(
                "#[dsu::transform] on a struct derives its transformer: write \
                 `#[dsu::transform(from = dsu_old::{t}, default)]`, or put the attribute on a \
                 function `fn(&dsu_old::{t}) -> {t}`"
            )
        } else {
            format!(
                "#[dsu::transform] on a struct derives its inverse transformer: write \
                 `#[dsu::transform(to = dsu_old::{t}, default)]`, or put the attribute on a \
                 function `fn(&{t}) -> dsu_old::{t}`"
            )
        };
        return Err(syn::Error::new_spanned(t, msg));
    }
    // Rule: both ways move the same old type.
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        if from.path != to.path {
            return Err(syn::Error::new_spanned(
                &to.path,
                format!(
                    "`from` and `to` name the same old type, the old revision's `{}`: \
                     `to = {}`",
                    s.ident,
                    tokens_text(&from.path)
                ),
            ));
        }
    }
    let ident = &s.ident;
    let check = updateable_check(&syn::parse_quote!(#ident));
    Ok(quote!(#s #check))
}

/// The new type must be updateable (have a fingerprint): checked in every build.
fn updateable_check(ty: &Type) -> TokenStream {
    quote_spanned! {ty.span()=>
        const _: ::dsu::__private::Fingerprint = <#ty as ::dsu::__private::Fingerprinted>::FINGERPRINT;
    }
}

/// The rules every transformer function follows, either way: a plain, non-generic function
/// that returns something, and no `default`.
fn common_rules(args: &TransformArgs, f: &syn::ItemFn, errors: &mut Errors) {
    if let Err(e) = args.no_default_on_fn() {
        errors.push(e);
    }
    let qualifiers = [f.sig.asyncness.map(|a| a.span()), f.sig.constness.map(|c| c.span())];
    for span in qualifiers.into_iter().flatten() {
        errors.push_span(span, "a transformer is a plain function");
    }
    if !f.sig.generics.params.is_empty() {
        errors.spanned(&f.sig.generics, "a transformer cannot be generic");
    }
}

/// Whether `ty` is the type the path `p` names.
fn names(ty: &Type, p: &syn::Path) -> bool {
    matches!(ty, Type::Path(t) if t.qself.is_none() && t.path == *p)
}

/// The only argument's type when it is a shared reference, `&T` → `T`.
fn only_ref_arg(f: &syn::ItemFn) -> Option<Type> {
    match f.sig.inputs.iter().collect::<Vec<_>>().as_slice() {
        [FnArg::Typed(t)] => match &*t.ty {
            Type::Reference(r) if r.mutability.is_none() => Some((*r.elem).clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The returned type, and whether it is the `T` of a `Result<T, E>`.
fn returned(f: &syn::ItemFn) -> Option<(Type, bool)> {
    match &f.sig.output {
        ReturnType::Type(_, ty) => Some(match result_ok_type(ty) {
            Some(ok) => (ok, true),
            None => ((**ty).clone(), false),
        }),
        ReturnType::Default => None,
    }
}

/// The call of the user's function inside `Transform::transform`, its error made a
/// `TransformError` when it returns a `Result`.
fn call(name: &syn::Ident, arg: TokenStream, fallible: bool) -> TokenStream {
    if fallible {
        quote!(#name(#arg).map_err(|e| ::dsu::__private::TransformError(e.to_string())))
    } else {
        quote!(::core::result::Result::Ok(#name(#arg)))
    }
}

/// `from = Old` on `fn(&Old) -> New`: `impl Transform<Old> for New`.
fn expand_from(args: &TransformArgs, t: &Transformer, f: syn::ItemFn) -> syn::Result<TokenStream> {
    let from = &t.old_type;
    let mut errors = Errors::default();
    common_rules(args, &f, &mut errors);
    // Rule: exactly one argument, `&<from>`: the old value is read, never moved or changed.
    if !only_ref_arg(&f).is_some_and(|ty| names(&ty, from)) {
        errors.spanned(
            &f.sig.inputs,
            format!(
                "a transformer takes exactly one argument, the old value by reference: \
                 `old: &{}`",
                tokens_text(from)
            ),
        );
    }
    // Rule: returns the new type, or `Result<new type, E>` with `E: Display`.
    let (new_ty, fallible) = returned(&f).unwrap_or_else(|| {
        errors.spanned(&f.sig.ident, "a transformer returns the new value: `-> Entry`");
        (syn::parse_quote!(()), false)
    });
    errors.finish()?;

    let call = call(&f.sig.ident, quote!(old), fallible);
    let check = updateable_check(&new_ty);
    Ok(patch_only_transform(&f, t, quote!(#from), quote!(#new_ty), quote!(old), call, check))
}

/// `f` and `impl Transform<source> for target` calling it with the source value as `param`, both
/// compiled only in the patches that need this transformer, then `check` in every build. The
/// value `f` returns is fresh (`Transform::FRESH`): it owns nothing the old value owns, so both
/// are dropped whole when the update settles.
///
/// `cargo dsu patch` sets `dsu_patch`, and `dsu_transform = "<old type>::<function>"`
/// (`Transformer::cfg_value`) for each transformer of a type the patch changes that is new or
/// changed since the revision the patch starts from; `dsu_old` holds the changed types only. A
/// transformer written for an earlier release stays in the source and is never compiled again
/// (the older revision already holds what it made), so one git history serves a stream of
/// releases.
fn patch_only_transform(
    f: &syn::ItemFn,
    t: &Transformer,
    source: TokenStream,
    target: TokenStream,
    param: TokenStream,
    call: TokenStream,
    check: TokenStream,
) -> TokenStream {
    let key = t.cfg_value(&f.sig.ident);
    let (patch, transformer) = (format_ident!("{}", PATCH_CFG), format_ident!("{}", TRANSFORMER_CFG));
    // Set only by `cargo dsu patch`; cargo's cfg check does not know them.
    quote! {
        #[allow(unexpected_cfgs)]
        const _: () = {
            #[cfg(all(#patch, #transformer = #key))]
            #f
            // SAFETY: a safe function builds the value from a shared reference, so it takes no
            // part of the old value: each side is dropped whole (the default releases).
            #[cfg(all(#patch, #transformer = #key))]
            unsafe impl ::dsu::__private::Transform<#source> for #target {
                const FRESH: bool = true;
                unsafe fn transform(#param: &#source) -> ::core::result::Result<Self, ::dsu::__private::TransformError> {
                    #call
                }
            }
        };
        #check
    }
}

/// `to = Old` on `fn(&New) -> Old`: `impl Transform<New> for Old`, the inverse a rollback runs.
fn expand_to(args: &TransformArgs, t: &Transformer, f: syn::ItemFn) -> syn::Result<TokenStream> {
    let to = &t.old_type;
    let mut errors = Errors::default();
    common_rules(args, &f, &mut errors);
    let to_text = tokens_text(to);
    let old_name = t.old_name().map(ToString::to_string).unwrap_or_default();
    // Rule: exactly one argument, the new value by reference: it is read, never moved or changed.
    let new_ty = only_ref_arg(&f).unwrap_or_else(|| {
        errors.spanned(
            &f.sig.inputs,
            format!(
                "an inverse transformer takes exactly one argument, the new value by reference: \
                 `new: &{old_name}`"
            ),
        );
        syn::parse_quote!(())
    });
    // Rule: returns the old type, or `Result<old type, E>` with `E: Display`.
    let wrong_return = format!(
        "an inverse transformer returns the old value: `-> {to_text}` (or \
         `-> Result<{to_text}, E>`)"
    );
    let fallible = match returned(&f) {
        Some((ty, fallible)) => {
            if !names(&ty, to) {
                errors.spanned(&f.sig.output, &wrong_return);
            }
            fallible
        }
        None => {
            errors.spanned(&f.sig.ident, &wrong_return);
            false
        }
    };
    errors.finish()?;

    let call = call(&f.sig.ident, quote!(new), fallible);
    let check = updateable_check(&new_ty);
    Ok(patch_only_transform(&f, t, quote!(#new_ty), quote!(#to), quote!(new), call, check))
}

/// `T` when `ty` is `Result<T, E>`.
fn result_ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(a) = &last.arguments else { return None };
    match a.args.first()? {
        syn::GenericArgument::Type(t) if a.args.len() == 2 => Some(t.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! Expansion snapshots of the `to` forms, with the input in each snapshot's description, and
    //! their refusals.

    use proc_macro2::TokenStream;
    use quote::quote;

    fn pretty(tokens: TokenStream) -> String {
        let file: syn::File = syn::parse2(tokens).expect("the expansion parses as a file");
        prettyplease::unparse(&file)
    }

    fn check(name: &str, args: TokenStream, input: TokenStream) {
        let expanded = pretty(super::transform(args.clone(), input.clone()));
        let description = format!("#[dsu::transform({args})]\n{}", pretty(input));
        insta::with_settings!({ description => description, omit_expression => true }, {
            insta::assert_snapshot!(name, expanded);
        });
    }

    /// The error text of a refused form.
    fn refusal(args: TokenStream, input: TokenStream) -> String {
        let out = super::transform(args, input).to_string();
        let start = out.find("compile_error !").expect("a compile_error!");
        let rest = &out[start..];
        let open = rest.find('"').expect("a message") + 1;
        let close = rest[open..].find('"').expect("the message's end") + open;
        rest[open..close].to_string()
    }

    #[test]
    fn inverse_transformer_fn() {
        check(
            "inverse_transformer_fn",
            quote!(to = dsu_old::Entry),
            quote! {
                fn downgrade(new: &Entry) -> dsu_old::Entry {
                    dsu_old::Entry { name: new.name.clone(), legacy: false }
                }
            },
        );
    }

    #[test]
    fn fallible_inverse_transformer_fn() {
        check(
            "fallible_inverse_transformer_fn",
            quote!(to = dsu_old::Entry),
            quote! {
                fn downgrade(new: &Entry) -> Result<dsu_old::Entry, std::num::TryFromIntError> {
                    Ok(dsu_old::Entry { name: new.name.clone(), hits: u32::try_from(new.hits)? })
                }
            },
        );
    }

    #[test]
    fn derived_both_ways() {
        check(
            "derived_both_ways",
            quote!(from = dsu_old::Entry, to = dsu_old::Entry, default),
            quote! {
                pub struct Entry { pub name: String, pub score: u32 }
            },
        );
    }

    #[test]
    fn derived_inverse() {
        check(
            "derived_inverse",
            quote!(to = dsu_old::Entry, default),
            quote! {
                pub struct Entry { pub name: String, pub score: u32 }
            },
        );
    }

    #[test]
    fn refusals() {
        let to_fn = quote!(fn downgrade(new: &Entry) -> dsu_old::Entry { todo!() });
        let s = quote!(struct Entry { a: u32 });
        for (args, input, expected) in [
            (
                quote!(default),
                s.clone(),
                "#[dsu::transform] needs the old type: `from = dsu_old::Entry` for the transformer \
                 (old value to new), `to = dsu_old::Entry` for its inverse (new value to old), or both",
            ),
            (
                quote!(),
                to_fn.clone(),
                "#[dsu::transform] needs the old type: `#[dsu::transform(from = dsu_old::Entry)]`",
            ),
            (
                quote!(from = dsu_old::Entry, to = dsu_old::Entry),
                to_fn.clone(),
                "a transformer function goes one way: `from = dsu_old::Entry` on \
                 `fn(&dsu_old::Entry) -> Entry`, `to = dsu_old::Entry` on \
                 `fn(&Entry) -> dsu_old::Entry`; write two functions",
            ),
            (
                quote!(to = dsu_old::Entry, to = dsu_old::Entry),
                to_fn.clone(),
                "`to` is given twice in one #[dsu::transform]",
            ),
            (
                quote!(to = dsu_old::Entry, default),
                to_fn.clone(),
                "`default` is for a struct; a function is its own transformer",
            ),
            (
                quote!(to = dsu_old::Entry),
                quote!(fn downgrade(new: &Entry) -> Entry { todo!() }),
                "an inverse transformer returns the old value: `-> dsu_old::Entry` (or \
                 `-> Result<dsu_old::Entry, E>`)",
            ),
            (
                quote!(to = dsu_old::Entry),
                quote!(fn downgrade(new: &Entry) { todo!() }),
                "an inverse transformer returns the old value: `-> dsu_old::Entry` (or \
                 `-> Result<dsu_old::Entry, E>`)",
            ),
            (
                quote!(to = dsu_old::Entry),
                quote!(fn downgrade(new: Entry) -> dsu_old::Entry { todo!() }),
                "an inverse transformer takes exactly one argument, the new value by reference: \
                 `new: &Entry`",
            ),
            (
                quote!(to = dsu_old::Entry),
                quote!(fn downgrade(new: &mut Entry) -> dsu_old::Entry { todo!() }),
                "an inverse transformer takes exactly one argument, the new value by reference: \
                 `new: &Entry`",
            ),
            (
                quote!(to = dsu_old::Entry),
                s.clone(),
                "#[dsu::transform] on a struct derives its inverse transformer: write \
                 `#[dsu::transform(to = dsu_old::Entry, default)]`, or put the attribute on a \
                 function `fn(&Entry) -> dsu_old::Entry`",
            ),
            (
                quote!(from = dsu_old::Entry, to = dsu_old::Other, default),
                s.clone(),
                "`from` and `to` name the same old type, the old revision's `Entry`: \
                 `to = dsu_old::Entry`",
            ),
            (
                quote!(to = dsu_old::Entry),
                quote!(enum Entry { A }),
                "#[dsu::transform] goes on a function `fn(&OldType) -> NewType` (`from`) or \
                 `fn(&NewType) -> OldType` (`to`), or with `default` on a struct",
            ),
        ] {
            assert_eq!(refusal(args.clone(), input.clone()), expected, "{args} on {input}");
        }
    }
}
