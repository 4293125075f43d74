//! Procedural macros of dsu. Users reach them as `#[dsu::updateable]` and `#[dsu::update_point]`;
//! the generated code reaches the runtime only through `::dsu::__private`.
//!
//! Each macro is parsed (`ast.rs`), validated (`valid.rs`) and expanded (`expand.rs`) by
//! `proc_macro2` functions, so tests call them directly. dsu's syntax itself (which attributes
//! are dsu's, their arguments, which functions can be updateable, stable paths) is read by
//! `dsu-syntax`, which `cargo dsu patch` reads it with too.

mod ast;
mod expand;
mod transform;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Makes a function, or every method of an `impl` block, replaceable by a patch.
///
/// Each function becomes a *slot* (an atomic code pointer) plus its original body; a call loads
/// the slot and jumps. See the `dsu` crate documentation.
///
/// A function the rule refuses (generic, `impl Trait`, `const fn`, …; see
/// `dsu_syntax::can_be_updateable`) is a compile error; a method of an `impl` block that it
/// refuses stays a plain method, with a warning.
/// `#[tracing::instrument]` on the function goes on its original body.
#[proc_macro_attribute]
pub fn updateable(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::updateable(args.into(), input.into()).into()
}

/// Makes entering the function an update point: a pending patch is applied here.
#[proc_macro_attribute]
pub fn update_point(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::update_point(args.into(), input.into()).into()
}

/// Marks a state transformer: `#[dsu::transform(from = dsu_old::Entry)] fn up(old: &dsu_old::Entry)
/// -> Entry`, or, on a struct, `#[dsu::transform(from = dsu_old::Entry, default)]` to have
/// `cargo dsu patch` derive it. `dsu_old` holds the old revision's definitions, in patches only.
///
/// Its inverse, which lets the patch be rolled back with its state:
/// `#[dsu::transform(to = dsu_old::Entry)] fn down(new: &Entry) -> dsu_old::Entry`, or, on a
/// struct, `#[dsu::transform(to = dsu_old::Entry, default)]`. Both directions derived at once:
/// `#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry, default)]`. Either function may
/// return `Result<_, E>` with `E: Display`.
#[proc_macro_attribute]
pub fn transform(args: TokenStream, input: TokenStream) -> TokenStream {
    transform::transform(args.into(), input.into()).into()
}
