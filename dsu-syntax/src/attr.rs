//! dsu's attributes: `#[dsu::updateable]`, `#[dsu::updateable(?Send)]` and
//! `#[dsu::transform(from = P, to = P, default)]`.
//!
//! **Which attributes are dsu's** (the one rule, [`is_dsu_attr`], that the macros and
//! `cargo dsu patch` both apply): an attribute is dsu's when its path is the keyword alone
//! (`#[updateable]`, the macro imported by name: `use dsu::updateable;`) or `dsu::` and the
//! keyword (`#[dsu::updateable]`, `#[::dsu::transform(…)]`). Any other path ending in the
//! keyword (`#[other::transform]`, `#[dsu::nested::updateable]`) belongs to some other crate, so
//! it is not read as dsu's, and neither is a path through a renamed crate (`use dsu as d;
//! #[d::updateable]`): nothing in the syntax tells it from another crate's macro of that name.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Meta};

/// `#[dsu::updateable]`.
pub const UPDATEABLE: &str = "updateable";
/// `#[dsu::transform(…)]`.
pub const TRANSFORM: &str = "transform";
/// `#[dsu::update_point]`.
pub const UPDATE_POINT: &str = "update_point";
/// The crate users reach the macros through.
pub const DSU: &str = "dsu";

mod kw {
    syn::custom_keyword!(from);
    syn::custom_keyword!(to);
    syn::custom_keyword!(default);
}

/// Whether `attr` is dsu's attribute `keyword` (see the module's first lines).
pub fn is_dsu_attr(attr: &Attribute, keyword: &str) -> bool {
    let segments = &attr.path().segments;
    let last_is = |s: Option<&syn::PathSegment>| s.is_some_and(|s| s.ident == keyword);
    match segments.len() {
        1 => attr.path().leading_colon.is_none() && last_is(segments.first()),
        2 => segments[0].ident == DSU && last_is(segments.last()),
        _ => false,
    }
}

/// Whether an item carries `#[dsu::updateable]` (with or without arguments).
pub fn is_updateable(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| is_dsu_attr(a, UPDATEABLE))
}

/// Whether an item carries `#[dsu::transform(…)]`.
pub fn is_transform(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| is_dsu_attr(a, TRANSFORM))
}

/// What one `#[dsu::updateable(…)]` says: nothing, or `?Send`, which drops the `Send` bound of
/// the erased futures of the item's `async fn`s.
#[derive(Debug, Clone, Default)]
pub struct UpdateableArgs {
    /// The `?Send` tokens, when given, for errors about them.
    pub not_send: Option<TokenStream>,
}

impl Parse for UpdateableArgs {
    /// Anything but nothing or `?Send` is refused as a whole, at all its tokens.
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.is_empty() {
            return Ok(UpdateableArgs::default());
        }
        let given = input.cursor().token_stream();
        let not_send = input.parse::<syn::Token![?]>().is_ok()
            && input.parse::<syn::Ident>().is_ok_and(|i| i == "Send")
            && input.is_empty();
        if !not_send {
            return Err(syn::Error::new_spanned(
                given,
                "#[dsu::updateable] takes no arguments, except `?Send` on an `async fn` (or an \
                 impl block with one) whose future is not `Send`",
            ));
        }
        Ok(UpdateableArgs { not_send: Some(given) })
    }
}

/// Which way a transformer moves a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `from = dsu_old::T`: the old revision's value to the new one.
    Forward,
    /// `to = dsu_old::T`: the new revision's value back to the old one, for a rollback.
    Inverse,
}

/// The old revision's type an argument names, with the keyword's span for errors.
#[derive(Debug, Clone)]
pub struct OldType {
    pub keyword: Span,
    pub path: syn::Path,
}

