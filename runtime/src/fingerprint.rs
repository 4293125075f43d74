//! Structural fingerprints of types, computed at compile time.
//!
//! A type's fingerprint covers what its values look like in memory: for a struct, its field
//! names, their order and their types' fingerprints, recursively, and its size and alignment;
//! for an enum, its variants likewise. Two builds that agree on a type's fingerprint agree on its
//! layout. `TypeId` is no substitute: it differs between a program and its patch, and it survives
//! a field changing from `u32` to `u64`.
//!
//! `#[dsu::updateable]` on a struct or enum implements [`Fingerprinted`]; this module implements
//! it for the std types state is usually made of.

use dsu_abi::Fingerprint;
use std::mem::{align_of, size_of};

/// A type with a structural fingerprint.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no dsu fingerprint",
    label = "this type has no dsu fingerprint",
    note = "mark the type `#[dsu::updateable]`, or use a type dsu knows (std collections, \
            integers, String, Option, Box, Arc, Mutex, …)"
)]
pub trait Fingerprinted {
    /// The type's structural fingerprint.
    const FINGERPRINT: Fingerprint;
}

/// `name` mixed with the size and alignment of `T`.
const fn leaf<T>(name: &str) -> Fingerprint {
    Fingerprint::of_text(name).with_layout(size_of::<T>(), align_of::<T>())
}

macro_rules! leaves {
    ($($t:ty),* $(,)?) => {
        $(impl Fingerprinted for $t {
            const FINGERPRINT: Fingerprint = leaf::<$t>(stringify!($t));
        })*
    };
}

leaves!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, char, (),
    String, std::time::Duration, std::time::Instant, std::time::SystemTime, std::path::PathBuf,
    std::sync::atomic::AtomicBool, std::sync::atomic::AtomicU8, std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32, std::sync::atomic::AtomicU64, std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8, std::sync::atomic::AtomicI16, std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64, std::sync::atomic::AtomicIsize,
);

impl Fingerprinted for str {
    const FINGERPRINT: Fingerprint = Fingerprint::of_text("str");
}

macro_rules! wrappers {
    ($($name:literal => $t:ident),* $(,)?) => {
        $(impl<T: Fingerprinted> Fingerprinted for $t<T> {
            const FINGERPRINT: Fingerprint = leaf::<$t<T>>($name).with(T::FINGERPRINT);
        })*
    };
}

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, BinaryHeap, HashSet, LinkedList, VecDeque};
use std::sync::{Mutex, RwLock};

wrappers!(
    "Vec" => Vec, "VecDeque" => VecDeque, "LinkedList" => LinkedList, "BinaryHeap" => BinaryHeap,
    "BTreeSet" => BTreeSet, "HashSet" => HashSet, "Option" => Option, "Mutex" => Mutex,
    "RwLock" => RwLock, "Cell" => Cell, "RefCell" => RefCell,
);

impl<T: Fingerprinted + ?Sized> Fingerprinted for Box<T> {
    const FINGERPRINT: Fingerprint = leaf::<Box<T>>("Box").with(T::FINGERPRINT);
}

impl<T: Fingerprinted + ?Sized> Fingerprinted for std::sync::Arc<T> {
    const FINGERPRINT: Fingerprint = leaf::<std::sync::Arc<T>>("Arc").with(T::FINGERPRINT);
}

impl<T: Fingerprinted + ?Sized> Fingerprinted for std::rc::Rc<T> {
    const FINGERPRINT: Fingerprint = leaf::<std::rc::Rc<T>>("Rc").with(T::FINGERPRINT);
}

impl<T: Fingerprinted, E: Fingerprinted> Fingerprinted for Result<T, E> {
    const FINGERPRINT: Fingerprint =
        leaf::<Result<T, E>>("Result").with(T::FINGERPRINT).with(E::FINGERPRINT);
}

impl<K: Fingerprinted, V: Fingerprinted> Fingerprinted for std::collections::HashMap<K, V> {
    const FINGERPRINT: Fingerprint =
        leaf::<Self>("HashMap").with(K::FINGERPRINT).with(V::FINGERPRINT);
}

impl<K: Fingerprinted, V: Fingerprinted> Fingerprinted for std::collections::BTreeMap<K, V> {
    const FINGERPRINT: Fingerprint =
        leaf::<Self>("BTreeMap").with(K::FINGERPRINT).with(V::FINGERPRINT);
}

impl<T: Fingerprinted, const N: usize> Fingerprinted for [T; N] {
    const FINGERPRINT: Fingerprint = leaf::<[T; N]>("array").with(T::FINGERPRINT);
}

