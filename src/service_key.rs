//! Service keys: key generation (RS256, ES256, EdDSA), and the key files clients keep:
//! tokenauth's (ftw.tokenauth's six fields, plus `alg`) and Google's service-account format.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};

use crate::public_key::{Alg, PublicKey};
use crate::secret::SecretString;

/// The audience google-auth always puts in its grants; keys in Google's format accept it.
pub const GOOGLE_AUDIENCE: &str = "https://oauth2.googleapis.com/token";

/// How a key file is laid out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// tokenauth's (and ftw.tokenauth's) JSON: key_id, client_id, user_id, issued,
    /// token_uri, private_key, alg
    Tokenauth,
    /// A Google service-account key file (RS256): google-auth and the Google client
    /// libraries load it unchanged
    Google,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Tokenauth => "tokenauth",
            Format::Google => "google",
        }
    }
}

/// The file a client keeps: what it needs to sign grants and where to send them.
/// Read only through `parse_key_file`, never by deriving: serde's errors may quote the key.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub key_id: String,
    pub client_id: String,
    /// The user grants act for; absent from a Google file made elsewhere (the server then
    /// takes the key's own user).
    pub user_id: Option<String>,
    /// ISO 8601 (RFC 3339) issue time.
    pub issued: String,
    pub token_uri: String,
    /// PEM: PKCS#1 (as ftw.tokenauth writes it) or PKCS#8. Absent when the client keeps the
    /// private key apart (`private_key_file`, or `--private-key`).
    pub private_key: Option<SecretString>,
    /// Where the private key is, relative to the key file's folder.
    pub private_key_file: Option<PathBuf>,
    /// The file `private_key` was read from, when it came from one of its own
    /// (`--private-key`): then it is checked against the key id before signing.
    pub private_key_from: Option<PathBuf>,
    pub alg: Alg,
    pub format: Format,
    /// What messages call the file: its path, or e.g. "the key file in TOKENAUTH_KEY".
    pub name: String,
}

/// A freshly generated key pair.
pub struct Generated {
    pub key: PublicKey,
    pub private_pem: SecretString,
}

/// Generates a key pair for `alg`: RSA of `bits` bits with its private key as PKCS#1 (what
/// ftw.tokenauth clients read) unless `pkcs8`; P-256 and Ed25519 keys always as PKCS#8.
pub fn generate(
    alg: Alg,
    bits: usize,
    pkcs8: bool,
    rng: &mut (impl rand::CryptoRng + rand::RngCore),
) -> anyhow::Result<Generated> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    };
    let pem_of = |tag: &str, der: &[u8]| {
        SecretString::new(pem::encode_config(
            &pem::Pem::new(tag, der.to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ))
    };
    let system = aws_lc_rs::rand::SystemRandom::new();
    let failed = |_| anyhow::anyhow!("generating the {alg} key failed");
    let (spki, private_pem) = match alg {
        Alg::RS256 => {
            use rsa::pkcs8::EncodePrivateKey;
            let private = rsa::RsaPrivateKey::new(rng, bits).context("generating the RSA key")?;
            let spki = private
                .to_public_key()
                .to_public_key_der()
                .context("encoding the public key")?;
            let private_pem = if pkcs8 {
                private
                    .to_pkcs8_pem(LineEnding::LF)
                    .map(|p| p.to_string())
                    .context("encoding the private key")?
            } else {
                private
                    .to_pkcs1_pem(LineEnding::LF)
                    .map(|p| p.to_string())
                    .context("encoding the private key")?
            };
            (spki.into_vec(), SecretString::new(private_pem))
        }
        Alg::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &system)
                .map_err(failed)?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|_| anyhow::anyhow!("generating the {alg} key failed"))?;
            let spki = pair.public_key().as_der().map_err(failed)?;
            (spki.as_ref().to_vec(), pem_of("PRIVATE KEY", doc.as_ref()))
        }
        Alg::EdDSA => {
            // PKCS#8 v1 (RFC 8410): OpenSSL, and so Node and Python's cryptography, refuse the
            // v2 document that generate_pkcs8 makes.
            let doc = Ed25519KeyPair::generate_pkcs8v1(&system).map_err(failed)?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|_| anyhow::anyhow!("generating the {alg} key failed"))?;
            let spki = pair.public_key().as_der().map_err(failed)?;
            (spki.as_ref().to_vec(), pem_of("PRIVATE KEY", doc.as_ref()))
        }
    };
    let key = PublicKey::from_spki(&spki)
        .map_err(|e| anyhow::anyhow!("the generated {alg} key is unusable: {e}"))?;
    Ok(Generated { key, private_pem })
}