/// What one `#[dsu::transform(…)]` says: `from = <path>`, `to = <path>` and `default`, each at
/// most once, in any order.
#[derive(Debug, Clone, Default)]
pub struct TransformArgs {
    pub from: Option<OldType>,
    pub to: Option<OldType>,
    /// The span of `default`, when given: derive the transformers this attribute names.
    pub default: Option<Span>,
}

impl TransformArgs {
    /// The old type the transformer going `way` names.
    pub fn old_type(&self, way: Direction) -> Option<&syn::Path> {
        match way {
            Direction::Forward => self.from.as_ref(),
            Direction::Inverse => self.to.as_ref(),
        }
        .map(|o| &o.path)
    }

    /// Whether this attribute (on a type) asks for the transformer going `way` to be derived.
    pub fn derives(&self, way: Direction) -> bool {
        self.default.is_some() && self.old_type(way).is_some()
    }

    /// Rule: the attribute names the old type, `from`, `to` or both; `at` is the attribute.
    pub fn names_old_type(&self, at: Span) -> syn::Result<()> {
        if self.from.is_some() || self.to.is_some() {
            return Ok(());
        }
        let msg = if self.default.is_none() {
            "#[dsu::transform] needs the old type: `#[dsu::transform(from = dsu_old::Entry)]`"
        } else {
            "#[dsu::transform] needs the old type: `from = dsu_old::Entry` for the transformer \
             (old value to new), `to = dsu_old::Entry` for its inverse (new value to old), or both"
        };
        Err(syn::Error::new(at, msg))
    }

    /// Rule: `default` asks `cargo dsu patch` to derive a type's transformers, so it is not for
    /// a function, which is its own transformer.
    pub fn no_default_on_fn(&self) -> syn::Result<()> {
        match self.default {
            Some(d) => Err(syn::Error::new(d, "`default` is for a struct; a function is its own transformer")),
            None => Ok(()),
        }
    }

    /// The transformer a function under these arguments is. Rule: a function goes one way,
    /// `from` or `to` (see [`Self::names_old_type`]; `at` is the attribute), not both.
    pub fn one_way(&self, at: Span) -> syn::Result<Transformer> {
        self.names_old_type(at)?;
        match (&self.from, &self.to) {
            (Some(_), Some(to)) => Err(syn::Error::new(
                to.keyword,
                "a transformer function goes one way: `from = dsu_old::Entry` on \
                 `fn(&dsu_old::Entry) -> Entry`, `to = dsu_old::Entry` on \
                 `fn(&Entry) -> dsu_old::Entry`; write two functions",
            )),
            (Some(from), None) => Ok(Transformer { direction: Direction::Forward, old_type: from.path.clone() }),
            (None, Some(to)) => Ok(Transformer { direction: Direction::Inverse, old_type: to.path.clone() }),
            (None, None) => unreachable!("`names_old_type` refuses neither"),
        }
    }

    /// The arguments of one attribute: `#[dsu::transform]` has none, `#[dsu::transform(…)]`
    /// those in its parentheses.
    pub fn from_attribute(attr: &Attribute) -> syn::Result<Self> {
        match &attr.meta {
            Meta::Path(_) => Ok(TransformArgs::default()),
            Meta::List(list) => syn::parse2(list.tokens.clone()),
            Meta::NameValue(nv) => Err(syn::Error::new_spanned(
                nv,
                "#[dsu::transform] takes its arguments in parentheses: \
                 `#[dsu::transform(from = dsu_old::Entry)]`",
            )),
        }
    }
}