impl<T: Fingerprinted> Fingerprinted for [T] {
    const FINGERPRINT: Fingerprint = Fingerprint::of_text("slice").with(T::FINGERPRINT);
}

macro_rules! tuples {
    ($(($($t:ident),+)),* $(,)?) => {
        $(impl<$($t: Fingerprinted),+> Fingerprinted for ($($t,)+) {
            const FINGERPRINT: Fingerprint = leaf::<($($t,)+)>("tuple")$(.with($t::FINGERPRINT))+;
        })*
    };
}

tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F),
    (A, B, C, D, E, F, G),
    (A, B, C, D, E, F, G, H),
);

impl<T: Fingerprinted + ?Sized> Fingerprinted for &T {
    const FINGERPRINT: Fingerprint = leaf::<&T>("&").with(T::FINGERPRINT);
}

impl<T: Fingerprinted + ?Sized> Fingerprinted for &mut T {
    const FINGERPRINT: Fingerprint = leaf::<&mut T>("&mut").with(T::FINGERPRINT);
}

/// `Probe::<T>::FP`: `T`'s structural fingerprint when it has one, and zero otherwise, in const
/// context. The inherent constant applies when its bound holds; otherwise path resolution falls
/// back to [`ProbeFallback`]'s (which must be in scope). Signature fingerprints use it, so a
/// layout change of an updateable type in a signature changes the signature's fingerprint.
pub struct Probe<T: ?Sized>(std::marker::PhantomData<T>);

/// The fallback of [`Probe`]: no structural fingerprint.
pub trait ProbeFallback {
    const FP: Fingerprint = Fingerprint([0; 16]);
}

impl<T: ?Sized> ProbeFallback for Probe<T> {}

impl<T: Fingerprinted + ?Sized> Probe<T> {
    pub const FP: Fingerprint = T::FINGERPRINT;
}

/// The fingerprint of a field of an updateable type (`#[dsu::updateable]` computes it): `own`,
/// the field type's fingerprint, when it has one (not zero, see [`Probe`]). Otherwise the type is
/// one dsu does not know (a channel, a handle, a type of another crate), which no patch changes
/// (dependencies cannot change in one), so it is named by `name` (its last path segment), its
/// size and alignment, and `inner`, the fingerprints of the types written inside it: a
/// `Sender<Event>` changes when `Event` does.
pub const fn field_fingerprint(
    own: Fingerprint,
    name: &str,
    size: usize,
    align: usize,
    inner: &[Fingerprint],
) -> Fingerprint {
    if !is_zero(&own) {
        return own;
    }
    let mut fp = Fingerprint::of_text("other").with(Fingerprint::of_text(name)).with_layout(size, align);
    let mut i = 0;
    while i < inner.len() {
        fp = fp.with(inner[i]);
        i += 1;
    }
    fp
}

const fn is_zero(fp: &Fingerprint) -> bool {
    let mut i = 0;
    while i < fp.0.len() {
        if fp.0[i] != 0 {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(feature = "bytes")]
impl Fingerprinted for bytes::Bytes {
    const FINGERPRINT: Fingerprint = leaf::<bytes::Bytes>("bytes::Bytes");
}

#[cfg(feature = "bytes")]
impl Fingerprinted for bytes::BytesMut {
    const FINGERPRINT: Fingerprint = leaf::<bytes::BytesMut>("bytes::BytesMut");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn probe_sees_fingerprints_where_there_are_some() {
        struct Opaque;
        assert_eq!(Probe::<u32>::FP, u32::FINGERPRINT);
        assert_eq!(Probe::<&str>::FP, <&str>::FINGERPRINT);
        assert_eq!(Probe::<Opaque>::FP, Fingerprint([0; 16]));
    }

    #[test]
    fn containers_see_their_elements() {
        assert_ne!(<Vec<u32>>::FINGERPRINT, <Vec<u64>>::FINGERPRINT);
        assert_ne!(<Vec<u32>>::FINGERPRINT, <VecDeque<u32>>::FINGERPRINT);
        assert_ne!(<HashMap<String, u32>>::FINGERPRINT, <HashMap<u32, String>>::FINGERPRINT);
        assert_ne!(<Option<Box<u8>>>::FINGERPRINT, <Option<Box<i8>>>::FINGERPRINT);
        assert_ne!(<(u8, u16)>::FINGERPRINT, <(u16, u8)>::FINGERPRINT);
        assert_ne!(<[u8; 4]>::FINGERPRINT, <[u8; 8]>::FINGERPRINT);
        assert_eq!(<Mutex<Vec<String>>>::FINGERPRINT, <Mutex<Vec<String>>>::FINGERPRINT);
    }
}