/// 128 random bits, hex.
pub fn new_client_id(rng: &mut impl rand::RngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the key file with mode 0600 without ever leaving a partial file, and never over an
/// existing one.
pub fn write_key_file(path: &Path, key: &serde_json::Value) -> anyhow::Result<()> {
    let mut json = serde_json::to_string_pretty(key)?;
    json.push('\n');
    write_private_file(path, json.as_bytes(), "key file")
}

/// Writes a file holding a secret: mode 0600 from the first byte (a temporary file), renamed
/// into place only when complete, and never over an existing file.
pub fn write_private_file(path: &Path, contents: &[u8], what: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let exists = || {
        anyhow::anyhow!(
            "refusing to overwrite {}; remove it or choose another --out",
            path.display()
        )
    };
    if path.exists() {
        return Err(exists());
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".tokenauth-key-")
        .tempfile_in(dir)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot write {what} {}: cannot create a file in {}: {}",
                path.display(),
                dir.display(),
                e.kind()
            )
        })?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {what} {}", path.display()))?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            exists()
        } else {
            anyhow::anyhow!("cannot write {what} {}: {}", path.display(), e.error)
        }
    })?;
    Ok(())
}

/// Where a client's key file comes from: `--key`/`TOKENAUTH_KEY` (a path, `-`, or the JSON
/// itself) or `TOKENAUTH_KEY_BASE64`. Its `Debug` never shows contents, only a path that
/// looks like one.
pub enum KeySource {
    /// `from` is `--key` or `TOKENAUTH_KEY`, for messages.
    Path {
        path: PathBuf,
        from: &'static str,
    },
    Stdin,
    Json {
        text: SecretString,
        from: &'static str,
    },
    Base64(SecretString),
}

pub const KEY_VAR: &str = "TOKENAUTH_KEY";
pub const KEY_BASE64_VAR: &str = "TOKENAUTH_KEY_BASE64";

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Path { path, from } if !may_hold_secret(path.as_os_str()) => {
                write!(f, "Path({}, from {from})", path.display())
            }
            KeySource::Path { from, .. } => write!(f, "Path(***, from {from})"),
            KeySource::Stdin => f.write_str("Stdin"),
            KeySource::Json { from, .. } => write!(f, "Json(***, from {from})"),
            KeySource::Base64(_) => write!(f, "Base64(***, from {KEY_BASE64_VAR})"),
        }
    }
}

impl KeySource {
    /// Picks the source: `key` is the `--key` value (`key_from_env` when clap took it from
    /// TOKENAUTH_KEY), `base64` the TOKENAUTH_KEY_BASE64 variable.
    pub fn resolve(
        key: Option<OsString>,
        key_from_env: bool,
        base64: Option<OsString>,
    ) -> anyhow::Result<KeySource> {
        match (key, base64) {
            // Two variables may well hold two different keys: guessing would be worse.
            (Some(_), Some(_)) if key_from_env => bail!(
                "both {KEY_VAR} and {KEY_BASE64_VAR} are set; set only one of them (or pass --key)"
            ),
            (Some(value), _) => Ok(KeySource::from_value(
                value,
                if key_from_env { KEY_VAR } else { "--key" },
            )),
            (None, Some(b64)) => Ok(KeySource::Base64(SecretString::new(
                b64.to_string_lossy().into_owned(),
            ))),
            (None, None) => bail!(
                "no key file given: pass --key with its path ('-' reads standard input) or its \
                 JSON, or set {KEY_VAR} to the same, or set {KEY_BASE64_VAR} to the key file \
                 base64-encoded"
            ),
        }
    }

