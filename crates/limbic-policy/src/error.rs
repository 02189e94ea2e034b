//! Error type for loading, validating and watching policies.

use std::path::PathBuf;

/// Everything that can go wrong while turning policy text into a [`crate::Policy`]
/// or while watching a policy file.
///
/// Every variant names where the policy came from (`origin`: a file path or a
/// `<builtin:...>` / `<string>` marker) so an operator can find the broken file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("cannot read policy file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The text is not valid TOML, or does not have the shape of a policy
    /// (unknown key, wrong type, unknown decision name...). `location` says which
    /// class/rule the problem is in when that can be determined.
    #[error("policy {origin}: {location}: {message}")]
    Syntax {
        origin: String,
        location: String,
        message: String,
    },

    /// The TOML is well formed but the policy is inconsistent (bad regex, unknown
    /// class in a rule, duplicate id, missing reroute kind...).
    #[error("policy {origin}: {location}: {problem}")]
    Invalid {
        origin: String,
        location: String,
        problem: String,
    },

    /// No built-in policy has this name.
    #[error("unknown built-in policy `{name}` (available: {available})")]
    UnknownBuiltin { name: String, available: String },

    /// The file watcher could not be started.
    #[error("cannot watch policy file {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

impl PolicyError {
    pub(crate) fn invalid(
        origin: &str,
        location: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        PolicyError::Invalid {
            origin: origin.to_owned(),
            location: location.into(),
            problem: problem.into(),
        }
    }
}
