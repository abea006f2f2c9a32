//! Personal access tokens: `tapat_`, 43 random base62 characters (256 bits), and a
//! 6-character CRC32 checksum, as GitHub's tokens are built: secret scanners recognise them
//! and a mistyped one is refused before any lookup. Only a SHA-256 hash is stored.

use rand::Rng;
use sha2::{Digest, Sha256};

pub use crate::invalid::FormatError;
use crate::invalid::Invalid;
use crate::iprange::ClientAddr;
use crate::registry::Credentials;
use crate::scope::Scope;
use crate::secret::SecretString;

pub const PREFIX: &str = "tapat_";
/// 43 characters of 62 carry 256.07 bits.
const RANDOM_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
pub const LEN: usize = PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A fresh token.
pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> SecretString {
    let random: String = (0..RANDOM_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    let mut token = format!("{PREFIX}{random}");
    token.push_str(&checksum(&token));
    SecretString::new(token)
}

/// The checksum of `tapat_<random>`, as 6 base62 digits (62⁶ > 2³²).
fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut digits = [b'0'; CHECKSUM_LEN];
    for d in digits.iter_mut().rev() {
        *d = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// Whether a bearer value is meant as a personal access token (rather than a JWT).
pub fn is_pat(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// Checks length, alphabet and checksum.
pub fn check_format(token: &str) -> Result<(), FormatError> {
    if token.len() != LEN || !token.is_char_boundary(PREFIX.len()) {
        return Err(FormatError::Length);
    }
    let (body, sum) = token.split_at(LEN - CHECKSUM_LEN);
    if !token[PREFIX.len()..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric())
    {
        return Err(FormatError::Alphabet);
    }
    if checksum(body) != sum {
        return Err(FormatError::Checksum);
    }
    Ok(())
}

/// What the store keeps instead of the token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token's last four characters, kept to tell tokens apart in listings.
pub fn last4(token: &str) -> String {
    token[token.len().saturating_sub(4)..].to_owned()
}

/// A personal access token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct PatUse {
    pub id: String,
    pub user: String,
    pub scope: Scope,
    pub created: i64,
    pub expires: Option<i64>,
    /// What the registry knows it by.
    pub hash: [u8; 32],
    /// The browser origins it lists.
    pub origins: Vec<String>,
}

/// Checks a personal access token against what `credentials` say now, by the rules access
/// tokens follow: well formed, known, not revoked, not ended by a secret rotation, not
/// expired, its user enabled, `addr` inside its IP ranges, enough scope.
pub fn validate(
    token: &str,
    credentials: &dyn Credentials,
    now: i64,
    addr: Option<ClientAddr>,
    required: Option<Scope>,
) -> Result<PatUse, Invalid> {
    check_format(token).map_err(Invalid::MalformedPat)?;
    let hash = hash(token);
    let entry = credentials.pat(&hash).ok_or(Invalid::UnknownPat)?;
    let pat = &entry.pat;
    let refused = |why| Invalid::Pat {
        id: pat.id.clone(),
        user: pat.user.clone(),
        why: Box::new(why),
    };
    if pat.revoked.is_some() {
        return Err(refused(Invalid::PatRevoked));
    }
    let owner = credentials.user(&pat.user);
    if owner.as_ref().is_none_or(|u| u.epoch != pat.secret_epoch) {
        return Err(refused(Invalid::PatRotated));
    }
    if pat.expires.is_some_and(|e| e <= now) {
        return Err(refused(Invalid::Expired));
    }
    if owner.is_none_or(|u| u.user.disabled) {
        return Err(refused(Invalid::UserDisabled(pat.user.clone())));
    }
    if let Some(addr) = addr
        && !addr.allowed_by(&pat.ip_ranges)
    {
        return Err(refused(match addr {
            ClientAddr::Ip(ip) => Invalid::AddressNotAllowed(ip),
            ClientAddr::Unknown => Invalid::AddressUnknown,
        }));
    }
    if let Some(required) = required
        && !pat.scope.covers(required)
    {
        return Err(refused(Invalid::InsufficientScope(required)));
    }
    Ok(PatUse {
        id: pat.id.clone(),
        user: pat.user.clone(),
        scope: pat.scope,
        created: pat.created,
        expires: pat.expires,
        hash,
        origins: pat.origins.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tokens_have_the_prefix_256_random_bits_and_a_checksum() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = generate(&mut rng);
        let b = generate(&mut rng);
        assert_ne!(a.expose(), b.expose());
        for t in [a.expose(), b.expose()] {
            assert!(t.starts_with("tapat_") && t.len() == LEN, "{t}");
            assert!(t[6..].bytes().all(|c| c.is_ascii_alphanumeric()), "{t}");
            assert_eq!(check_format(t), Ok(()));
            assert!(is_pat(t));
        }
        assert_eq!(LEN, 55);
        assert!(FormatError::Length.to_string().contains(&LEN.to_string()));
    }

    #[test]
    fn typos_are_caught_by_the_checksum() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let token = generate(&mut rng).expose().to_owned();
        // Every single-character change in the random part or the checksum.
        for i in PREFIX.len()..LEN {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
            let typo = String::from_utf8(bytes).unwrap();
            assert_eq!(check_format(&typo), Err(FormatError::Checksum), "{typo}");
        }
        // Two neighbours swapped.
        let mut swapped = token.clone().into_bytes();
        let i = (10..LEN - 1)
            .find(|&i| swapped[i] != swapped[i + 1])
            .unwrap();
        swapped.swap(i, i + 1);
        assert_eq!(
            check_format(std::str::from_utf8(&swapped).unwrap()),
            Err(FormatError::Checksum)
        );
        assert_eq!(check_format(&token[..LEN - 1]), Err(FormatError::Length));
        assert_eq!(
            check_format(&format!("{}-{}", &token[..20], &token[21..])),
            Err(FormatError::Alphabet)
        );
        assert_eq!(check_format("tapat_é"), Err(FormatError::Length));
    }

    /// Vectors computed apart from this code (Python's zlib.crc32, then base 62).
    #[test]
    fn the_checksum_is_six_base62_digits_of_crc32() {
        assert_eq!(checksum(""), "000000");
        assert_eq!(checksum("tapat_"), "0QkDHJ");
        assert_eq!(checksum(&format!("tapat_{}", "A".repeat(43))), "0ZRyL6");
        let token = format!("tapat_{}0ZRyL6", "A".repeat(43));
        assert_eq!(check_format(&token), Ok(()));
        assert_eq!(last4(&token), "RyL6");
    }
}
