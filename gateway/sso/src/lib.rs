//! Single sign-on with OpenID Connect providers, for the portal and the programs that log in through
//! it (the CLI and the reviewer, by the device flow).
//!
//! - `config`: one provider's settings ([`ProviderConfig`], [`GroupRule`]) and their checks;
//! - `mapping`: sans-io, verified claims to an [`Identity`] (username, role and groups by the group
//!   rules, allowed e-mail domains) or a [`MappingRefusal`] in words;
//! - `provider`: the network side through the `openidconnect` crate ([`Provider`]: discovery and JWKS
//!   with refetch on an unknown key, the code flow with PKCE, state and nonce, the device flow, the
//!   re-check of a signed-in account).
//!
//! No JWT, JWK or signature code is written here: every check is the crate's.

mod config;
mod device;
mod mapping;
mod provider;

pub use config::{GroupRule, ProviderConfig};
pub use device::DeviceLogin;
pub use mapping::{Identity, MappingRefusal, map_identity};
pub use provider::{CodeLogin, Provider, SignIn, SsoError, Tokens};
