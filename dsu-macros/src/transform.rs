//! `#[dsu::transform(from = dsu_old::Entry)]`: a state transformer.
//!
//! On a function `fn f(old: &dsu_old::Entry) -> Entry` (or `-> Result<Entry, E>` with
//! `E: Display`), it implements `Transform<dsu_old::Entry> for Entry` through `f`. On a struct,
//! `#[dsu::transform(from = dsu_old::Entry, default)]` asks `cargo dsu patch` to derive the
//! transformer (fields kept by name, new ones from `Default`); the macro only checks the form.
//!
//! `dsu_old` exists only in patches (`cargo dsu patch` writes the old revision's definitions
//! there), so everything but the check that the new type is updateable is `#[cfg(dsu_patch)]`.

use crate::valid::Errors;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{FnArg, Item, ReturnType, Type};

mod kw {
    syn::custom_keyword!(from);
    syn::custom_keyword!(default);
}

/// `from = <path>` and an optional `default`.
pub struct Args {
    pub from: Option<syn::Path>,
    pub default: Option<kw::default>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Args { from: None, default: None };
        while !input.is_empty() {
            let look = input.lookahead1();
            if look.peek(kw::from) {
                input.parse::<kw::from>()?;
                input.parse::<syn::Token![=]>()?;
                args.from = Some(input.parse()?);
            } else if look.peek(kw::default) {
                args.default = Some(input.parse()?);
            } else {
                return Err(look.error());
            }
            if !input.is_empty() {
                input.parse::<syn::Token![,]>()?;
            }
        }
        Ok(args)
    }
}

pub fn transform(args: TokenStream, input: TokenStream) -> TokenStream {
    let fallback = |e: syn::Error, input: TokenStream| {
        let err = e.to_compile_error();
        quote!(#err #input)
    };
    let args: Args = match syn::parse2(args) {
        Ok(a) => a,
        Err(e) => return fallback(e, input),
    };
    let Some(from) = args.from.clone() else {
        let e = syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[dsu::transform] needs the old type: `#[dsu::transform(from = dsu_old::Entry)]`",
        );
        return fallback(e, input);
    };
    match syn::parse2::<Item>(input.clone()) {
        Ok(Item::Fn(f)) => expand_fn(&args, &from, f).unwrap_or_else(|e| fallback(e, input)),
        Ok(Item::Struct(s)) => {
            if args.default.is_none() {
                let e = syn::Error::new_spanned(
                    &s.ident,
                    "#[dsu::transform] on a struct derives its transformer: write \
                     `#[dsu::transform(from = dsu_old::Entry, default)]`, or put the attribute on a \
                     function `fn(&dsu_old::Entry) -> Entry`",
                );
                return fallback(e, input);
            }
            // The transformer is derived by `cargo dsu patch`, which sees both definitions; here
            // only check that the type is updateable.
            let ident = &s.ident;
            let check = updateable_check(&syn::parse_quote!(#ident));
            quote!(#s #check)
        }
        _ => fallback(
            syn::Error::new(
                proc_macro2::Span::call_site(),
                "#[dsu::transform] goes on a function `fn(&OldType) -> NewType`, or with `default` \
                 on a struct",
            ),
            input,
        ),
    }
}

/// The new type must be updateable (have a fingerprint): checked in every build.
fn updateable_check(ty: &Type) -> TokenStream {
    quote_spanned! {ty.span()=>
        const _: ::dsu::__private::Fingerprint = <#ty as ::dsu::__private::Fingerprinted>::FINGERPRINT;
    }
}

fn expand_fn(args: &Args, from: &syn::Path, f: syn::ItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    if let Some(d) = &args.default {
        errors.spanned(d, "`default` is for a struct; a function is its own transformer");
    }
    // Rule: exactly one argument, `&<from>`: the old value is read, never moved or changed.
    let param_ok = match f.sig.inputs.iter().collect::<Vec<_>>().as_slice() {
        [FnArg::Typed(t)] => match &*t.ty {
            Type::Reference(r) if r.mutability.is_none() => {
                r.elem.to_token_stream().to_string() == from.to_token_stream().to_string()
            }
            _ => false,
        },
        _ => false,
    };
    if !param_ok {
        let from_text = from.to_token_stream().to_string().replace(' ', "");
        errors.spanned(
            &f.sig.inputs,
            format!(
                "a transformer takes exactly one argument, the old value by reference: \
                 `old: &{from_text}`"
            ),
        );
    }
    // Rule: returns the new type, or `Result<new type, E>` with `E: Display`.
    let (new_ty, fallible) = match &f.sig.output {
        ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => (ok, true),
            None => ((**ty).clone(), false),
        },
        ReturnType::Default => {
            errors.spanned(&f.sig.ident, "a transformer returns the new value: `-> Entry`");
            (syn::parse_quote!(()), false)
        }
    };
    for rule in [&f.sig.asyncness.map(|a| a.span()), &f.sig.constness.map(|c| c.span())] {
        if let Some(span) = rule {
            errors.push_span(*span, "a transformer is a plain function");
        }
    }
    if !f.sig.generics.params.is_empty() {
        errors.spanned(&f.sig.generics, "a transformer cannot be generic");
    }
    errors.finish()?;

    let name = &f.sig.ident;
    let call = if fallible {
        quote!(#name(old).map_err(|e| ::dsu::__private::TransformError(e.to_string())))
    } else {
        quote!(::core::result::Result::Ok(#name(old)))
    };
    let check = updateable_check(&new_ty);
    // `dsu_patch` is set only by `cargo dsu patch`; cargo's cfg check does not know it.
    Ok(quote! {
        #[allow(unexpected_cfgs)]
        const _: () = {
            #[cfg(dsu_patch)]
            #f
            #[cfg(dsu_patch)]
            impl ::dsu::__private::Transform<#from> for #new_ty {
                fn transform(old: &#from) -> ::core::result::Result<Self, ::dsu::__private::TransformError> {
                    #call
                }
            }
        };
        #check
    })
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
