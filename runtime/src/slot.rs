//! Slots: one atomic code pointer per updateable function.
//!
//! Every copy of the updateable crate (the host and each patch) has its own slot static per
//! function; the runtime knows all copies and stores a new implementation into every one of them
//! when a patch is applied, so code inside an earlier patch sees later patches too.

use crate::sync::{AtomicPtr, Ordering};

/// An atomic pointer to the current implementation of one function.
#[repr(transparent)]
pub struct Slot(AtomicPtr<()>);

impl Slot {
    /// A slot holding `imp`, a function pointer cast to `*mut ()`.
    pub const fn new(imp: *mut ()) -> Self {
        Slot(AtomicPtr::new(imp))
    }

    /// The current implementation, as the function pointer type `F`.
    ///
    /// An acquire load: on x86-64 it is the same instruction as a relaxed one, and on weaker
    /// machines it orders the reads of the patch's data after the pointer's publication.
    ///
    /// # Safety
    /// `F` must be the exact function pointer type of every implementation ever stored in this
    /// slot. The macros guarantee it: they give the slot its type, and the runtime stores only
    /// implementations whose signature fingerprint equals the slot's.
    #[inline(always)]
    pub unsafe fn get<F: Copy>(&self) -> F {
        const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<*mut ()>()) };
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: F is a function pointer type of pointer size (asserted above), and the caller
        // guarantees that `p` is a valid function of type F.
        unsafe { core::mem::transmute_copy::<*mut (), F>(&p) }
    }
}
