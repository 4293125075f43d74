//! The documented exit codes of `cargo dsu`, one enum from which the help text is generated, and
//! the classification of an error into one of them.

use crate::{build, control_client, git, locate, patch};

/// What a run of `cargo dsu` ended with, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Other = 1,
    Usage = 2,
    Git = 3,
    Compile = 4,
    Refused = 5,
    NotUpdateable = 6,
    Io = 7,
    ProgramRefused = 8,
    Unreachable = 9,
    NothingToPatch = 10,
}

impl Exit {
    pub const ALL: [Exit; 11] = [
        Exit::Success,
        Exit::Other,
        Exit::Usage,
        Exit::Git,
        Exit::Compile,
        Exit::Refused,
        Exit::NotUpdateable,
        Exit::Io,
        Exit::ProgramRefused,
        Exit::Unreachable,
        Exit::NothingToPatch,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Other => "an unexpected failure",
            Exit::Usage => "bad command-line usage",
            Exit::Git => "git: not a repository, or an unknown revision",
            Exit::Compile => "the program or the patch does not compile (the compiler's errors are shown)",
            Exit::Refused => {
                "the patch is refused: a change it cannot apply safely, or a build it cannot \
                 apply to (the reason and what to do are shown)"
            }
            Exit::NotUpdateable => {
                "no updateable program: no binary, no dependency on dsu, or no `cargo dsu build` yet"
            }
            Exit::Io => "the target directory cannot be written",
            Exit::ProgramRefused => "the running program refused the request (its reason is shown)",
            Exit::Unreachable => "the running program's control socket cannot be reached",
            Exit::NothingToPatch => "nothing to patch: no change of behaviour between the revisions",
        }
    }

    /// Classifies an error by the marker types the library attaches.
    pub fn of(e: &anyhow::Error) -> Exit {
        // `downcast_ref` finds a marker whether it is the error, a cause, or attached as context.
        if e.downcast_ref::<git::NotARepository>().is_some() || e.downcast_ref::<git::UnknownRevision>().is_some() {
            Exit::Git
        } else if e.downcast_ref::<build::CompileFailed>().is_some() {
            Exit::Compile
        } else if e.downcast_ref::<patch::NothingToPatch>().is_some() {
            Exit::NothingToPatch
        } else if e.downcast_ref::<patch::Refused>().is_some() {
            Exit::Refused
        } else if e.downcast_ref::<locate::NotUpdateable>().is_some() {
            Exit::NotUpdateable
        } else if e.downcast_ref::<build::OutputNotWritable>().is_some() {
            Exit::Io
        } else if e.downcast_ref::<control_client::ProgramRefused>().is_some() {
            Exit::ProgramRefused
        } else if e.downcast_ref::<control_client::Unreachable>().is_some() {
            Exit::Unreachable
        } else {
            Exit::Other
        }
    }
}

/// The "Exit codes:" section of every command's help.
pub fn help() -> String {
    let mut s = String::from("Exit codes:");
    for e in Exit::ALL {
        s.push_str(&format!("\n  {:<2} {}", e.code(), e.meaning()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_listed_in_order() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, (0..Exit::ALL.len() as u8).collect::<Vec<_>>());
        assert!(help().contains("\n  10 nothing to patch"), "{}", help());
    }
}
