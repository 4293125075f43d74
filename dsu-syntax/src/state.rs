//! State cells: `static NAME: dsu::State<T> = dsu::State::new("name", init);`. The value lives
//! in the runtime under `"name"`, so it survives updates; a patch that changes `T` must
//! transform it.

use syn::{Expr, GenericArgument, ItemStatic, Lit, PathArguments, Type};

/// What a state cell's declaration says.
#[derive(Debug, Clone, Copy)]
pub struct StateCell<'a> {
    /// `T` of `State<T>`.
    pub value_type: &'a Type,
    /// The cell's name, when the first argument of `State::new` is a string literal (a name
    /// made any other way is not known before run time).
    pub name: Option<&'a syn::LitStr>,
}

/// The state cell a static declares, if its type is `State<T>` (`dsu::State<T>` or a path
/// ending in `State`).
pub fn state_cell(item: &ItemStatic) -> Option<StateCell<'_>> {
    Some(StateCell { value_type: state_value_type(&item.ty)?, name: literal_name(&item.expr) })
}

/// `T` of `State<T>`.
fn state_value_type(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "State" {
        return None;
    }
    let PathArguments::AngleBracketed(a) = &last.arguments else { return None };
    match a.args.first()? {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

/// The first argument of `State::new("name", …)`, when it is a string literal.
fn literal_name(expr: &Expr) -> Option<&syn::LitStr> {
    let Expr::Call(call) = expr else { return None };
    match call.args.first()? {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Some(s),
        _ => None,
    }
}
