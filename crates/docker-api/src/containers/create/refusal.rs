//! Why a create is refused: every option the body sets that vic does not apply, collected so
//! that one try names them all, or a value dockerd refuses too. The checks that find them
//! (`policy.rs`, `guest.rs`, `log_opts.rs`) all report here.

use crate::ApiError;

/// One option the user set that vic does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} is not supported by vic: {why}")]
pub struct Unsupported {
    /// The `docker` flag as the user typed it (or the API field when no flag sets it).
    pub flag: String,
    pub why: String,
}

/// Why a create is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Options vic does not apply: all those the body sets, so that one try names them all.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unsupported(Vec<Unsupported>),
    /// A value dockerd refuses too, in dockerd's words.
    #[error("{0}")]
    Invalid(String),
}

/// A refused create is the client's mistake: Docker's 400.
impl From<Refused> for ApiError {
    fn from(e: Refused) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// Collects the refusals of one body.
#[derive(Default)]
pub(super) struct Refusals(Vec<Unsupported>);

impl Refusals {
    /// Refuses `flag` for `why` when `set`.
    pub(super) fn check(&mut self, set: bool, flag: impl Into<String>, why: &str) {
        if set {
            self.0.push(Unsupported {
                flag: flag.into(),
                why: why.to_string(),
            });
        }
    }

    /// A mode string: accepted when empty or one of `ok`.
    pub(super) fn mode(&mut self, v: &Option<String>, ok: &[&str], flag: &str, why: &str) {
        let v = v.as_deref().unwrap_or_default();
        self.check(
            !v.is_empty() && !ok.contains(&v),
            format!("{flag} {v}"),
            why,
        );
    }

    /// Adds refusals found elsewhere.
    pub(super) fn extend(&mut self, more: impl IntoIterator<Item = Unsupported>) {
        self.0.extend(more);
    }

    /// Nothing, or every refusal collected.
    pub(super) fn finish(self) -> Result<(), Refused> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err(Refused::Unsupported(self.0)),
        }
    }
}
