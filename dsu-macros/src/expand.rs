//! Expansion: a function becomes a dispatcher that loads its slot and jumps, plus the original
//! body under a hidden name, plus the table entry ([`dsu_abi::FnInfo`] and [`dsu_abi::FnLink`])
//! through which the runtime finds the slot.
//!
//! Every hidden item of a function lives inside the dispatcher's body, so two updateable
//! functions never collide and nothing leaks into the user's namespace. Only a method's original
//! body must live outside, in a hidden inherent `impl` of the same type, because it uses `self`
//! and `Self`.

use crate::ast::{is_body_attr, is_dsu_updateable, Input, UpdateableFn};
use crate::valid::{self, Errors, PlainMethod};
use dsu_syntax::{tokens_text, AsyncLifetimes, FnOwner};
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    FnArg, Ident, ImplItem, ImplItemFn, Item, ItemImpl, Lifetime, Pat, PatIdent, ReturnType,
    Signature, Type,
};

/// Entry point of `#[updateable]`.
pub fn updateable(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let opts = valid::updateable_args(args, &mut errors);
    let send = opts.not_send.is_none();
    let parsed = match Input::parse(input.clone()) {
        Ok(p) => p,
        Err(e) => return fallback(e, input),
    };
    let result = match &parsed {
        Input::Fn(f) => {
            let mut u = UpdateableFn::new(FnOwner::Free, Vec::new(), &f.attrs, &f.vis, &f.sig, &f.block);
            u.send = send;
            valid::not_send_used(&opts, std::slice::from_ref(&u), &mut errors);
            valid::check_fn(&u, &mut errors);
            errors.finish().map(|()| expand_free_fn(&u))
        }
        Input::Impl(item) => {
            valid::check_impl(item, &mut errors);
            let mut methods = impl_fns(item);
            for f in &mut methods {
                f.send = send;
            }
            let (fns, plain) = valid::split_methods(methods, &mut errors);
            valid::not_send_used(&opts, &fns, &mut errors);
            match errors.finish() {
                Ok(()) => Ok(expand_impl(item, &fns, &plain)),
                Err(e) => Ok(fallback(e, without_method_marks(item))),
            }
        }
        Input::Other(Item::Struct(item)) => {
            valid::not_send_used(&opts, &[], &mut errors);
            valid::check_type_generics(&item.generics, &mut errors);
            errors.finish().map(|()| expand_type(item, TypeShape::Struct(&item.fields)))
        }
        Input::Other(Item::Enum(item)) => {
            valid::not_send_used(&opts, &[], &mut errors);
            valid::check_type_generics(&item.generics, &mut errors);
            errors.finish().map(|()| expand_type(item, TypeShape::Enum(&item.variants)))
        }
        Input::Other(item) => Err(syn::Error::new_spanned(item, refusal_for_item(item))),
    };
    result.unwrap_or_else(|e| fallback(e, input))
}

/// Entry point of `#[update_point]`.
pub fn update_point(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    valid::no_args(&args, "update_point", &mut errors);
    let mut f = match syn::parse2::<syn::ItemFn>(input.clone()) {
        Ok(f) => f,
        Err(_) => {
            let msg = "#[dsu::update_point] goes on a function; inside a loop, call \
                       `dsu::update_point()` instead";
            let e = match syn::parse2::<Item>(input.clone()) {
                Ok(item) => syn::Error::new_spanned(item, msg),
                Err(_) => syn::Error::new(Span::call_site(), msg),
            };
            return fallback(e, input);
        }
    };
    if let Some(c) = &f.sig.constness {
        errors.spanned(
            c,
            "#[dsu::update_point] cannot go on a `const fn`: applying a patch happens at run time. \
             Remove `const`, or call `dsu::update_point()` from a caller",
        );
    }
    if let Err(e) = errors.finish() {
        return fallback(e, input);
    }
    let stmt: syn::Stmt = syn::parse_quote!(::dsu::__private::update_point(););
    f.block.stmts.insert(0, stmt);
    f.into_token_stream()
}

