//! Types that hold secrets: `Debug` prints `***`, comparisons are constant-time.

use subtle::ConstantTimeEq;

/// Secret bytes (a user's signing secret).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// 256 fresh random bits.
    pub fn generate(rng: &mut impl rand::RngCore) -> Secret {
        let mut bytes = vec![0u8; 32];
        rng.fill_bytes(&mut bytes);
        Secret(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A secret string (a private key PEM, an access token).
#[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: String) -> SecretString {
        SecretString(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        assert_eq!(format!("{:?}", Secret::new(b"hunter2".to_vec())), "***");
        assert_eq!(format!("{:?}", SecretString::new("hunter2".into())), "***");
    }

    #[test]
    fn equality_compares_contents() {
        assert_eq!(Secret::new(vec![1, 2]), Secret::new(vec![1, 2]));
        assert_ne!(Secret::new(vec![1, 2]), Secret::new(vec![1, 3]));
        assert_ne!(Secret::new(vec![1, 2]), Secret::new(vec![1, 2, 3]));
    }
}
