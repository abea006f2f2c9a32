//! tokenauth as a library: the modules behind the binary, public so that fuzz targets and
//! benchmarks can reach the parsers and validators directly.

pub mod access_token;
pub mod admin;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cmd;
pub mod credential;
pub mod grant;
pub mod invalid;
pub mod iprange;
pub mod oidc;
pub mod origin;
pub mod output;
pub mod pat;
pub mod public_key;
pub mod registry;
pub mod scope;
pub mod secret;
pub mod server;
pub mod service_key;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod text;
pub mod validate;
