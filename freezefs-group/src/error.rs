//! What can go wrong in a group command or agent, by kind; each says in
//! words what happened, as the message the command prints.

use crate::etcd::Failure;

#[derive(Debug, thiserror::Error)]
pub(crate) enum GroupError {
    /// A request to etcd failed: refused, not answered, or etcd is full.
    #[error("{}", .0.text)]
    Etcd(Failure),
    /// etcd could not be reached, or the connection could not be set up.
    #[error("{0}")]
    Connect(String),
    /// A file an option names (a certificate, a key, a password) cannot be
    /// read.
    #[error("{0}")]
    File(String),
    /// The group refuses the operation: a broken or foreign epoch, a member
    /// without a registration, a barrier that failed, a lease lost.
    #[error("{0}")]
    Refused(String),
    /// A step on this host failed: its own freeze, a signal handler, the
    /// command.
    #[error("{0}")]
    Local(String),
}

impl From<Failure> for GroupError {
    fn from(failure: Failure) -> GroupError {
        GroupError::Etcd(failure)
    }
}

impl GroupError {
    /// A local step's error, in its own words.
    pub(crate) fn local(error: impl std::fmt::Display) -> GroupError {
        GroupError::Local(error.to_string())
    }
}

/// What a group operation returns.
pub(crate) type Fallible<T> = Result<T, GroupError>;
