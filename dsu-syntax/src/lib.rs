//! dsu's syntax, read in one place: the macros (`dsu-macros`) and the patch builder
//! (`cargo-dsu`) must agree on what a program says to dsu, so both read it through this crate,
//! the way serde's derive and its tooling share `serde_derive_internals`.
//!
//! Everything here takes syn structures and returns plain data, or a [`syn::Error`] pointing at
//! the offending tokens; nothing searches token text.
//!
//! * [`attr`]: which attributes are dsu's ([`is_dsu_attr`]: the one rule), what
//!   `#[dsu::updateable(…)]` and `#[dsu::transform(…)]` say ([`UpdateableArgs`],
//!   [`TransformArgs`], [`Transformer`]);
//! * [`rule`]: which functions can be updateable, and so which methods of an updateable `impl`
//!   get a slot ([`can_be_updateable`], with the [`Reason`] for a refusal); how an `async fn`'s
//!   elided lifetimes are named in its stored type ([`AsyncLifetimes`]);
//! * [`path`]: the stable path a function is known by at run time (`module::name`,
//!   `module::Type::name`, `module::<Type as Trait>::name`);
//! * [`state`]: `dsu::State` cells, their value type and name;
//! * [`behaviour`]: an item's tokens without its documentation, for telling whether two
//!   revisions of it behave alike;
//! * [`cfg`]: which items one crate's build compiles ([`CfgSet`]).

pub mod attr;
pub mod behaviour;
pub mod cfg;
pub mod path;
pub mod rule;
pub mod state;

#[cfg(test)]
mod tests;

pub use attr::{
    fn_transformer, is_dsu_attr, is_transform, is_updateable, remove_transform_attrs, transform_attrs,
    Direction, OldType, TransformArgs, Transformer, UpdateableArgs,
};
pub use cfg::CfgSet;
pub use behaviour::{behaviour_tokens, is_doc, strip_docs, StripDocs};
pub use path::{local_path, normalize_token_text, stable_path, tokens_text, FnOwner};
pub use rule::{can_be_updateable, AsyncLifetimes, Place, Reason, Refused, Why};
pub use state::{state_cell, StateCell};