impl Parse for TransformArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = TransformArgs::default();
        let twice = |span: Span, what: &str| {
            syn::Error::new(span, format!("`{what}` is given twice in one #[dsu::transform]"))
        };
        while !input.is_empty() {
            let look = input.lookahead1();
            if look.peek(kw::from) || look.peek(kw::to) {
                let (slot, keyword, name) = if input.peek(kw::from) {
                    (&mut args.from, input.parse::<kw::from>()?.span, "from")
                } else {
                    (&mut args.to, input.parse::<kw::to>()?.span, "to")
                };
                input.parse::<syn::Token![=]>()?;
                if slot.is_some() {
                    return Err(twice(keyword, name));
                }
                *slot = Some(OldType { keyword, path: input.parse()? });
            } else if look.peek(kw::default) {
                let k = input.parse::<kw::default>()?;
                if args.default.is_some() {
                    return Err(twice(k.span, "default"));
                }
                args.default = Some(k.span);
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

/// Every `#[dsu::transform(…)]` of an item, in order (a type may carry one per direction); the
/// errors of all that cannot be read, combined.
pub fn transform_attrs(attrs: &[Attribute]) -> syn::Result<Vec<TransformArgs>> {
    let mut parsed = Vec::new();
    let mut error: Option<syn::Error> = None;
    for attr in attrs.iter().filter(|a| is_dsu_attr(a, TRANSFORM)) {
        match TransformArgs::from_attribute(attr) {
            Ok(args) => parsed.push(args),
            Err(e) => match &mut error {
                Some(first) => first.combine(e),
                None => error = Some(e),
            },
        }
    }
    error.map_or(Ok(parsed), Err)
}

/// What a function under `#[dsu::transform(…)]` is: the transformer of one old type, one way.
#[derive(Debug, Clone)]
pub struct Transformer {
    pub direction: Direction,
    /// `dsu_old::Entry` of `from = dsu_old::Entry` (or `to = …`).
    pub old_type: syn::Path,
}

impl Transformer {
    /// The name of the old type it moves: its path's last segment (the old definitions all live
    /// in the `dsu_old` module beside the new ones).
    pub fn old_name(&self) -> Option<&syn::Ident> {
        self.old_type.segments.last().map(|s| &s.ident)
    }

    /// The value of the cfg (`dsu_abi::TRANSFORMER_CFG`) under which the function `function`
    /// carrying this transformer compiles: `"Entry::upgrade"` for `fn upgrade` under
    /// `from = dsu_old::Entry`. The macro sees neither the function's module nor the release it
    /// was written for, so `cargo dsu patch`, which sees both revisions, sets it for the
    /// transformers a patch needs: those of a type the patch changes that are new or changed
    /// since the revision it starts from. Transformers of earlier releases stay in the source
    /// and are left out. Two transformers of one key in different modules cannot be told
    /// apart: `cargo dsu patch` refuses to compile one without the other.
    pub fn cfg_value(&self, function: &syn::Ident) -> String {
        let old = self.old_name().map(ToString::to_string).unwrap_or_default();
        format!("{old}::{function}")
    }

    /// Whether it moves values of the old revision's `ident` the way `way`.
    pub fn moves(&self, ident: &str, way: Direction) -> bool {
        self.direction == way && self.old_name().is_some_and(|n| n == ident)
    }
}

/// The transformer a function's attributes make of it: `Ok(None)` without
/// `#[dsu::transform]`. A function goes one way and is its own transformer, so `from` and `to`
/// together, neither, `default`, or a second `#[dsu::transform]` are errors.
pub fn fn_transformer(attrs: &[Attribute]) -> syn::Result<Option<Transformer>> {
    let mut all = attrs.iter().filter(|a| is_dsu_attr(a, TRANSFORM));
    let Some(attr) = all.next() else { return Ok(None) };
    if let Some(second) = all.next() {
        return Err(syn::Error::new_spanned(
            second,
            "a transformer function carries one #[dsu::transform]: write one function per direction",
        ));
    }
    let args = TransformArgs::from_attribute(attr)?;
    args.no_default_on_fn()?;
    args.one_way(attr.span()).map(Some)
}

/// Removes every `#[dsu::transform(…)]` from `attrs`: they say how values move between
/// layouts, and are no part of a layout.
pub fn remove_transform_attrs(attrs: &mut Vec<Attribute>) {
    attrs.retain(|a| !is_dsu_attr(a, TRANSFORM));
}
