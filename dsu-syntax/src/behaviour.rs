//! What an item does, as opposed to how it is documented or formatted.
//!
//! Two revisions of an item behave alike when their tokens are the same once documentation and
//! formatting are set aside:
//! * token text has no comments, spaces or line breaks;
//! * doc comments (`///`, `//!`, `/** */`) are `#[doc = "…"]` attributes, removed here from every
//!   syn node that carries attributes, along with written `#[doc = …]` and `#[doc(…)]` (tokens
//!   inside a macro call are not syn nodes and keep theirs);
//! * the commas rustfmt adds or removes carry no meaning: a comma closing a bracketed, braced or
//!   parenthesised list (except the one of a one-element tuple, `(x,)`), and the comma after a
//!   match arm whose body is a block.

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::ToTokens;
use syn::visit_mut::VisitMut;
use syn::Expr;

/// Whether `attr` documents its item (`///`, `//!`, `/** */`, `#[doc = …]`, `#[doc(…)]`).
pub fn is_doc(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("doc")
}

/// Removes the documentation attributes of every node it visits, and the optional commas of
/// match arms.
struct DocStripper;

/// For each node kind with attributes: drop its doc attributes, then visit its children.
macro_rules! strip_attrs_of {
    ($($visit:ident: $node:ty),* $(,)?) => {
        impl VisitMut for DocStripper {
            $(
                fn $visit(&mut self, node: &mut $node) {
                    node.attrs.retain(|a| !is_doc(a));
                    syn::visit_mut::$visit(self, node);
                }
            )*

            fn visit_arm_mut(&mut self, arm: &mut syn::Arm) {
                arm.attrs.retain(|a| !is_doc(a));
                if ends_in_block(&arm.body) {
                    arm.comma = None;
                }
                syn::visit_mut::visit_arm_mut(self, arm);
            }
        }
    };
}

/// Whether a match arm with this body may go without a comma: its body ends in a block.
fn ends_in_block(body: &Expr) -> bool {
    matches!(
        body,
        Expr::Block(_)
            | Expr::Unsafe(_)
            | Expr::If(_)
            | Expr::Match(_)
            | Expr::While(_)
            | Expr::Loop(_)
            | Expr::ForLoop(_)
            | Expr::TryBlock(_)
            | Expr::Const(_)
    )
}

strip_attrs_of! {
    visit_file_mut: syn::File,
    visit_item_const_mut: syn::ItemConst, visit_item_enum_mut: syn::ItemEnum,
    visit_item_extern_crate_mut: syn::ItemExternCrate, visit_item_fn_mut: syn::ItemFn,
    visit_item_foreign_mod_mut: syn::ItemForeignMod, visit_item_impl_mut: syn::ItemImpl,
    visit_item_macro_mut: syn::ItemMacro, visit_item_mod_mut: syn::ItemMod,
    visit_item_static_mut: syn::ItemStatic, visit_item_struct_mut: syn::ItemStruct,
    visit_item_trait_mut: syn::ItemTrait, visit_item_trait_alias_mut: syn::ItemTraitAlias,
    visit_item_type_mut: syn::ItemType, visit_item_union_mut: syn::ItemUnion,
    visit_item_use_mut: syn::ItemUse,
    visit_impl_item_const_mut: syn::ImplItemConst, visit_impl_item_fn_mut: syn::ImplItemFn,
    visit_impl_item_macro_mut: syn::ImplItemMacro, visit_impl_item_type_mut: syn::ImplItemType,
    visit_trait_item_const_mut: syn::TraitItemConst, visit_trait_item_fn_mut: syn::TraitItemFn,
    visit_trait_item_macro_mut: syn::TraitItemMacro, visit_trait_item_type_mut: syn::TraitItemType,
    visit_foreign_item_fn_mut: syn::ForeignItemFn, visit_foreign_item_macro_mut: syn::ForeignItemMacro,
    visit_foreign_item_static_mut: syn::ForeignItemStatic, visit_foreign_item_type_mut: syn::ForeignItemType,
    visit_field_mut: syn::Field, visit_variant_mut: syn::Variant,
    visit_const_param_mut: syn::ConstParam, visit_lifetime_param_mut: syn::LifetimeParam,
    visit_type_param_mut: syn::TypeParam,
    visit_receiver_mut: syn::Receiver, visit_bare_fn_arg_mut: syn::BareFnArg,
    visit_bare_variadic_mut: syn::BareVariadic, visit_variadic_mut: syn::Variadic,
    visit_local_mut: syn::Local, visit_stmt_macro_mut: syn::StmtMacro,
    visit_field_pat_mut: syn::FieldPat, visit_field_value_mut: syn::FieldValue,
    visit_pat_ident_mut: syn::PatIdent, visit_pat_or_mut: syn::PatOr, visit_pat_paren_mut: syn::PatParen,
    visit_pat_reference_mut: syn::PatReference, visit_pat_rest_mut: syn::PatRest,
    visit_pat_slice_mut: syn::PatSlice, visit_pat_struct_mut: syn::PatStruct,
    visit_pat_tuple_mut: syn::PatTuple, visit_pat_tuple_struct_mut: syn::PatTupleStruct,
    visit_pat_type_mut: syn::PatType, visit_pat_wild_mut: syn::PatWild,
    visit_expr_array_mut: syn::ExprArray, visit_expr_assign_mut: syn::ExprAssign,
    visit_expr_async_mut: syn::ExprAsync, visit_expr_await_mut: syn::ExprAwait,
    visit_expr_binary_mut: syn::ExprBinary, visit_expr_block_mut: syn::ExprBlock,
    visit_expr_break_mut: syn::ExprBreak, visit_expr_call_mut: syn::ExprCall,
    visit_expr_cast_mut: syn::ExprCast, visit_expr_closure_mut: syn::ExprClosure,
    visit_expr_const_mut: syn::ExprConst, visit_expr_continue_mut: syn::ExprContinue,
    visit_expr_field_mut: syn::ExprField, visit_expr_for_loop_mut: syn::ExprForLoop,
    visit_expr_group_mut: syn::ExprGroup, visit_expr_if_mut: syn::ExprIf,
    visit_expr_index_mut: syn::ExprIndex, visit_expr_infer_mut: syn::ExprInfer,
    visit_expr_let_mut: syn::ExprLet, visit_expr_lit_mut: syn::ExprLit,
    visit_expr_loop_mut: syn::ExprLoop, visit_expr_macro_mut: syn::ExprMacro,
    visit_expr_match_mut: syn::ExprMatch, visit_expr_method_call_mut: syn::ExprMethodCall,
    visit_expr_paren_mut: syn::ExprParen, visit_expr_path_mut: syn::ExprPath,
    visit_expr_range_mut: syn::ExprRange, visit_expr_raw_addr_mut: syn::ExprRawAddr,
    visit_expr_reference_mut: syn::ExprReference, visit_expr_repeat_mut: syn::ExprRepeat,
    visit_expr_return_mut: syn::ExprReturn, visit_expr_struct_mut: syn::ExprStruct,
    visit_expr_try_mut: syn::ExprTry, visit_expr_try_block_mut: syn::ExprTryBlock,
    visit_expr_tuple_mut: syn::ExprTuple, visit_expr_unary_mut: syn::ExprUnary,
    visit_expr_unsafe_mut: syn::ExprUnsafe, visit_expr_while_mut: syn::ExprWhile,
    visit_expr_yield_mut: syn::ExprYield,
}

