//! Who is calling: the uid of a verified Firebase ID token, and whether the configuration names
//! it a platform admin (`auth.admin_uids`). Account admins are rows of `account_admin`, checked
//! by each business call against the account it touches.

/// A signed-in caller. Made only from a verified token (or by tests of the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The Firebase uid (the token's `sub`).
    pub uid: String,
    /// Named in `auth.admin_uids`: creates accounts, names their admins, administers them all.
    pub platform_admin: bool,
}