    /// A `--key` value: `-`, JSON when its first non-whitespace character is `{`, else a
    /// path.
    pub fn from_value(value: OsString, from: &'static str) -> KeySource {
        if value == "-" {
            return KeySource::Stdin;
        }
        if value
            .as_encoded_bytes()
            .trim_ascii_start()
            .starts_with(b"{")
        {
            let text = value
                .into_string()
                .unwrap_or_else(|v| v.to_string_lossy().into_owned());
            return KeySource::Json {
                text: SecretString::new(text),
                from,
            };
        }
        KeySource::Path {
            path: PathBuf::from(value),
            from,
        }
    }

    pub fn read(&self) -> anyhow::Result<KeyFile> {
        match self {
            KeySource::Path { path, from } if path.as_os_str().is_empty() => {
                bail!("the {from} value is empty; give the key file's path, '-' or its JSON")
            }
            KeySource::Path { path, from } => match std::fs::read_to_string(path) {
                Ok(text) => {
                    let mut key = parse_key_file(&text, &path.display().to_string())?;
                    // A private key named by a relative path sits beside the key file.
                    if let Some(file) = key.private_key_file.as_mut()
                        && file.is_relative()
                        && let Some(dir) = path.parent()
                    {
                        *file = dir.join(&*file);
                    }
                    Ok(key)
                }
                Err(e) if !may_hold_secret(path.as_os_str()) => {
                    let named_by = match *from {
                        KEY_VAR => format!(" (named by {KEY_VAR})"),
                        _ => String::new(),
                    };
                    bail!("cannot read key file {}{named_by}: {e}", path.display())
                }
                Err(_) => bail!("{}", not_a_key_value(path.as_os_str(), from)),
            },
            KeySource::Stdin => {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read the key file from standard input")?;
                parse_key_file(&text, "the key file on standard input")
            }
            KeySource::Json { text, from } => {
                let name = match *from {
                    KEY_VAR => format!("the key file in {KEY_VAR}"),
                    _ => format!("the key file JSON given to {from}"),
                };
                parse_key_file(text.expose(), &name)
            }
            KeySource::Base64(b64) => {
                if b64.expose().trim().is_empty() {
                    bail!("{KEY_BASE64_VAR} is empty; set it to the key file base64-encoded");
                }
                // The decoder's own errors name the offending character: not shown.
                let Some(bytes) = decode_base64(b64.expose()) else {
                    bail!(
                        "{KEY_BASE64_VAR} is not valid base64 (standard or URL-safe alphabet, \
                         whitespace ignored); it is not shown because it holds a secret"
                    );
                };
                let Ok(text) = String::from_utf8(bytes) else {
                    bail!(
                        "{KEY_BASE64_VAR} does not decode to text; set it to the key file (JSON) \
                         base64-encoded, e.g. `base64 -w0 ci-bot.json`"
                    );
                };
                parse_key_file(&text, &format!("the key file in {KEY_BASE64_VAR}"))
            }
        }
    }
}

/// Whether a value given where a path was expected might be key material rather than a path:
/// such values are never echoed.
pub fn may_hold_secret(value: &OsStr) -> bool {
    let bytes = value.as_encoded_bytes();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    bytes.len() > 1024
        || bytes.contains(&b'\n')
        || bytes.contains(&b'\r')
        || has(b"-----BEGIN")
        || has(b"PRIVATE KEY")
        || bytes.starts_with(crate::pat::PREFIX.as_bytes())
        || bytes.trim_ascii_start().starts_with(b"{")
        || value
            .to_str()
            .and_then(decode_base64)
            .is_some_and(|d| d.trim_ascii_start().starts_with(b"{"))
}