/// A syn node whose documentation can be removed.
pub trait StripDocs: ToTokens + Clone {
    #[doc(hidden)]
    fn strip_with(&mut self, stripper: &mut impl VisitMut);
}

macro_rules! strip_docs_for {
    ($($node:ty => $visit:ident),* $(,)?) => {
        $(
            impl StripDocs for $node {
                fn strip_with(&mut self, stripper: &mut impl VisitMut) {
                    stripper.$visit(self);
                }
            }
        )*
    };
}

strip_docs_for! {
    syn::File => visit_file_mut,
    syn::Item => visit_item_mut,
    syn::ItemFn => visit_item_fn_mut,
    syn::ItemStruct => visit_item_struct_mut,
    syn::ItemEnum => visit_item_enum_mut,
    syn::ItemUnion => visit_item_union_mut,
    syn::ItemStatic => visit_item_static_mut,
    syn::ItemMacro => visit_item_macro_mut,
    syn::ImplItem => visit_impl_item_mut,
    syn::ImplItemFn => visit_impl_item_fn_mut,
    syn::Signature => visit_signature_mut,
    syn::Type => visit_type_mut,
    syn::Fields => visit_fields_mut,
}

/// Removes every documentation attribute of `node` and of the nodes inside it.
pub fn strip_docs(node: &mut impl StripDocs) {
    node.strip_with(&mut DocStripper);
}

/// The token text of `node` without its documentation: equal for two revisions that differ only
/// in comments, doc comments, doc attributes and formatting.
pub fn behaviour_tokens(node: &impl StripDocs) -> String {
    let mut node = node.clone();
    strip_docs(&mut node);
    without_closing_commas(node.to_token_stream()).to_string()
}

/// `tokens` without the commas that close a delimited group, except the one of a one-element
/// tuple (`(x,)`, the only comma of its parentheses).
fn without_closing_commas(tokens: TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Group(g) => {
                let mut inner: Vec<TokenTree> = without_closing_commas(g.stream()).into_iter().collect();
                drop_closing_comma(g.delimiter(), &mut inner);
                let mut group = Group::new(g.delimiter(), inner.into_iter().collect());
                group.set_span(g.span());
                TokenTree::Group(group)
            }
            other => other,
        })
        .collect()
}

/// Drops the last token tree of a group's contents when it is a comma that carries no meaning.
fn drop_closing_comma(delimiter: Delimiter, trees: &mut Vec<TokenTree>) {
    let is_comma = |t: &TokenTree| matches!(t, TokenTree::Punct(p) if p.as_char() == ',');
    if !trees.last().is_some_and(is_comma) {
        return;
    }
    let one_element_tuple =
        delimiter == Delimiter::Parenthesis && trees.iter().filter(|t| is_comma(t)).count() == 1;
    let delimited = matches!(delimiter, Delimiter::Parenthesis | Delimiter::Brace | Delimiter::Bracket);
    if delimited && !one_element_tuple {
        trees.pop();
    }
}