/// On error: the error *and* the item unchanged, so the user sees one error, not a cascade.
fn fallback(e: syn::Error, original: TokenStream) -> TokenStream {
    let err = e.to_compile_error();
    quote!(#err #original)
}

/// A refused impl block to emit beside its error: unchanged, but for its methods' own
/// `#[dsu::updateable]`s, each of which would expand again, on a method outside an annotated
/// impl, and repeat the error or add a confusing one.
fn without_method_marks(item: &ItemImpl) -> TokenStream {
    let mut item = item.clone();
    for i in &mut item.items {
        if let ImplItem::Fn(m) = i {
            m.attrs.retain(|a| !is_dsu_updateable(a));
        }
    }
    item.into_token_stream()
}

fn refusal_for_item(item: &Item) -> String {
    let kind = match item {
        Item::Union(_) => {
            return "#[dsu::updateable] cannot be put on a union: its layout has no fields to \
                    fingerprint and transform safely; use an enum"
                .into();
        }
        Item::Static(_) => {
            return "#[dsu::updateable] cannot be put on a static: statics need none (patches \
                    share the program's), and state whose type changes belongs in a `dsu::State` cell"
                .into();
        }
        Item::Trait(_) => "a trait definition (put it on the impl blocks instead)",
        Item::Mod(_) => "a module",
        Item::Const(_) => "a const",
        Item::Type(_) => "a type alias",
        Item::Use(_) => "a use declaration",
        Item::Macro(_) => "a macro invocation",
        Item::ForeignMod(_) => "an extern block",
        _ => "this item",
    };
    format!("#[dsu::updateable] goes on a function, an impl block, a struct or an enum, not on {kind}")
}

enum TypeShape<'a> {
    Struct(&'a syn::Fields),
    Enum(&'a syn::punctuated::Punctuated<syn::Variant, syn::Token![,]>),
}

/// A struct or enum: the item unchanged, plus its structural fingerprint and its identity
/// transform (so it composes, unchanged, inside containers whose element types change: it moves
/// whole). A field's type needs neither: one without a fingerprint of its own (a channel, a
/// handle, a type of another crate) is fingerprinted by its name, layout and the fingerprints of
/// the types it is made of ([`field_fingerprint`]).
fn expand_type(item: &impl ToTokens, shape: TypeShape<'_>) -> TokenStream {
    let ident = match syn::parse2::<Item>(item.to_token_stream()) {
        Ok(Item::Struct(s)) => s.ident,
        Ok(Item::Enum(e)) => e.ident,
        _ => unreachable!("expand_type takes structs and enums"),
    };
    let mut parts = Vec::new();
    let fields = |prefix: String, fs: &syn::Fields, parts: &mut Vec<TokenStream>| {
        for (i, f) in fs.iter().enumerate() {
            let name = f.ident.as_ref().map_or_else(|| i.to_string(), |id| id.to_string());
            let label = format!("{prefix}field {name}");
            let fingerprint = field_fingerprint(&f.ty);
            parts.push(quote! {
                .with(::dsu::__private::Fingerprint::of_text(#label))
                .with(#fingerprint)
            });
        }
    };
    let kind = match &shape {
        TypeShape::Struct(fs) => {
            fields(String::new(), fs, &mut parts);
            "struct"
        }
        TypeShape::Enum(variants) => {
            for v in variants.iter() {
                let label = format!("variant {}", v.ident);
                parts.push(quote!(.with(::dsu::__private::Fingerprint::of_text(#label))));
                fields(format!("{} ", v.ident), &v.fields, &mut parts);
            }
            "enum"
        }
    };
    quote! {
        #item
        impl ::dsu::__private::Fingerprinted for #ident {
            const FINGERPRINT: ::dsu::__private::Fingerprint = {
                #[allow(unused_imports)]
                use ::dsu::__private::ProbeFallback as _;
                ::dsu::__private::Fingerprint::of_text(#kind)
                #(#parts)*
                .with_layout(::core::mem::size_of::<Self>(), ::core::mem::align_of::<Self>())
            };
        }
        // SAFETY: `Old` is `Self`: the value moves whole, one bitwise copy that either side keeps
        // and neither releases.
        unsafe impl ::dsu::__private::Transform<#ident> for #ident {
            const IDENTITY: bool = true;
            #[inline(always)]
            unsafe fn transform(old: &Self) -> ::core::result::Result<Self, ::dsu::__private::TransformError> {
                // SAFETY: the caller settles the move (the releases below do nothing).
                ::core::result::Result::Ok(unsafe { ::dsu::__private::carry(old) })
            }
            #[inline(always)]
            unsafe fn release_old(_: *mut Self) {}
            #[inline(always)]
            unsafe fn release_new(_: *mut Self) {}
        }
    }
}

/// The fingerprint of a field of type `ty`: the type's own when it has one (`Probe`); otherwise
/// (a type dsu does not know, which cannot change in a patch since dependencies cannot) its last
/// path segment's name, its size and alignment, and the fingerprints of the types it is made of
/// (`Sender<Event>` changes when `Event` does). Its tokens keep the field's span.
fn field_fingerprint(ty: &Type) -> TokenStream {
    struct Inner<'a>(Vec<&'a Type>);
    impl<'a> syn::visit::Visit<'a> for Inner<'a> {
        fn visit_type(&mut self, t: &'a Type) {
            self.0.push(t);
            syn::visit::visit_type(self, t);
        }
    }
    let mut inner = Inner(Vec::new());
    syn::visit::visit_type(&mut inner, ty);
    let name = match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().map_or_else(|| tokens_text(ty), |s| s.ident.to_string())
        }
        _ => tokens_text(ty),
    };
    let inner = inner.0;
    quote_spanned! {ty.span()=>
        ::dsu::__private::field_fingerprint(
            ::dsu::__private::Probe::<#ty>::FP,
            #name,
            ::core::mem::size_of::<#ty>(),
            ::core::mem::align_of::<#ty>(),
            &[#(::dsu::__private::Probe::<#inner>::FP),*],
        )
    }
}

fn impl_fns(item: &ItemImpl) -> Vec<UpdateableFn<'_>> {
    let owner = FnOwner::of_impl(item);
    let assoc: Vec<Ident> = match owner {
        FnOwner::Trait { .. } => item
            .items
            .iter()
            .filter_map(|i| match i {
                ImplItem::Type(t) => Some(t.ident.clone()),
                ImplItem::Const(c) => Some(c.ident.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    item.items
        .iter()
        .filter_map(|i| match i {
            ImplItem::Fn(f) => {
                Some(UpdateableFn::new(owner, assoc.clone(), &f.attrs, &f.vis, &f.sig, &f.block))
            }
            _ => None,
        })
        .collect()
}

fn expand_free_fn(f: &UpdateableFn<'_>) -> TokenStream {
    // An `async fn` keeps its body as `async fn __dsu_body`; `__dsu_impl` boxes its future.
    let name = if f.is_async() { "__dsu_body" } else { "__dsu_impl" };
    let mut imp_sig = f.sig.clone();
    imp_sig.ident = Ident::new(name, Span::call_site());
    let lints = lint_attrs(f.attrs);
    let body_attrs = body_attrs(f);
    let block = f.block;
    let imp = quote! {
        #(#lints)*
        #(#body_attrs)*
        #imp_sig #block
    };
    let attrs: Vec<_> = f.attrs.iter().filter(|a| !is_body_attr(a)).collect();
    let imp_path = Ident::new(name, Span::call_site()).into_token_stream();
    dispatcher(f, &attrs, imp_path, imp)
}

fn expand_impl(
    item: &ItemImpl,
    fns: &[UpdateableFn<'_>],
    plain: &[PlainMethod<'_>],
) -> TokenStream {
    let self_ty = &item.self_ty;
    let impl_hash = dsu_abi::body_hash(&item.to_token_stream().to_string());
    let mut out = item.clone();
    let mut hidden = Vec::new();
    for (original, impl_item) in item.items.iter().zip(&mut out.items) {
        let (ImplItem::Fn(original), ImplItem::Fn(m)) = (original, &*impl_item) else { continue };
        // A method the rule refuses stays as it is (see `valid::split_methods`).
        let Some(f) = fns.iter().find(|f| std::ptr::eq(f.sig, &original.sig)) else { continue };
        let hidden_name = hidden_method_name(f, impl_hash);
        let mut imp: ImplItemFn = m.clone();
        imp.sig.ident = hidden_name.clone();
        imp.vis = syn::Visibility::Inherited;
        imp.attrs = lint_attrs(f.attrs);
        // A method that is configured out must be configured out in its hidden copy too.
        imp.attrs.extend(cfg_attrs(f.attrs));
        imp.attrs.extend(body_attrs(f));
        imp.attrs.push(syn::parse_quote!(#[doc(hidden)]));
        imp.attrs.push(syn::parse_quote!(#[allow(non_snake_case)]));
        if let FnOwner::Trait { trait_path, .. } = f.owner {
            // The body moves from the trait impl into an inherent impl, where `Self::Item`
            // would be ambiguous: spell the trait out.
            QualifyAssoc(f).visit_impl_item_fn_mut(&mut imp);
            // Inside the trait impl the trait's methods were callable as `self.m()`; in the
            // inherent impl they are only if the trait is in scope.
            let mut path = trait_path.clone();
            for seg in &mut path.segments {
                seg.arguments = syn::PathArguments::None;
            }
            imp.block.stmts.insert(0, syn::parse_quote!(#[allow(unused_imports)] use #path as _;));
        }
        hidden.push(imp);

        let attrs: Vec<_> =
            f.attrs.iter().filter(|a| !is_dsu_updateable(a) && !is_body_attr(a)).collect();
        let dispatcher =
            dispatcher(f, &attrs, quote!(<#self_ty>::#hidden_name), TokenStream::new());
        *impl_item = syn::parse2(dispatcher).expect("a dispatcher is an impl item");
    }
    out.attrs.retain(|a| !is_dsu_updateable(a));
    let hidden_impl = if hidden.is_empty() {
        quote!()
    } else {
        quote! {
            impl #self_ty {
                #(#hidden)*
            }
        }
    };
    let warnings = plain.iter().map(|p| plain_method_warning(p, &item.attrs));
    quote! {
        #out
        #hidden_impl
        #(#warnings)*
    }
}

/// The warning that a method of an updateable impl stays a plain method, and why.
///
/// Stable Rust gives a proc macro no way to warn, so the warning is the `deprecated` lint: a
/// deprecated constant whose note is the message, used at the method's name (where the warning
/// points), inside an anonymous `const` so nothing leaks. The lint attributes of the method and
/// of the impl block that name `deprecated` are repeated on that `const`, so
/// `#[allow(deprecated)]` on either silences it; so are the method's `cfg`s, so a method that is
/// configured out does not warn.
fn plain_method_warning(p: &PlainMethod<'_>, impl_attrs: &[syn::Attribute]) -> TokenStream {
    let note = format!(
        "`{}` stays a plain method, which a patch cannot replace: {}. (`#[allow(deprecated)]` \
         on the method silences this warning)",
        p.f.local_path(),
        p.reason.message()
    );
    // `expect` is left out: repeated, it would be fulfilled here and unfulfilled on the method.
    let names_deprecated = |a: &syn::Attribute| {
        !a.path().is_ident("expect") && a.meta.to_token_stream().to_string().contains("deprecated")
    };
    let lints =
        lint_attrs(impl_attrs).into_iter().chain(lint_attrs(p.f.attrs)).filter(names_deprecated);
    let cfgs = cfg_attrs(p.f.attrs);
    let name = Ident::new("dsu_not_updateable", Span::call_site());
    let use_site = Ident::new("dsu_not_updateable", p.f.sig.ident.span());
    quote! {
        #(#cfgs)*
        #(#lints)*
        const _: () = {
            #[deprecated(note = #note)]
            #[allow(non_upper_case_globals)]
            const #name: () = ();
            #use_site
        };
    }
}

/// `cfg` and `cfg_attr` attributes of the original item.
fn cfg_attrs(attrs: &[syn::Attribute]) -> impl Iterator<Item = syn::Attribute> + '_ {
    attrs.iter().filter(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr")).cloned()
}

/// The body attributes of `f` (see [`is_body_attr`]), for its implementation.
///
/// `#[instrument]` names its span after the function it is on, which is now the hidden
/// `__dsu_impl…`: unless it names the span itself, it gets `name = "<the function's name>"`,
/// the name it would have given.
fn body_attrs(f: &UpdateableFn<'_>) -> Vec<syn::Attribute> {
    let name = syn::LitStr::new(&f.sig.ident.to_string(), f.sig.ident.span());
    f.attrs
        .iter()
        .filter(|a| is_body_attr(a))
        .map(|a| {
            let mut a = a.clone();
            match &mut a.meta {
                syn::Meta::Path(path) => {
                    let path = path.clone();
                    a.meta = syn::parse_quote!(#path(name = #name));
                }
                syn::Meta::List(list) if !names_span(&list.tokens) => {
                    let sep = match list.tokens.clone().into_iter().last() {
                        None => quote!(),
                        Some(TokenTree::Punct(p)) if p.as_char() == ',' => quote!(),
                        Some(_) => quote!(,),
                    };
                    list.tokens.extend(quote!(#sep name = #name));
                }
                // Named already, or a form `#[instrument]` refuses itself.
                _ => {}
            }
            a
        })
        .collect()
}

/// Whether `#[instrument(..)]` arguments name the span: `name = ..`, or a string literal, which
/// `tracing` also takes as the name.
fn names_span(args: &TokenStream) -> bool {
    let mut at_start = true;
    for t in args.clone() {
        let starts_name = match &t {
            TokenTree::Ident(i) => i == "name",
            TokenTree::Literal(l) => syn::parse_str::<syn::LitStr>(&l.to_string()).is_ok(),
            _ => false,
        };
        if at_start && starts_name {
            return true;
        }
        at_start = matches!(&t, TokenTree::Punct(p) if p.as_char() == ',');
    }
    false
}

/// Lint attributes of the original item, repeated on its hidden body.
fn lint_attrs(attrs: &[syn::Attribute]) -> Vec<syn::Attribute> {
    attrs
        .iter()
        .filter(|a| {
            ["allow", "warn", "deny", "expect", "forbid"].iter().any(|l| a.path().is_ident(l))
        })
        .cloned()
        .collect()
}

/// The hidden method's name. For a trait method it carries a hash of the whole impl block: two
/// traits written alike (`Handler`, imported from two modules) implemented for one type must not
/// collide. Hidden names are internal: host and patch never need to agree on them.
fn hidden_method_name(f: &UpdateableFn<'_>, impl_hash: u64) -> Ident {
    match f.owner {
        FnOwner::Trait { trait_path, .. } => {
            let t: String = tokens_text(trait_path)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            format_ident!("__dsu_impl_{}_{}_{:08x}", t, f.sig.ident, impl_hash as u32)
        }
        _ => format_ident!("__dsu_impl_{}", f.sig.ident),
    }
}

/// The dispatcher: the function's own signature (arguments renamed), a body that declares the
/// slot and table entry, loads the slot and calls through it.
///
/// `imp_path` names the original body. For an `async fn` that body is still `async`; the slot
/// holds `__dsu_impl` (see [`async_impl`]), which calls it and boxes its future, and the
/// dispatcher's signature changes (see [`async_signature`]).
fn dispatcher(
    f: &UpdateableFn<'_>,
    attrs: &[&syn::Attribute],
    imp_path: TokenStream,
    nested_impl: TokenStream,
) -> TokenStream {
    let shape = FnShape::of(f);
    let (imp_path, nested_impl) = match &shape.erased {
        Some(erased) => {
            let wrapper = async_impl(f, &shape, erased, &imp_path);
            (quote!(__dsu_impl), quote!(#nested_impl #wrapper))
        }
        None => (imp_path, nested_impl),
    };
    let fn_ty = &shape.fn_ty;
    let sig_text = fn_ty.to_token_stream().to_string();
    let sig_hash = dsu_abi::fnv128(sig_text.as_bytes());
    // Size and alignment of every type, and its structural fingerprint where it has one: a
    // layout change of an updateable type in the signature changes the fingerprint.
    let layouts = shape.layout_types.iter().map(|t| {
        quote! {
            .with_layout(::core::mem::size_of::<#t>(), ::core::mem::align_of::<#t>())
            .with(::dsu::__private::Probe::<#t>::FP)
        }
    });

    let body_text = match f.owner {
        FnOwner::Free => {
            let (sig, block) = (f.sig, f.block);
            quote!(#sig #block).to_string()
        }
        _ => {
            let (sig, block, ty) = (f.sig, f.block, f.owner.self_ty());
            let trait_text = match f.owner {
                FnOwner::Trait { trait_path, .. } => trait_path.to_token_stream().to_string(),
                _ => String::new(),
            };
            format!("{} {} {} {}", quote!(#ty), trait_text, quote!(#sig), quote!(#block))
        }
    };
    // A body attribute (`#[instrument]`) is part of the implementation: a patch that changes
    // only it changes the function. Functions without one hash as they always did.
    let mut body_text = body_text;
    for a in f.attrs.iter().filter(|a| is_body_attr(a)) {
        body_text.push(' ');
        body_text.push_str(&a.to_token_stream().to_string());
    }
    let body_hash = dsu_abi::body_hash(&body_text);

    let local = f.local_path();
    let symbol_local = dsu_abi::symbol_safe(&local);
    let info_prefix = dsu_abi::FN_INFO_PREFIX;
    let link_prefix = dsu_abi::FN_LINK_PREFIX;
    let build_env = dsu_abi::BUILD_ENV;

    let mut sig: Signature = f.sig.clone();
    // The hidden items inside the dispatcher use the function's lifetime names in their own
    // binders; rename the dispatcher's so they do not shadow each other.
    let declared: Vec<Ident> = sig.generics.lifetimes().map(|l| l.lifetime.ident.clone()).collect();
    RenameLifetimes(&declared).visit_signature_mut(&mut sig);
    let mut call_args = Vec::new();
    let mut n = 0usize;
    for input in sig.inputs.iter_mut() {
        match input {
            FnArg::Receiver(r) => {
                if r.reference.is_none() {
                    r.mutability = None;
                }
                call_args.push(quote!(self));
            }
            FnArg::Typed(t) => {
                let id = format_ident!("__dsu_arg{}", n);
                n += 1;
                *t.pat = Pat::Ident(PatIdent {
                    attrs: vec![],
                    by_ref: None,
                    mutability: None,
                    ident: id.clone(),
                    subpat: None,
                });
                t.attrs.clear();
                call_args.push(quote!(#id));
            }
        }
    }
    let inline = if f.attrs.iter().any(|a| a.path().is_ident("inline")) {
        quote!()
    } else {
        quote!(#[inline])
    };
    let mut call = if sig.unsafety.is_some() {
        // SAFETY (generated): the caller of this `unsafe fn` upholds its contract, which is the
        // contract of the implementation being called.
        quote!(unsafe { __dsu_f(#(#call_args),*) })
    } else {
        quote!(__dsu_f(#(#call_args),*))
    };
    let load = quote! {
        // SAFETY (generated): the slot only ever holds implementations of this exact
        // signature: this crate's own, or a patch's whose signature fingerprint the runtime
        // checked against __DSU_SIG before storing it.
        let __dsu_f: #fn_ty = unsafe { __DSU_SLOT.get::<#fn_ty>() };
    };
    let mut extra_attrs = TokenStream::new();
    if shape.erased.is_some() {
        // An `async fn`'s slot is read when its future is first polled, inside the running
        // section that poll is (`Tracked`), not when it is called: a call made while its thread
        // counts as idle (a plain task on an executor thread) and polled after an update gets
        // the new code, which the update's state was transformed for.
        let deferred = quote!(::dsu::__private::Tracked::new(async move { #load #call.await }));
        call = if let FnOwner::Trait { .. } = f.owner {
            // The trait's signature stays; the future is `impl Future`, which may be stronger
            // (`Send`) than the trait's `async fn` promises.
            extra_attrs = quote!(#[allow(refining_impl_trait)]);
            deferred
        } else {
            quote!(::std::boxed::Box::pin(#deferred))
        };
        async_signature(f, &shape, &mut sig);
    } else {
        call = quote!(#load #call);
    }

    let vis = f.vis;
    quote! {
        #(#attrs)*
        #inline
        #extra_attrs
        #vis #sig {
            #nested_impl
            static __DSU_SLOT: ::dsu::__private::Slot =
                ::dsu::__private::Slot::new(#imp_path as #fn_ty as *mut ());
            const __DSU_PATH: &str = ::core::concat!(::core::module_path!(), "::", #local);
            const __DSU_BUILD: &str =
                ::dsu::__private::build_identity(::core::option_env!(#build_env));
            #[allow(unused_imports)]
            use ::dsu::__private::ProbeFallback as _;
            const __DSU_SIG: ::dsu::__private::Fingerprint =
                ::dsu::__private::Fingerprint::from_u128(#sig_hash) #(#layouts)*;
            #[used]
            #[export_name = ::core::concat!(#info_prefix, ::core::module_path!(), "::", #symbol_local)]
            static __DSU_INFO: ::dsu::__private::FnInfo<{ __DSU_PATH.len() + __DSU_BUILD.len() }> =
                ::dsu::__private::FnInfo::new(__DSU_PATH, __DSU_BUILD, __DSU_SIG, #body_hash);
            #[used]
            #[export_name = ::core::concat!(#link_prefix, ::core::module_path!(), "::", #symbol_local)]
            static __DSU_LINK: ::dsu::__private::FnLink = ::dsu::__private::FnLink::new(
                ::core::ptr::addr_of!(__DSU_SLOT).cast(),
                #imp_path as #fn_ty as *const (),
            );
            #call
        }
    }
}

/// The function's type as a `fn` pointer, and the types whose layout enters its fingerprint.
struct FnShape {
    fn_ty: Type,
    layout_types: Vec<Type>,
    /// For an `async fn`: the argument types of `fn_ty` (receiver first, `Self` spelled out),
    /// the lifetimes of its binder, and its return type, the erased future.
    inputs: Vec<Type>,
    lifetimes: Vec<Lifetime>,
    erased: Option<Type>,
}

impl FnShape {
    fn of(f: &UpdateableFn<'_>) -> Self {
        if f.is_async() {
            return Self::of_async(f);
        }
        let self_lt = Lifetime::new("'__dsu_self", Span::call_site());
        let mut lifetimes: Vec<Lifetime> = f
            .sig
            .generics
            .lifetimes()
            .map(|l| l.lifetime.clone())
            .collect();
        let mut inputs: Vec<Type> = Vec::new();
        let mut receiver_lt = None;
        if let Some(r) = f.receiver {
            // `&self`, `&'a self`, `self: &Self`, `self: Pin<&Self>`… all arrive as a type
            // (syn spells `&self` as `&Self`). An explicit lifetime other than `'_` is the
            // receiver's; elided ones get a name, since in a method they are what elided output
            // lifetimes borrow from, and a fn pointer type has no such rule.
            let mut ty = substitute_self(&r.ty, f);
            match r.reference.as_ref().and_then(|(_, lt)| lt.clone()).filter(|lt| lt.ident != "_") {
                Some(lt) => receiver_lt = Some(lt),
                None => {
                    let mut namer = NameElided(&self_lt, 0);
                    namer.visit_type_mut(&mut ty);
                    if namer.1 > 0 {
                        lifetimes.push(self_lt.clone());
                        receiver_lt = Some(self_lt.clone());
                    }
                }
            }
            inputs.push(ty);
        }
        for (_, ty) in &f.args {
            inputs.push(substitute_self(ty, f));
        }
        let output: Option<Type> = match &f.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => {
                let mut ty = substitute_self(ty, f);
                if let Some(lt) = &receiver_lt {
                    // In a method, elided output lifetimes borrow from `self`; a fn pointer type
                    // has no such rule, so name it.
                    NameElided(lt, 0).visit_type_mut(&mut ty);
                }
                Some(ty)
            }
        };
        let unsafety = &f.sig.unsafety;
        let ret = output.as_ref().map(|t| quote!(-> #t));
        let binder = if lifetimes.is_empty() { quote!() } else { quote!(for<#(#lifetimes),*>) };
        let fn_ty: Type = syn::parse_quote!(#binder #unsafety fn(#(#inputs),*) #ret);

        let layout_types = layout_types(&inputs, output);
        FnShape { fn_ty, layout_types, inputs: Vec::new(), lifetimes: Vec::new(), erased: None }
    }

    /// `async fn f(a: &A, b: B) -> T` is stored as
    /// `for<'__dsu> fn(&'__dsu A, B) -> Pin<Box<dyn Future<Output = T> + Send + '__dsu>>`
    /// (lifetimes named by [`AsyncLifetimes`]; `+ Send` unless `?Send`; `'static` when no
    /// argument borrows). Its fingerprint is that type's text, so it never matches a synchronous
    /// function's, plus the layouts of the arguments and of `T`.
    fn of_async(f: &UpdateableFn<'_>) -> Self {
        let mut namer = AsyncLifetimes::new();
        let mut inputs: Vec<Type> = Vec::new();
        if let Some(r) = f.receiver {
            inputs.push(substitute_self(&r.ty, f));
        }
        for (_, ty) in &f.args {
            inputs.push(substitute_self(ty, f));
        }
        for ty in &mut inputs {
            namer.visit_type_mut(ty);
        }
        let (top, mut lifetimes) = async_top(&namer);
        lifetimes.extend(namer.fresh);
        let output: Option<Type> = match &f.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => {
                let mut ty = substitute_self(ty, f);
                AsyncLifetimes::output(top.clone()).visit_type_mut(&mut ty);
                Some(ty)
            }
        };
        let out_ty = output.clone().unwrap_or_else(|| syn::parse_quote!(()));
        let send = if f.send { quote!(+ ::core::marker::Send) } else { quote!() };
        let erased: Type = syn::parse_quote! {
            ::core::pin::Pin<::std::boxed::Box<
                dyn ::core::future::Future<Output = #out_ty> #send + #top
            >>
        };
        let unsafety = &f.sig.unsafety;
        let binder = if lifetimes.is_empty() { quote!() } else { quote!(for<#(#lifetimes),*>) };
        let fn_ty: Type = syn::parse_quote!(#binder #unsafety fn(#(#inputs),*) -> #erased);

        let layout_types = layout_types(&inputs, output);
        FnShape { fn_ty, layout_types, inputs, lifetimes, erased: Some(erased) }
    }
}

/// The types whose layout enters a signature's fingerprint: the inputs and the output (unless
/// it is `!`), with every lifetime made `'static` so they can be measured in a `const`.
fn layout_types(inputs: &[Type], output: Option<Type>) -> Vec<Type> {
    let mut types: Vec<Type> = inputs.to_vec();
    types.extend(output.filter(|t| !matches!(t, Type::Never(_))));
    for t in &mut types {
        StaticLifetimes.visit_type_mut(t);
    }
    types
}

/// The future's lifetime once the inputs are named: `'__dsu` if an argument borrows (then it
/// heads the binder), else `'static` (a `fn` pointer type cannot name a lifetime only in its
/// output).
fn async_top(namer: &AsyncLifetimes) -> (Lifetime, Vec<Lifetime>) {
    if namer.top_uses > 0 {
        let top = Lifetime::new(AsyncLifetimes::TOP, Span::call_site());
        (top.clone(), vec![top])
    } else {
        (Lifetime::new("'static", Span::call_site()), Vec::new())
    }
}

/// The function the slot of an `async fn` holds: it calls the original `async` body (`target`)
/// and returns its future, wrapped in `Tracked` (so the runtime sees when a thread polls
/// updateable code), boxed and erased. A future keeps the code it was made by; the next call
/// gets the slot's current code.
///
/// Its `Send` requirement is checked here, at the unsizing coercion, whose span is the
/// function's name: a body that holds a non-`Send` value across an `.await` fails with rustc's
/// "future cannot be sent between threads safely" pointing at that name and at the value.
fn async_impl(
    f: &UpdateableFn<'_>,
    shape: &FnShape,
    erased: &Type,
    target: &TokenStream,
) -> TokenStream {
    let params: Vec<Ident> =
        (0..shape.inputs.len()).map(|i| format_ident!("__dsu_arg{}", i)).collect();
    let tys = &shape.inputs;
    let lifetimes = &shape.lifetimes;
    let unsafety = &f.sig.unsafety;
    let call = if unsafety.is_some() {
        // SAFETY (generated): this `unsafe fn` has the contract of the original one, which its
        // caller upholds.
        quote!(unsafe { #target(#(#params),*) })
    } else {
        quote!(#target(#(#params),*))
    };
    let boxed = quote_spanned! {f.sig.ident.span()=>
        ::std::boxed::Box::pin(::dsu::__private::Tracked::new(#call))
    };
    quote! {
        #unsafety fn __dsu_impl<#(#lifetimes),*>(#(#params: #tys),*) -> #erased {
            #boxed
        }
    }
}

/// The dispatcher's signature of an `async fn` (arguments already renamed): no longer `async`.
///
/// * A free function or inherent method returns the slot's erased future itself, with the
///   elided lifetimes named as in the slot's type: `fn f<'__dsu>(a: &'__dsu A) ->
///   Pin<Box<dyn Future<Output = T> + Send + '__dsu>>`. Callers still write `f(a).await`.
/// * A trait method keeps the trait's signature and returns `impl Future<Output = T> + Send`,
///   an `async move` block around the call through the slot (loaded at the call): a trait fixes
///   how its method's lifetimes relate, and the erased future, bounded by their intersection,
///   cannot be returned as it is.
fn async_signature(f: &UpdateableFn<'_>, shape: &FnShape, sig: &mut Signature) {
    sig.asyncness = None;
    let out_ty: Type = match &f.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    if let FnOwner::Trait { .. } = f.owner {
        let send = if f.send { quote!(+ ::core::marker::Send) } else { quote!() };
        sig.output = syn::parse_quote!(-> impl ::core::future::Future<Output = #out_ty> #send);
        return;
    }
    // The dispatcher's lifetimes are named apart from `'__dsu`, which the slot's type binds
    // inside its body.
    const TOP: &str = "'__dsu_call";
    let mut namer = AsyncLifetimes::named(TOP);
    for input in sig.inputs.iter_mut() {
        match input {
            FnArg::Receiver(r) => {
                if r.colon_token.is_some() {
                    namer.visit_type_mut(&mut r.ty);
                } else if let Some((_, lt)) = &mut r.reference {
                    if lt.as_ref().is_none_or(|l| l.ident == "_") {
                        let named = namer.name();
                        if let Type::Reference(t) = &mut *r.ty {
                            t.lifetime = Some(named.clone());
                        }
                        *lt = Some(named);
                    }
                }
            }
            FnArg::Typed(t) => namer.visit_type_mut(&mut t.ty),
        }
    }
    let mut lifetimes = Vec::new();
    if namer.top_uses > 0 {
        lifetimes.push(Lifetime::new(TOP, Span::call_site()));
    }
    lifetimes.extend(namer.fresh);
    sig.generics = syn::parse_quote!(<#(#lifetimes),*>);
    let mut erased = shape.erased.clone().expect("an async fn's shape");
    RenameTop(TOP).visit_type_mut(&mut erased);
    sig.output = syn::parse_quote!(-> #erased);
}

/// `'__dsu` → the dispatcher's name for it.
struct RenameTop(&'static str);

impl VisitMut for RenameTop {
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if l.to_string() == AsyncLifetimes::TOP {
            *l = Lifetime::new(self.0, l.apostrophe);
        }
    }
}

/// `Self` → the impl's type; in a trait impl, `Self::Assoc` → `<Type as Trait>::Assoc`.
fn substitute_self(ty: &Type, f: &UpdateableFn<'_>) -> Type {
    let mut ty = ty.clone();
    if let FnOwner::Trait { .. } = f.owner {
        QualifyAssoc(f).visit_type_mut(&mut ty);
    }
    if let Some(self_ty) = f.owner.self_ty() {
        ReplaceSelf(self_ty).visit_type_mut(&mut ty);
    }
    ty
}

struct ReplaceSelf<'a>(&'a Type);

impl VisitMut for ReplaceSelf<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(p) = ty {
            if p.qself.is_none() && p.path.is_ident("Self") {
                *ty = self.0.clone();
                return;
            }
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

struct QualifyAssoc<'a, 'b>(&'a UpdateableFn<'b>);

impl QualifyAssoc<'_, '_> {
    fn qualified(&self, path: &syn::Path) -> Option<TokenStream> {
        let FnOwner::Trait { self_ty, trait_path } = self.0.owner else { return None };
        let assoc = &self.0.assoc;
        let segs = &path.segments;
        if path.leading_colon.is_none()
            && segs.len() >= 2
            && segs[0].ident == "Self"
            && assoc.iter().any(|a| *a == segs[1].ident)
        {
            let rest = segs.iter().skip(1);
            Some(quote!(<#self_ty as #trait_path>::#(#rest)::*))
        } else {
            None
        }
    }
}

impl VisitMut for QualifyAssoc<'_, '_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(p) = ty {
            if p.qself.is_none() {
                if let Some(q) = self.qualified(&p.path) {
                    *ty = syn::parse2(q).expect("qualified path is a type");
                    return;
                }
            }
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }

    fn visit_expr_mut(&mut self, e: &mut syn::Expr) {
        if let syn::Expr::Path(p) = e {
            if p.qself.is_none() {
                if let Some(q) = self.qualified(&p.path) {
                    *e = syn::parse2(q).expect("qualified path is an expression");
                    return;
                }
            }
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }
}

/// Gives elided lifetimes (`&T`, `'_`) the receiver's lifetime; counts how many it named.
/// Lifetimes hidden in a path (`Iter<u8>` for `Iter<'_, u8>`) cannot be seen without type
/// information: write them out (`Iter<'_, u8>`).
struct NameElided<'a>(&'a Lifetime, usize);

impl VisitMut for NameElided<'_> {
    fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
        if r.lifetime.is_none() {
            r.lifetime = Some(self.0.clone());
            self.1 += 1;
        }
        syn::visit_mut::visit_type_reference_mut(self, r);
    }

    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if l.ident == "_" {
            *l = self.0.clone();
            self.1 += 1;
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

/// `'a` → `'__dsu_a` for the lifetimes a function declares.
struct RenameLifetimes<'a>(&'a [Ident]);

impl VisitMut for RenameLifetimes<'_> {
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if self.0.contains(&l.ident) {
            *l = Lifetime::new(&format!("'__dsu_{}", l.ident), l.apostrophe);
        }
    }
}

/// Layout does not depend on lifetimes; named ones are not in scope where the layout is taken.
struct StaticLifetimes;

impl VisitMut for StaticLifetimes {
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if l.ident != "_" {
            *l = Lifetime::new("'static", l.apostrophe);
        }
    }

    fn visit_type_bare_fn_mut(&mut self, _: &mut syn::TypeBareFn) {}

    fn visit_bound_lifetimes_mut(&mut self, _: &mut syn::BoundLifetimes) {
        // `for<'x>` declares its lifetimes; uses of them below may become `'static` (layout
        // does not depend on them), the declarations stay.
    }
}