/// The message for a `--key`/TOKENAUTH_KEY value that is no readable file and may be a secret.
fn not_a_key_value(value: &OsStr, from: &str) -> String {
    let text = value.to_string_lossy();
    let hint = if text.contains("-----BEGIN") || text.contains("PRIVATE KEY") {
        "; it looks like a PEM private key: pass the whole key file issue-key wrote (JSON with \
         key_id, client_id, user_id, issued, token_uri and private_key), not its private key alone"
            .to_owned()
    } else if decode_base64(&text).is_some() {
        format!("; it looks base64-encoded: set {KEY_BASE64_VAR} to it instead")
    } else {
        "; pass a path, '-' to read standard input, or the key file's JSON".to_owned()
    };
    let count = text.chars().count();
    let unit = if count == 1 {
        "character"
    } else {
        "characters"
    };
    format!(
        "the {from} value ({} {unit}) is neither a readable file, '-', nor key-file JSON \
         starting with '{{'; it is not shown because it may hold a secret{hint}",
        count
    )
}

/// Base64 as CI systems hand it over: standard or URL-safe alphabet, padded or not, wrapped
/// or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::alphabet;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let compact: String = text.split_ascii_whitespace().collect();
    if compact.is_empty() {
        return None;
    }
    let alphabet = if compact.contains(['-', '_']) {
        &alphabet::URL_SAFE
    } else {
        &alphabet::STANDARD
    };
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(alphabet, config).decode(compact).ok()
}

/// Parses a key file's text, in either format; `name` says where it came from (a path, or
/// e.g. "the key file in TOKENAUTH_KEY"). Errors are in tokenauth's own words: serde's
/// messages may quote values, and any value may be the private key.
pub fn parse_key_file(text: &str, name: &str) -> anyhow::Result<KeyFile> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) if text.trim().is_empty() => {
            bail!("{name} is empty; it should hold a tokenauth key file (JSON)")
        }
        Err(_) if text.trim_start().starts_with("-----BEGIN") => bail!(
            "{name} holds a PEM key, not a tokenauth key file; use the JSON file issue-key wrote"
        ),
        Err(e) => {
            let what = match e.classify() {
                serde_json::error::Category::Eof => "it ends too early",
                _ => "syntax error",
            };
            bail!(
                "{name} is not valid JSON ({what} at line {}, column {}); use the key file \
                 issue-key wrote, unchanged",
                e.line(),
                e.column()
            )
        }
    };
    let serde_json::Value::Object(fields) = value else {
        bail!("{name} is not a tokenauth key file: it is JSON, but not an object");
    };
    let google = fields.get("type").and_then(|t| t.as_str()) == Some("service_account");
    let not_key_file =
        |problem: String| anyhow::anyhow!("{name} is not a tokenauth key file: {problem}");
    let required: &[&str] = if google {
        &GOOGLE_FIELDS
    } else {
        &REQUIRED_FIELDS
    };
    let missing: Vec<String> = required
        .iter()
        .filter(|f| !fields.contains_key(**f))
        .map(|f| format!("'{f}'"))
        .collect();
    match missing.len() {
        0 => {}
        1 => return Err(not_key_file(format!("missing field {}", missing[0]))),
        _ => {
            return Err(not_key_file(format!(
                "missing fields {}",
                missing.join(", ")
            )));
        }
    }
    let string = |field: &str| match fields.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(not_key_file(format!(
            "field '{field}' must be a string, not {}",
            json_type(other)
        ))),
        None => Err(not_key_file(format!("missing field '{field}'"))),
    };
    let optional = |field: &str| match fields.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(_) => string(field).map(Some),
    };
    let alg = match optional("alg")? {
        None => Alg::RS256,
        Some(a) => a.parse().map_err(|_| {
            // Shown only when it is short enough to be a name rather than misplaced material.
            let shown = if a.len() <= 16 && a.bytes().all(|b| b.is_ascii_alphanumeric()) {
                format!(" '{a}'")
            } else {
                String::new()
            };
            anyhow::anyhow!(
                "{name} has unsupported alg{shown}; tokenauth keys sign with RS256, ES256 or EdDSA"
            )
        })?,
    };
    let key = if google {
        KeyFile {
            key_id: string("private_key_id")?,
            client_id: string("client_id")?,
            user_id: optional("user_id")?,
            issued: optional("issued")?.unwrap_or_default(),
            token_uri: string("token_uri")?,
            private_key: Some(SecretString::new(string("private_key")?)),
            private_key_file: None,
            private_key_from: None,
            alg,
            format: Format::Google,
            name: name.to_owned(),
        }
    } else {
        KeyFile {
            key_id: string("key_id")?,
            client_id: string("client_id")?,
            user_id: Some(string("user_id")?),
            issued: string("issued")?,
            token_uri: string("token_uri")?,
            private_key: optional("private_key")?.map(SecretString::new),
            private_key_file: optional("private_key_file")?.map(PathBuf::from),
            private_key_from: None,
            alg,
            format: Format::Tokenauth,
            name: name.to_owned(),
        }
    };
    let http_url = url::Url::parse(&key.token_uri)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !http_url {
        return Err(not_key_file(
            "field 'token_uri' is not an http(s) URL".into(),
        ));
    }
    Ok(key)
}

