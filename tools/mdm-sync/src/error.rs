//! The CLI's one error type: what went wrong, and the exit code a script can act on.

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or a file given on it is unusable (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A setting is missing or invalid: the stack, an output, a secret (exit 2).
    #[error("{0}")]
    Config(String),
    /// An AWS or Reltio call failed (exit 1: the work may be partly done; a re-run is harmless).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 2,
            CliError::Failed(_) => 1,
        }
    }

    /// An AWS SDK error, with its context (never a payload).
    pub fn aws(what: &str, e: impl std::error::Error) -> CliError {
        CliError::Failed(format!(
            "{what}: {}",
            mdm_sync_adapters::http::error_chain(&e)
        ))
    }
}
