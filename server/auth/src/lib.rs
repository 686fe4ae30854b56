//! etcd 3.4's auth store (issue 7) as a pure state machine: users, roles, key-range
//! permissions, the auth revision and simple tokens, with etcd's rules and errors. No I/O and
//! no clock: the server passes in the raft index and the time. docs/auth.md describes the
//! model, what was checked against etcd 3.4.23, and how the server plugs it in.

mod error;
mod go_sort;
mod interval_tree;
pub mod range_perm;
mod request;
pub mod simple_token;
pub mod snapshot;
mod state;
mod store;
mod view;

pub use error::{AuthError, GrpcCode};
pub use request::{
    AuthRequest, AuthResponse, BCRYPT_COST_DEFAULT, PERM_READ, PERM_READWRITE, PERM_WRITE,
    Password, Permission, hash_password,
};
pub use simple_token::{TOKEN_TTL_DEFAULT, gen_token_prefix, token_index};
pub use state::{AuthState, ROOT_ROLE, ROOT_USER, Role, User};
pub use store::{ApplyContext, AuthConfig, AuthStore, PasswordCheck};
pub use view::{AuthInfo, AuthView, Perm};