impl KeyFile {
    /// The file as `issue-key` writes it, in its format. `private_key` is left out when the
    /// client keeps the private key apart.
    pub fn to_json(&self, client_email: Option<&str>) -> serde_json::Value {
        let mut v = match self.format {
            Format::Tokenauth => serde_json::json!({
                "key_id": self.key_id,
                "client_id": self.client_id,
                "user_id": self.user_id,
                "issued": self.issued,
                "token_uri": self.token_uri,
                "alg": self.alg.as_str(),
            }),
            // What google-auth's service_account.Credentials reads, plus tokenauth's own
            // user_id and issued (ignored by Google's libraries).
            Format::Google => serde_json::json!({
                "type": "service_account",
                "project_id": "tokenauth",
                "private_key_id": self.key_id,
                "client_email": client_email,
                "client_id": self.client_id,
                "token_uri": self.token_uri,
                "user_id": self.user_id,
                "issued": self.issued,
            }),
        };
        if let (Some(pk), Some(o)) = (&self.private_key, v.as_object_mut()) {
            o.insert("private_key".into(), pk.expose().into());
        }
        v
    }
}

const REQUIRED_FIELDS: [&str; 5] = ["key_id", "client_id", "user_id", "issued", "token_uri"];

/// What google-auth itself needs of a service-account file.
const GOOGLE_FIELDS: [&str; 5] = [
    "private_key_id",
    "private_key",
    "client_email",
    "client_id",
    "token_uri",
];

