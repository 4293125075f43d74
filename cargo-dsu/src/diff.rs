//! The compare step's interface, under the name the pipeline has always called it by; the step
//! itself is [`crate::compare`].

pub use crate::compare::{compare, root_appendix, CrateUnit, Insertion, ItemRef, Refusal, Report};