/// What kind of JSON value `v` is, for messages ("a string", "an array").
pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn client_ids_are_128_bit_hex() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let id = new_client_id(&mut rng);
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_client_id(&mut rng));
    }

    #[test]
    fn ed25519_private_keys_are_pkcs8_v1_which_openssl_reads() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let generated = generate(Alg::EdDSA, 2048, true, &mut rng).unwrap();
        let der = pem::parse(generated.private_pem.expose()).unwrap();
        assert_eq!(der.tag(), "PRIVATE KEY");
        // RFC 8410 §7: SEQUENCE { INTEGER 0, AlgorithmIdentifier { 1.3.101.112 },
        // OCTET STRING { OCTET STRING seed } }, and no public key.
        let v1 = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        assert_eq!(der.contents().len(), 48);
        assert_eq!(der.contents()[..16], v1);
        // And tokenauth signs with it.
        crate::grant::PrivateKey::parse(generated.private_pem.expose()).unwrap();
    }

    const GOOD: &str = r#"{"key_id":"k","client_id":"c","user_id":"u",
        "issued":"2026-01-01T00:00:00Z","token_uri":"http://x/token","private_key":"pem"}"#;

    fn parse(text: &str) -> anyhow::Result<KeyFile> {
        parse_key_file(text, "k.json")
    }

    #[test]
    fn key_file_needs_its_fields_and_allows_extras() {
        let err = parse(r#"{"key_id":"k","client_id":"c"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "k.json is not a tokenauth key file: missing fields 'user_id', 'issued', \
             'token_uri'"
        );
        let ok = parse(&GOOD.replace('}', r#","type":"extra"}"#)).unwrap();
        assert_eq!(ok.alg, Alg::RS256);
        assert_eq!(ok.format, Format::Tokenauth);
        assert_eq!(format!("{:?}", ok.private_key), "Some(***)");
        // Without its private key (the client keeps it apart).
        let byo =
            parse(&GOOD.replace(r#","private_key":"pem""#, r#","private_key_file":"my.key""#))
                .unwrap();
        assert!(byo.private_key.is_none());
        assert_eq!(byo.private_key_file.as_deref(), Some(Path::new("my.key")));
    }

    #[test]
    fn google_service_account_files_are_read_too() {
        let google = r#"{"type":"service_account","project_id":"p","private_key_id":"k",
            "private_key":"pem","client_email":"u.k@auth.example","client_id":"c",
            "token_uri":"https://auth.example/token","user_id":"u"}"#;
        let key = parse(google).unwrap();
        assert_eq!(key.format, Format::Google);
        assert_eq!((key.key_id.as_str(), key.client_id.as_str()), ("k", "c"));
        assert_eq!(key.user_id.as_deref(), Some("u"));
        let err = parse(&google.replace(r#""client_email":"u.k@auth.example","#, "")).unwrap_err();
        assert!(
            err.to_string().contains("missing field 'client_email'"),
            "{err}"
        );
        // What we write reads back the same.
        let again = parse(&key.to_json(Some("u.k@auth.example")).to_string()).unwrap();
        assert_eq!(again.key_id, "k");
        assert_eq!(again.format, Format::Google);
    }

    #[test]
    fn key_file_errors_never_quote_values() {
        let secret = "-----BEGIN RSA PRIVATE KEY-----\\nMIIEsecret";
        let cases = [
            (
                GOOD.replace(r#""pem""#, "42"),
                "k.json is not a tokenauth key file: field 'private_key' must be a string, not a number",
            ),
            (
                GOOD.replace(r#""c""#, &format!(r#"["{secret}"]"#)),
                "k.json is not a tokenauth key file: field 'client_id' must be a string, not an array",
            ),
            (
                GOOD.replace(r#""pem"}"#, &format!(r#""{secret}",,}}"#)),
                "k.json is not valid JSON (syntax error at line 2, column",
            ),
            (
                GOOD.replace(r#""pem"}"#, &format!(r#""{secret}"#)),
                "k.json is not valid JSON (it ends too early at line 2, column",
            ),
            (
                format!(r#"["{secret}"]"#),
                "k.json is not a tokenauth key file: it is JSON, but not an object",
            ),
            (
                GOOD.replace("http://x/token", secret),
                "k.json is not a tokenauth key file: field 'token_uri' is not an http(s) URL",
            ),
            (
                GOOD.replace('}', &format!(r#","alg":"{secret}"}}"#)),
                "k.json has unsupported alg; tokenauth keys sign with RS256, ES256 or EdDSA",
            ),
            (
                GOOD.replace('}', r#","alg":"HS256"}"#),
                "k.json has unsupported alg 'HS256'; tokenauth keys sign with RS256, ES256 or EdDSA",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEsecret\n".to_owned(),
                "k.json holds a PEM key, not a tokenauth key file",
            ),
            (" \n".to_owned(), "k.json is empty"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.starts_with(want), "{text}: {err}");
            assert!(!err.contains("MIIE") && !err.contains("BEGIN"), "{err}");
        }
    }

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn key_values_are_stdin_json_or_paths() {
        let source = |v: &str| format!("{:?}", KeySource::from_value(v.into(), "--key"));
        assert_eq!(source("-"), "Stdin");
        assert_eq!(source(" \n {\"private_key\": 1}"), "Json(***, from --key)");
        assert_eq!(source("ci-bot.json"), "Path(ci-bot.json, from --key)");
        assert_eq!(source("-----BEGIN RSA"), "Path(***, from --key)");
        let b64 = KeySource::resolve(None, false, os("e30=")).unwrap();
        assert_eq!(format!("{b64:?}"), "Base64(***, from TOKENAUTH_KEY_BASE64)");
    }

    #[test]
    fn key_sources_resolve_flag_then_variable_then_base64() {
        let from_flag = KeySource::resolve(os("a.json"), false, os("e30=")).unwrap();
        assert_eq!(format!("{from_flag:?}"), "Path(a.json, from --key)");
        let from_env = KeySource::resolve(os("a.json"), true, None).unwrap();
        assert_eq!(format!("{from_env:?}"), "Path(a.json, from TOKENAUTH_KEY)");
        let both = KeySource::resolve(os("a.json"), true, os("e30=")).unwrap_err();
        assert!(both.to_string().contains("set only one"), "{both}");
        let none = KeySource::resolve(None, false, None)
            .unwrap_err()
            .to_string();
        for way in ["--key", "TOKENAUTH_KEY ", "TOKENAUTH_KEY_BASE64"] {
            assert!(none.contains(way), "{none}");
        }
    }

    #[test]
    fn base64_takes_either_alphabet_with_or_without_padding_and_line_breaks() {
        let json = br#"{"k": "??>>~~"}"#;
        let standard = base64::engine::general_purpose::STANDARD.encode(json);
        assert!(standard.contains(['+', '/', '=']), "{standard}");
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        assert!(url_safe.contains(['-', '_']), "{url_safe}");
        let wrapped = format!("{}\n {}\r\n", &standard[..8], &standard[8..]);
        for text in [&standard, &url_safe, &wrapped, &standard.replace('=', "")] {
            assert_eq!(decode_base64(text).as_deref(), Some(&json[..]), "{text}");
        }
        assert_eq!(decode_base64("not base64!"), None);
        assert_eq!(decode_base64(" \n"), None);
    }

    #[test]
    fn only_values_that_look_like_paths_count_as_safe_to_show() {
        for path in ["ci-bot.json", "/run/secrets/key file.json", "./a/b", "-x"] {
            assert!(!may_hold_secret(OsStr::new(path)), "{path}");
        }
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(GOOD);
        for secret in [
            "-----BEGIN RSA PRIVATE KEY-----",
            "MIIE\nMIIE",
            "xPRIVATE KEYx",
            &"a".repeat(1025),
            &key_b64,
            " {\"a\":1}",
        ] {
            assert!(may_hold_secret(OsStr::new(secret)), "{secret}");
        }
    }

    #[test]
    fn a_value_that_is_no_file_is_shown_only_when_it_looks_like_a_path() {
        let err = |v: &str, from| {
            let source = KeySource::from_value(v.into(), from);
            source.read().unwrap_err().to_string()
        };
        assert_eq!(
            err("no/such.json", "--key"),
            "cannot read key file no/such.json: No such file or directory (os error 2)"
        );
        let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{}", "MIIE".repeat(500));
        let e = err(&pem, "--key");
        assert!(
            e.starts_with("the --key value (2032 characters) is neither a readable file"),
            "{e}"
        );
        assert!(e.contains("PEM private key") && !e.contains("MIIE"), "{e}");
        let b64 = base64::engine::general_purpose::STANDARD.encode(GOOD);
        let e = err(&b64, KEY_VAR);
        assert!(e.starts_with("the TOKENAUTH_KEY value ("), "{e}");
        assert!(
            e.contains("set TOKENAUTH_KEY_BASE64") && !e.contains(&b64[..16]),
            "{e}"
        );
    }
}
